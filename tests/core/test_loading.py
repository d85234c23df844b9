"""From a model name to a loaded network: embedded files, cached downloads, refusals."""

from __future__ import annotations

import dataclasses
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


def test_one_loader_for_both_backends(tmp_path: Path) -> None:
    """Name or file -> canonical arrays -> descriptor, torch only at the end: the torch and
    the numpy loads of a model give the same descriptor and the same weights, whether the
    weights come from the embedded ncnn files or from a PyTorch file."""
    from realscale.worker.models import ModelCache

    torch.manual_seed(1)
    pth = tmp_path / "tiny.pth"
    torch.save({"params_ema": SRVGGNetCompact(num_feat=8, num_conv=2, upscale=2).state_dict()},
               pth)
    for spec in ("realesr-animevideov3-x3", pth):
        with_torch = load_model(spec, backend="torch")
        arrays = load_model(spec, backend="onnxruntime")
        assert with_torch.network is not None and with_torch.arrays is None
        assert arrays.network is None and arrays.arrays is not None
        for field in ("name", "architecture", "scale", "net_scale", "post_resize",
                      "tile_context", "params", "source"):
            assert getattr(with_torch, field) == getattr(arrays, field), field
        state = with_torch.network.state_dict()
        assert set(state) == set(arrays.arrays)
        for key, value in state.items():
            assert np.array_equal(value.numpy(), arrays.arrays[key]), key
    # One test of "is this a weights file": the worker refuses what the loader reads as a file.
    cache = ModelCache()
    for name in ("nope.pth", "nope.bin", "nope.onnx", "sub/nope"):
        with pytest.raises(ModelError, match="does not exist"):
            load_model(name)
        with pytest.raises(ModelError, match="only be used from a model folder"):
            cache.resolve(name)
    assert cache.resolve("realesr-animevideov3") == "realesr-animevideov3"


def test_a_catalogue_scale_the_weights_do_not_give_is_refused(monkeypatch) -> None:
    entry = catalogue.get("realesr-animevideov3-x2")
    monkeypatch.setattr(catalogue, "get", lambda name: dataclasses.replace(entry, scale=3))
    for backend in ("torch", "onnxruntime"):
        with pytest.raises(ModelError, match="give x2, the catalogue says x3; reinstall"):
            load_model("realesr-animevideov3-x2", backend=backend)
