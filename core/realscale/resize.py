"""High-quality resizing to a size the model's fixed scale cannot give (``--scale 2.5``)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def _resize_plane(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F")
    return np.asarray(image.resize((width, height), Image.Resampling.LANCZOS), dtype=np.float32)


def resize_float(pixels: np.ndarray, width: int, height: int, *, has_alpha: bool) -> np.ndarray:
    """Lanczos-resize an (H, W, C) float image in [0, 1]; colour is premultiplied around the
    resize when there is alpha, so transparent pixels do not bleed dark fringes."""
    if pixels.shape[1] == width and pixels.shape[0] == height:
        return pixels
    channels = pixels.shape[2]
    if has_alpha:
        alpha = pixels[..., -1:]
        colour = pixels[..., :-1] * alpha
        planes = [colour[..., c] for c in range(channels - 1)] + [alpha[..., 0]]
    else:
        planes = [pixels[..., c] for c in range(channels)]
    out = np.stack([_resize_plane(p, width, height) for p in planes], axis=-1)
    np.clip(out, 0.0, 1.0, out=out)
    if has_alpha:
        alpha = out[..., -1:]
        safe = np.where(alpha > 1e-6, alpha, 1.0)
        out[..., :-1] = np.where(alpha > 1e-6, np.clip(out[..., :-1] / safe, 0.0, 1.0), 0.0)
    return out
