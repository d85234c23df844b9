"""The framing, and a real worker answering garbage, bad requests and good ones on its pipes."""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from worker_support import REPO, RawWorker

from helpers import rgb_crop
from realscale import wire as p


def test_the_worker_speaks_the_clients_own_framing() -> None:
    # One source: the client takes its framing from core's realscale.wire.
    stale = {name: sys.modules.pop(name, None) for name in ("realscale_client", "realscale_wire")}
    sys.path.insert(0, str(REPO / "plugins" / "common"))
    try:
        client = importlib.import_module("realscale_client")
    finally:
        sys.path.remove(str(REPO / "plugins" / "common"))
        sys.modules.update({name: module for name, module in stale.items() if module})
    assert Path(client.__file__) == REPO / "plugins" / "common" / "realscale_client.py"
    assert client.wire is p and p.FrameReader is client.FrameReader


def _frames(*parts: bytes) -> p.FrameReader:
    return p.FrameReader(io.BufferedReader(io.BytesIO(b"".join(parts))))  # type: ignore[arg-type]


def test_reader_recovers_after_garbage_with_one_error_per_run() -> None:
    good = p.pack_json({"type": "ping", "id": 1})
    reader = _frames(b"garbage \x89 not a frame\n", good, b"\x89RSWxx", good)
    with pytest.raises(p.FrameError, match="expected a frame"):
        reader.next_header()
    assert reader.next_message() == {"type": "ping", "id": 1}
    with pytest.raises(p.FrameError):
        reader.next_header()
    assert reader.next_message() == {"type": "ping", "id": 1}
    with pytest.raises(EOFError):
        reader.next_header()


def test_reader_rejects_oversized_and_other_versions_and_bad_json() -> None:
    huge = p.HEADER.pack(p.MAGIC, p.PROTOCOL_VERSION, p.KIND_JSON, p.MAX_JSON + 1)
    future = p.HEADER.pack(p.MAGIC, 2, p.KIND_JSON, 2) + b"{}"
    bad = p.HEADER.pack(p.MAGIC, p.PROTOCOL_VERSION, p.KIND_JSON, 5) + b"nope!"
    good = p.pack_json({"type": "ping"})
    reader = _frames(huge, good, future, good, bad)
    with pytest.raises(p.FrameError, match="larger than allowed"):
        reader.next_header()
    assert reader.next_message()["type"] == "ping"
    with pytest.raises(p.FrameError, match="protocol version 2"):
        reader.next_header()
    assert reader.next_message()["type"] == "ping"
    with pytest.raises(p.FrameError, match="not valid UTF-8 JSON"):
        reader.next_message()


