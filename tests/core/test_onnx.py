"""ONNX: the graph built from the weights, run by ONNX Runtime, equals the torch network; the
export command writes a valid, size-independent file; the backend works without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import REPO, assert_close_u8, rgb_crop
from realscale import Upscaler, load_model
from realscale.cli import main

onnx = pytest.importorskip("onnx", reason="onnx is a dependency of realscale")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is a dependency")

CASES = [
    # (model, image, crop, top, left): both architectures, and the bicubic x2 video model.
    ("realesrgan-x4plus", "0014.jpg", 32, 40, 60),
    ("realesrgan-x4plus-anime", "OST_009.png", 40, 60, 80),
    ("realesr-animevideov3", "00003.png", 64, 100, 100),
    ("realesr-animevideov3-x2", "0030.jpg", 48, 30, 30),
]


@pytest.mark.parametrize(("model", "image", "size", "top", "left"), CASES)
def test_onnx_runtime_equals_torch(model: str, image: str, size: int, top: int,
                                   left: int) -> None:
    pixels = rgb_crop(image, size, top, left)
    torch_out = Upscaler(model, device="cpu", precision="fp32", backend="torch").upscale(pixels)
    upscaler = Upscaler(model, device="cpu", backend="onnxruntime")
    assert upscaler.engine.backend == "onnxruntime" and upscaler.precision == "fp32"
    assert upscaler.model.network is None, "the onnxruntime backend loads without torch"
    ours = upscaler.upscale(pixels)
    assert_close_u8(ours, torch_out, max_diff=1, p999=1)
    assert torch_out.std() > 10


def test_pixel_unshuffle_models_match_torch() -> None:
    """RRDBNet x2/x1 fold pixels into channels first: a small random network of each."""
    import torch

    from realscale.architectures import load as load_state_dict_model
    from realscale.architectures.rrdbnet.network import RRDBNet
    from realscale.backends.ort import OrtEngine

    rng = torch.Generator().manual_seed(0)
    x = np.random.default_rng(1).random((1, 24, 20, 3), dtype=np.float32)
    for scale in (2, 1):
        network = RRDBNet(scale=scale, num_feat=16, num_block=1, num_grow_ch=8)
        state = {k: torch.randn(v.shape, generator=rng) * 0.1
                 for k, v in network.state_dict().items()}
        model = load_state_dict_model(state, f"random-x{scale}")
        with torch.inference_mode():
            expected = model.network(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        got = OrtEngine(model, device="cpu").run(x)
        assert got.shape == expected.shape == (1, 24 * scale, 20 * scale, 3)
        assert np.abs(got - expected.numpy()).max() < 1e-4


def test_tail_strips_are_exact(monkeypatch) -> None:
    """RRDBNet's tail runs in row strips with a 2-row halo on ONNX Runtime too."""
    import realscale.architectures.rrdbnet.strips as strip_plan
    import realscale.backends.ort as ort_backend

    model = load_model("realesrgan-x4plus-anime")
    x = np.random.default_rng(2).random((1, 30, 20, 3), dtype=np.float32)
    whole = ort_backend.OrtEngine(model, device="cpu").run(x)
    monkeypatch.setattr(strip_plan, "STRIP_BYTES", 1)  # 8-row strips
    strips = ort_backend.OrtEngine(model, device="cpu").run(x)
    assert np.abs(strips - whole).max() < 1e-5


def test_export_onnx_command(tmp_path: Path) -> None:
    target = tmp_path / "animevideov3.onnx"
    assert main(["export-onnx", "realesr-animevideov3", "-o", str(target)]) == 0
    proto = onnx.load(str(target))
    onnx.checker.check_model(proto, full_check=True)
    assert max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")) >= 17
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["realscale.scale"] == "4" and json.loads(meta["realscale.params"])["num_conv"]

    # The file runs at any size, in a plain ONNX Runtime session and through the Upscaler.
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    for height, width in ((20, 36), (33, 17)):
        x = np.random.default_rng(height).random((2, 3, height, width), dtype=np.float32)
        (y,) = session.run(None, {"input": x})
        assert y.shape == (2, 3, height * 4, width * 4)
    pixels = rgb_crop("00003.png", 40, 0, 0)
    reference = Upscaler("realesr-animevideov3", device="cpu", precision="fp32",
                         backend="torch").upscale(pixels)
    from_file = Upscaler(target, device="cpu", backend="onnxruntime").upscale(pixels)
    assert_close_u8(from_file, reference, max_diff=1, p999=1)


def test_export_onnx_refuses_old_opsets(tmp_path: Path, capsys) -> None:
    out = tmp_path / "x.onnx"
    assert main(["export-onnx", "realesr-animevideov3", "-o", str(out), "--opset", "13"]) == 2
    assert "17 or later" in capsys.readouterr().err
    assert not out.exists()


def test_unavailable_provider_names_the_fix() -> None:
    from realscale import DeviceError

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(DeviceError, match="onnxruntime-gpu"):
        Upscaler(load_model("realesr-animevideov3"), device="cuda", backend="onnxruntime")


TORCH_FREE = """
import sys
sys.modules["torch"] = None  # `import torch` now fails, as in an install without it
sys.path.insert(0, sys.argv[1])
import numpy as np
from realscale import Upscaler
upscaler = Upscaler("realesr-animevideov3", device="cpu", tile=32)
assert upscaler.engine.backend == "onnxruntime", upscaler.engine.backend
np.save(sys.argv[3], upscaler.upscale(np.load(sys.argv[2])))
print(sorted(m for m in sys.modules if m.split(".")[0] == "torch" and sys.modules[m]))
"""


def test_worker_path_runs_without_torch(tmp_path: Path) -> None:
    """With torch unimportable, ``backend="auto"`` loads the embedded model with numpy and
    runs it on ONNX Runtime, tiled; the result equals the torch path's."""
    pixels = rgb_crop("00003.png", 48, 20, 20)
    np.save(tmp_path / "in.npy", pixels)
    done = subprocess.run(
        [sys.executable, "-c", TORCH_FREE, str(REPO / "core"), str(tmp_path / "in.npy"),
         str(tmp_path / "out.npy")], capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", "no torch module may be imported"
    reference = Upscaler("realesr-animevideov3", device="cpu", precision="fp32", tile=32,
                         backend="torch").upscale(pixels)
    assert_close_u8(np.load(tmp_path / "out.npy"), reference, max_diff=1, p999=1)
