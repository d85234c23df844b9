"""Scales the model does not give: the band-by-band Lanczos resize equals the whole-image one."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import rgb_crop
from realscale import channels, upscale
from realscale.resize import resize_float


def _whole(image: np.ndarray, width: int, height: int, has_alpha: bool) -> np.ndarray:
    work = resize_float(channels.to_float(image), width, height, has_alpha=has_alpha)
    return channels.from_float(work, image.dtype)


def _source(kind: str) -> np.ndarray:
    photo = rgb_crop("OST_009.png", 120, 60, 40)
    if kind == "u8":
        return photo
    if kind == "rgba":
        alpha = rgb_crop("0014.jpg", 120, 0, 0)[..., 1:2]
        return np.concatenate([photo, alpha], axis=2)
    if kind == "u16":
        return photo.astype(np.uint16) * 257 + rgb_crop("0030.jpg", 120, 0, 0) // 4
    return photo.astype(np.float32) / 255  # float


@pytest.mark.parametrize("kind", ["u8", "rgba", "u16", "float"])
@pytest.mark.parametrize(("width", "height"), [(75, 71), (150, 163), (97, 120)])
def test_bands_equal_the_whole_resize(monkeypatch, kind: str, width: int, height: int) -> None:
    image = _source(kind)
    has_alpha = image.shape[2] == 4
    expected = _whole(image, width, height, has_alpha)
    monkeypatch.setattr(upscale, "RESIZE_ROWS", 7)  # many bands, each with its own halo
    got = upscale._resize_in_bands(image, width, height, has_alpha)
    assert got.dtype == image.dtype and got.shape == expected.shape
    if kind == "float":
        assert np.abs(got - expected).max() < 1e-5
    else:
        # At most one step apart where float32 rounding lands on a rounding boundary (rarer
        # in 8 bits than in 16).
        diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
        assert diff.max() <= 1 and (diff == 0).mean() > (0.995 if kind == "u16" else 0.999)
    assert expected.std() > 0.05 * (1 if kind == "float" else np.iinfo(image.dtype).max)
