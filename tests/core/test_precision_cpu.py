"""CPU precision: what ``auto`` picks, how far bf16 is from fp32, and fp32 staying exact.

Accuracy only; speed is measured by bench/speed.py, not by tests.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import assert_close_u8, rgb_crop
from realscale import Upscaler, load_model
from realscale.tiling import BORDER

# Real photos and anime frames, small crops: SRVGGNetCompact is the model auto runs in bf16.
# Without its first convolution in fp32 the first two reach 3/255 at the 99.9th percentile.
CROPS = [("0014.jpg", 64, 40, 60), ("00003.png", 64, 50, 50), ("OST_009.png", 64, 100, 100)]


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int32) - b.astype(np.int32))


@pytest.fixture(scope="module")
def compact():
    return load_model("realesr-animevideov3")


def test_auto_is_bf16_only_where_it_is_accurate(monkeypatch, compact) -> None:
    monkeypatch.setenv("REALSCALE_CPU_BF16", "1")  # as on a CPU with AVX512-BF16 or AMX
    assert Upscaler(compact, device="cpu").precision == "bf16"
    rrdbnet = Upscaler(load_model("realesrgan-x4plus-anime"), device="cpu")
    assert rrdbnet.precision == "fp32" and rrdbnet.engine.backend == "torch"
    assert Upscaler(compact, device="cpu", precision="fp32").precision == "fp32"
    monkeypatch.setenv("REALSCALE_CPU_BF16", "0")  # a CPU without bfloat16 instructions
    assert Upscaler(compact, device="cpu").precision == "fp32"


def test_one_auto_policy_for_both_backends(monkeypatch, compact) -> None:
    """``auto`` is decided once (devices.choose_precision) for torch and ONNX Runtime alike:
    on a bf16 CPU torch runs the compact net in bf16, ONNX Runtime (no bf16) in fp32; fp16
    on the CPU is refused by both with the precisions each backend does run."""
    from realscale import DeviceError
    from realscale.devices import choose_precision

    monkeypatch.setenv("REALSCALE_CPU_BF16", "1")
    assert choose_precision("auto", "cuda").precision == "fp16"
    assert choose_precision("auto", "directml", runs=("fp32", "fp16")).fallback_fp32
    assert choose_precision("auto", "mps").precision == "fp32"
    assert choose_precision("auto", "cpu", bf16_accurate=False).precision == "fp32"
    arrays = load_model("realesr-animevideov3", backend="onnxruntime")
    assert Upscaler(arrays, device="cpu", backend="onnxruntime").precision == "fp32"
    with pytest.raises(DeviceError, match=r"not supported on the CPU; choose precision fp32$"):
        Upscaler(arrays, device="cpu", precision="fp16", backend="onnxruntime")
    with pytest.raises(DeviceError, match="choose precision fp32 or bf16$"):
        Upscaler(compact, device="cpu", precision="fp16")
    with pytest.raises(DeviceError, match="ONNX Runtime runs fp32 or fp16, got 'bf16'"):
        Upscaler(arrays, device="cpu", precision="bf16", backend="onnxruntime")


def test_bf16_stays_within_2_of_fp32(compact) -> None:
    """The bar for running a model in bf16 under ``auto``: the 99.9th percentile of the
    8-bit difference to fp32 at most 2/255 on each real crop."""
    fp32 = Upscaler(compact, device="cpu", precision="fp32")
    bf16 = Upscaler(compact, device="cpu", precision="bf16")
    for name, size, top, left in CROPS:
        pixels = rgb_crop(name, size, top, left)
        assert_close_u8(bf16.upscale(pixels), fp32.upscale(pixels), max_diff=5, p999=2)


def test_fp32_equals_the_upstream_path() -> None:
    """``precision="fp32"`` (channels_last, own copy of the network) against the plain
    upstream-style eager NCHW forward of the same weights: the same 8-bit values."""
    model = load_model("realesrgan-x4plus-anime")
    pixels = rgb_crop("OST_009.png", 40, 60, 80)
    ours = Upscaler(model, device="cpu", precision="fp32", tile=512).upscale(pixels)
    padded = np.pad(pixels.astype(np.float32) / 255, ((BORDER, BORDER), (BORDER, BORDER), (0, 0)),
                    mode="reflect")
    with torch.inference_mode():
        y = model.network(torch.from_numpy(padded).permute(2, 0, 1)[None].contiguous())
    s = 4 * BORDER
    upstream = np.rint(np.clip(y[0].permute(1, 2, 0).numpy(), 0, 1) * 255)[s:-s, s:-s]
    diff = _diff(ours, upstream.astype(np.uint8))
    assert diff.max() <= 1 and (diff == 0).mean() >= 0.999


def test_rrdbnet_in_bf16_is_visibly_off() -> None:
    """Why ``auto`` keeps RRDBNet in fp32: bf16 moves its 8-bit output by far more than 2/255
    (weights and activations lose 16 mantissa bits; the dense blocks amplify it), even with
    the trunk in fp32."""
    model = load_model("realesrgan-x4plus-anime")
    pixels = rgb_crop("00003.png", 64, 50, 50)
    fp32 = Upscaler(model, device="cpu", precision="fp32").upscale(pixels)
    bf16 = Upscaler(model, device="cpu", precision="bf16").upscale(pixels)
    assert np.percentile(_diff(bf16, fp32), 99.9) > 4


def test_rrdbnet_bf16_keeps_its_trunk_in_fp32() -> None:
    """In bf16 only RRDBNet's convolutions round: the residual trunk that runs through every
    block stays fp32 (all-bf16 was 6-13/255 at the 99.9th percentile on these crops)."""
    model = load_model("realesrgan-x4plus-anime")
    upscaler = Upscaler(model, device="cpu", precision="bf16")
    network = upscaler.engine._network
    seen: list[tuple[torch.dtype, torch.dtype]] = []
    network.body[0].register_forward_hook(lambda _m, i, o: seen.append((i[0].dtype, o.dtype)))
    assert network.conv_up1.weight.dtype == torch.bfloat16
    pixels = rgb_crop("00003.png", 48, 50, 50)
    fast = upscaler.upscale(pixels)
    assert seen and set(seen) == {(torch.float32, torch.float32)}
    exact = Upscaler(model, device="cpu", precision="fp32").upscale(pixels)
    assert np.percentile(_diff(fast, exact), 99.9) <= 8
