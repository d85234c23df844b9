"""High-quality resizing to a size the model's fixed scale cannot give (``--scale 2.5``)."""

from __future__ import annotations

import numpy as np
from PIL import Image

LANCZOS_LOBES = 3


def _resize_plane(plane: np.ndarray, width: int, height: int,
                  rows: tuple[float, float] | None) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F")
    box = None if rows is None else (0.0, rows[0], float(plane.shape[1]), rows[1])
    resized = image.resize((width, height), Image.Resampling.LANCZOS, box=box)
    return np.asarray(resized, dtype=np.float32)


def band_halo(in_rows: int, out_rows: int) -> int:
    """Source rows a band of output needs beyond its own extent: the Lanczos filter's reach
    (wider when shrinking), plus a margin for rounding."""
    return int(np.ceil(LANCZOS_LOBES * max(1.0, in_rows / out_rows))) + 2


def resize_float(pixels: np.ndarray, width: int, height: int, *, has_alpha: bool,
                 rows: tuple[float, float] | None = None) -> np.ndarray:
    """Lanczos-resize an (H, W, C) float image in [0, 1]; colour is premultiplied around the
    resize when there is alpha, so transparent pixels do not bleed dark fringes.

    ``rows`` (first, last) resizes only that stretch of source rows, fractions allowed, to
    ``height`` rows, reading the rows around it as the filter needs: a band of the whole
    resize, equal to the same rows of it when ``pixels`` has ``band_halo`` rows to spare."""
    if rows is None and pixels.shape[1] == width and pixels.shape[0] == height:
        return pixels
    channels = pixels.shape[2]
    if has_alpha:
        alpha = pixels[..., -1:]
        colour = pixels[..., :-1] * alpha
        planes = [colour[..., c] for c in range(channels - 1)] + [alpha[..., 0]]
    else:
        planes = [pixels[..., c] for c in range(channels)]
    out = np.stack([_resize_plane(p, width, height, rows) for p in planes], axis=-1)
    np.clip(out, 0.0, 1.0, out=out)
    if has_alpha:
        alpha = out[..., -1:]
        safe = np.where(alpha > 1e-6, alpha, 1.0)
        out[..., :-1] = np.where(alpha > 1e-6, np.clip(out[..., :-1] / safe, 0.0, 1.0), 0.0)
    return out
