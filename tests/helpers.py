"""Shared test helpers: where the real test images are, and small crops of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# The real images the tests use travel with the repository (sources and licences in
# tests/data/SOURCES.md): a clone runs the whole suite with nothing beside it.
DATA = REPO / "tests" / "data"
INPUTS = DATA / "realesrgan-inputs"


def data_file(*parts: str) -> Path:
    """A file from tests/data; a missing one is a broken checkout, never a skip."""
    path = DATA.joinpath(*parts)
    assert path.is_file(), f"test data {path} is missing (see tests/data/SOURCES.md)"
    return path


def rgb_crop(name: str, size: int, top: int = 0, left: int = 0) -> np.ndarray:
    """An 8-bit RGB crop of a real Real-ESRGAN sample input."""
    with Image.open(data_file("realesrgan-inputs", name)) as image:
        pixels = np.asarray(image.convert("RGB"))
    crop = pixels[top : top + size, left : left + size]
    assert crop.shape[:2] == (size, size), f"{name} is smaller than the crop"
    return np.ascontiguousarray(crop)


def assert_close_u8(a: np.ndarray, b: np.ndarray, *, max_diff: int, p999: float) -> None:
    """Tolerance check in 8-bit steps: largest difference and 99.9th percentile."""
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    diff = np.abs(a.astype(np.int32) - b.astype(np.int32))
    worst, high = int(diff.max()), float(np.percentile(diff, 99.9))
    assert worst <= max_diff and high <= p999, f"max {worst}/255, 99.9th percentile {high}/255"
