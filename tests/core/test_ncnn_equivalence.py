"""Our PyTorch port of each embedded model against the real ncnn runtime on the same files.

The reference is what realesrgan-ncnn-vulkan computes: the image padded by reflection
(10 px), run through the ncnn graph of the official ``.param/.bin``, cropped and rounded.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import rgb_crop
from realscale import Upscaler, catalogue

ncnn = pytest.importorskip("ncnn", reason="the ncnn runtime is the reference (pip install ncnn)")

BORDER = 10
CASES = [
    # (model, image, crop size, top, left): real degraded photos and anime frames.
    ("realesrgan-x4plus", "0014.jpg", 48, 40, 60),
    ("realesrgan-x4plus", "ADE_val_00000114.jpg", 48, 100, 200),
    ("realesrgan-x4plus-anime", "OST_009.png", 64, 60, 80),
    ("realesrgan-x4plus-anime", "00003.png", 64, 0, 0),
    ("realesr-animevideov3", "00003.png", 80, 100, 100),
    ("realesr-animevideov3-x2", "0030.jpg", 80, 30, 30),
    ("realesr-animevideov3-x3", "OST_009.png", 80, 0, 40),
]


def run_ncnn(model: str, image: np.ndarray) -> np.ndarray:
    entry = catalogue.get(model)
    source = next(s for s in entry.sources if isinstance(s, catalogue.PackageSource))
    param, weights = catalogue.package_files(source)
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = 2
    assert net.load_param(str(param)) == 0 and net.load_model(str(weights)) == 0
    padded = np.pad(image, ((BORDER, BORDER), (BORDER, BORDER), (0, 0)), mode="reflect")
    planar = np.ascontiguousarray(padded.astype(np.float32).transpose(2, 0, 1) / 255.0)
    extractor = net.create_extractor()
    extractor.input("data", ncnn.Mat(planar))
    status, out = extractor.extract("output")
    assert status == 0
    result = np.array(out).copy().transpose(1, 2, 0)
    border = BORDER * entry.scale
    result = result[border:-border, border:-border]
    return np.clip(np.rint(result * 255.0), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("model", "image", "size", "top", "left"), CASES)
def test_matches_ncnn_runtime(model: str, image: str, size: int, top: int, left: int) -> None:
    pixels = rgb_crop(image, size, top, left)
    ours = Upscaler(model, device="cpu", precision="fp32").upscale(pixels)
    reference = run_ncnn(model, pixels)
    scale = catalogue.get(model).scale
    assert ours.shape == reference.shape == (size * scale, size * scale, 3)
    diff = np.abs(ours.astype(np.int16) - reference.astype(np.int16))
    within = float((diff <= 1).mean())
    assert within >= 0.999, f"{within:.5f} of values within 1/255 (max {diff.max()})"
    # Guard against both sides being trivially equal (e.g. blank): the upscale has detail.
    assert reference.std() > 10