def test_pixel_data_goes_in_chunks() -> None:
    sink = io.BytesIO()
    data = bytes(range(256)) * ((p.CHUNK * 2 + 1000) // 256)
    p.write_data(sink, data)
    reader = _frames(sink.getvalue())
    sizes = []
    out = bytearray(len(data))
    done = 0
    while done < len(data):
        kind, length = reader.next_header()
        assert kind == p.KIND_DATA
        reader.readinto(memoryview(out)[done : done + length])
        sizes.append(length)
        done += length
    assert sizes == [p.CHUNK, p.CHUNK, len(data) - 2 * p.CHUNK]
    assert out == data


@pytest.fixture
def raw_worker() -> Iterator[RawWorker]:
    worker = RawWorker()
    yield worker
    code, err = worker.finish()
    assert code == 0, f"the worker exits cleanly when stdin closes, not {code}: {err}"


def test_garbage_and_bad_requests_get_errors_and_the_worker_keeps_serving(
    raw_worker: RawWorker,
) -> None:
    hello = raw_worker.message()
    assert hello["type"] == "hello" and hello["protocol"] == p.PROTOCOL_VERSION
    assert hello["pid"] == raw_worker.process.pid

    raw_worker.send(b"GET / HTTP/1.1\r\n\r\n")
    error = raw_worker.message()
    assert error["type"] == "error" and error["kind"] == "protocol"
    assert "Bad frame" in error["message"]

    raw_worker.send(p.HEADER.pack(p.MAGIC, p.PROTOCOL_VERSION, p.KIND_JSON, 3) + b"{x}")
    assert raw_worker.message()["kind"] == "protocol"

    raw_worker.send(p.pack_json({"type": "dance", "id": 7}))
    error = raw_worker.message()
    assert (error["id"], error["kind"]) == (7, "bad_request")
    assert "Unknown request type 'dance'" in error["message"]

    raw_worker.send(p.data_header(4) + b"1234")
    assert "without an upscale request" in raw_worker.message()["message"]

    # A bad layout is refused, and its pixel data is skipped rather than misread.
    bad = {"type": "upscale", "id": 8, "width": 2, "height": 2, "channels": 5, "depth": "u8",
           "bytes": 20}
    raw_worker.send(p.pack_json(bad) + p.data_header(20) + b"\x89RSW" * 5)
    error = raw_worker.message()
    assert (error["id"], error["kind"]) == (8, "bad_request")
    assert "'channels' must be 1 to 4" in error["message"]

    # A path outside the model folders is never opened.
    raw_worker.send(p.pack_json({"type": "upscale", "id": 9, "width": 1, "height": 1,
                                 "channels": 3, "depth": "u8", "bytes": 3,
                                 "model": "/etc/passwd.pth"}) + p.data_header(3) + b"abc")
    error = raw_worker.until("error")
    assert (error["id"], error["kind"]) == (9, "model")
    assert "model folder" in error["message"]

    raw_worker.send(p.pack_json({"type": "ping", "id": 10}))
    assert raw_worker.message() == {"type": "pong", "id": 10}

    pixels = rgb_crop("OST_009.png", 12)
    request = {"type": "upscale", "id": 11, "width": 12, "height": 12, "channels": 3,
               "depth": "u8", "order": "rgb", "model": "realesr-animevideov3", "scale": 2,
               "bytes": pixels.nbytes}
    raw_worker.send(p.pack_json(request) + p.data_header(pixels.nbytes) + pixels.tobytes())
    result = raw_worker.until("result")
    assert (result["id"], result["width"], result["height"]) == (11, 24, 24)
    out = raw_worker.read_data(result["bytes"])
    assert np.frombuffer(out, np.uint8).reshape(24, 24, 3).std() > 10


def test_model_files_resolve_only_inside_model_folders(tmp_path: Path) -> None:
    from realscale.errors import ModelError
    from realscale.worker.models import ModelCache

    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "mine.pth").write_bytes(b"x")
    (tmp_path / "outside.pth").write_bytes(b"x")
    os.symlink(tmp_path / "outside.pth", folder / "sneaky.pth")
    cache = ModelCache([folder])
    assert cache.resolve("mine.pth") == str((folder / "mine.pth").resolve())
    assert cache.resolve(str(folder / "mine.pth")) == str((folder / "mine.pth").resolve())
    assert cache.resolve("realesr-animevideov3") == "realesr-animevideov3"
    for spec in ("../outside.pth", str(tmp_path / "outside.pth"), "sneaky.pth"):
        with pytest.raises(ModelError, match="not in a model folder"):
            cache.resolve(spec)
    with pytest.raises(ModelError, match="--model-dir"):
        ModelCache([]).resolve("mine.pth")
    # An ncnn pair whose .bin leads outside: the loaders would read it beside the .param.
    (folder / "pair.param").write_bytes(b"7767517\n")
    (tmp_path / "outside.bin").write_bytes(b"x")
    os.symlink(tmp_path / "outside.bin", folder / "pair.bin")
    with pytest.raises(ModelError, match="comes with pair.bin, which leads outside"):
        cache.resolve("pair.param")
    (folder / "inside.param").write_bytes(b"7767517\n")
    (folder / "inside.bin").write_bytes(b"x")
    assert cache.resolve("inside.param") == str((folder / "inside.param").resolve())
    names = [row["name"] for row in cache.catalogue()]
    assert "mine.pth" in names and "realesr-animevideov3" in names and "inside.param" in names
    assert not {"sneaky.pth", "pair.param"} & set(names), "only what a request may name"


def test_worker_environment_drops_the_hosts_python_and_qt(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    for name, value in {"PYTHONPATH": "/krita/lib", "PYTHONHOME": "/krita",
                        "QT_QPA_PLATFORM": "xcb", "QML2_IMPORT_PATH": "/q", "LANG": "C.UTF-8"
                        }.items():
        monkeypatch.setenv(name, value)
    env = p.worker_environment(["/src/core"])
    assert env["PYTHONPATH"] == "/src/core" and env["LANG"] == "C.UTF-8"
    assert not {"PYTHONHOME", "QT_QPA_PLATFORM", "QML2_IMPORT_PATH"} & set(env)
    assert "PYTHONPATH" not in p.worker_environment()
    json.dumps(env)
