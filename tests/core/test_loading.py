"""From a model name to a loaded network: embedded files, cached downloads, refusals."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import rgb_crop
from realscale import ModelError, Upscaler, catalogue, load_model
from realscale.architectures.compact.network import SRVGGNetCompact


def test_embedded_models_load_with_their_scale() -> None:
    for name, scale, arch in (
        ("realesrgan-x4plus", 4, "RRDBNet"),
        ("realesrgan-x4plus-anime", 4, "RRDBNet"),
        ("realesr-animevideov3", 4, "SRVGGNetCompact"),
        ("realesr-animevideov3-x2", 2, "SRVGGNetCompact"),
        ("realesr-animevideov3-x3", 3, "SRVGGNetCompact"),
    ):
        model = load_model(name)
        assert (model.name, model.scale, model.architecture) == (name, scale, arch)
        assert model.source.startswith("embedded: ")


def test_download_only_model_needs_permission(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("REALSCALE_CACHE_DIR", str(tmp_path))
    with pytest.raises(ModelError, match="realscale download realesr-general-x4v3"):
        load_model("realesr-general-x4v3")


def test_missing_weights_file_is_clear(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nope.pth")


def test_downloaded_model_loads_and_runs(tmp_path: Path, monkeypatch) -> None:
    """The whole path of a download-only model, served from 127.0.0.1 (never the network)."""
    torch.manual_seed(0)
    network = SRVGGNetCompact(num_feat=16, num_conv=2, upscale=4)
    payload_path = tmp_path / "served.pth"
    torch.save({"params": network.state_dict()}, payload_path)
    payload = payload_path.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        entry = catalogue.CatalogueEntry(
            name="tiny-compact", architecture="SRVGGNetCompact", scale=4,
            params={}, description="", licence="BSD-3-Clause", credit="test",
            sources=(catalogue.UrlSource(
                url=f"http://127.0.0.1:{server.server_address[1]}/tiny.pth",
                sha256=hashlib.sha256(payload).hexdigest(), filename="tiny.pth",
                size=len(payload)),),
        )
        monkeypatch.setattr(catalogue, "get", lambda name: entry)
        monkeypatch.setenv("REALSCALE_CACHE_DIR", str(tmp_path / "cache"))
        with pytest.raises(ModelError, match="--download"):
            load_model("tiny-compact")
        model = load_model("tiny-compact", allow_download=True)
        assert (tmp_path / "cache" / "tiny.pth").is_file()
        assert model.name == "tiny-compact" and model.scale == 4
        # Cached now: no second download needed.
        server.shutdown()
        again = load_model("tiny-compact")
    finally:
        server.server_close()
    pixels = rgb_crop("00003.png", 16)
    out = Upscaler(again, device="cpu").upscale(pixels)
    with torch.inference_mode():
        x = torch.from_numpy(pixels.astype(np.float32).transpose(2, 0, 1)[None] / 255)
        direct = network(torch.nn.functional.pad(x, (10, 10, 10, 10), mode="reflect"))
    expected = np.rint(direct[0, :, 40:-40, 40:-40].clamp(0, 1).numpy().transpose(1, 2, 0) * 255)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1
