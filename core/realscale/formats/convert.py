"""Pixel conversions between depths and channel layouts, all in numpy.

Integer samples are full-range (0..255, 0..65535); float samples are nominally 0..1 and are
clipped (NaN to 0) whenever they go into an integer container. Conversions work in the
file's own encoding (sRGB-ish): no linearisation, the same arithmetic Pillow uses.
"""

from __future__ import annotations

import numpy as np

from .modes import DEPTH_8, DEPTH_16, DEPTH_FLOAT

# ITU-R 601-2 luma, the weights Pillow uses for RGB -> L.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def as_hwc(pixels: np.ndarray) -> np.ndarray:
    """Check an array handed to write_image and give it the HWC shape with C in 1..4."""
    if not isinstance(pixels, np.ndarray):
        raise TypeError(f"pixels must be a numpy array, not {type(pixels).__name__}")
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.dtype.kind == "u" and pixels.dtype.itemsize in (1, 2):
        pixels = pixels.astype(np.uint8 if pixels.dtype.itemsize == 1 else np.uint16, copy=False)
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"pixels must be HxW or HxWxC with C in 1..4, not {pixels.shape}")
    if pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise ValueError(f"pixels must hold at least one pixel, not {pixels.shape}")
    if pixels.dtype not in (np.uint8, np.uint16) and pixels.dtype.kind != "f":
        raise ValueError(f"pixels must be uint8, uint16 or float, not {pixels.dtype}")
    return pixels


def max_value(depth: str) -> float:
    """The value of full intensity (white, opaque) at a depth."""
    return {DEPTH_8: 255.0, DEPTH_16: 65535.0, DEPTH_FLOAT: 1.0}[depth]


def to_depth(pixels: np.ndarray, depth: str) -> np.ndarray:
    """Convert samples to a depth: 8 <-> 16 with exact rounding, float clipped on the way in."""
    if depth == DEPTH_8:
        if pixels.dtype == np.uint8:
            return pixels
        if pixels.dtype == np.uint16:
            # round(x / 257) in integers: 257 * k maps to k exactly.
            return ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
        return _float_to_int(pixels, 255.0, np.uint8)
    if depth == DEPTH_16:
        if pixels.dtype == np.uint16:
            return pixels
        if pixels.dtype == np.uint8:
            return pixels.astype(np.uint16) * np.uint16(257)
        return _float_to_int(pixels, 65535.0, np.uint16)
    if depth == DEPTH_FLOAT:
        if pixels.dtype == np.uint8:
            return pixels.astype(np.float32) / np.float32(255.0)
        if pixels.dtype == np.uint16:
            return pixels.astype(np.float32) / np.float32(65535.0)
        return pixels.astype(np.float32, copy=False)
    raise ValueError(f"unknown depth {depth!r}")


def _float_to_int(pixels: np.ndarray, scale: float, dtype: type) -> np.ndarray:
    values = np.nan_to_num(pixels.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    values = np.clip(values, 0.0, 1.0) * np.float32(scale)
    return np.rint(values).astype(dtype)


def to_layout(pixels: np.ndarray, grey: bool, alpha: bool) -> np.ndarray:
    """Convert to grey or RGB, with or without alpha, keeping the depth.

    Colour to grey uses Pillow's luma weights; grey to colour repeats the channel; a missing
    alpha becomes opaque; an alpha that has to go is composited over white (what a viewer
    shows on a white page) rather than dropped, so hidden colours never come to light.
    """
    channels = pixels.shape[2]
    has_alpha = channels in (2, 4)
    colour = pixels[:, :, : channels - 1] if has_alpha else pixels
    alpha_plane = pixels[:, :, channels - 1 :] if has_alpha else None

    if alpha_plane is not None and not alpha:
        colour = composite_over_white(colour, alpha_plane)
        alpha_plane = None
    if grey and colour.shape[2] == 3:
        colour = _luma(colour)
    elif not grey and colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    if alpha and alpha_plane is None:
        full = max_value(_depth_of_dtype(pixels.dtype))
        alpha_plane = np.full(colour.shape[:2] + (1,), full, dtype=pixels.dtype)
    if alpha_plane is None:
        return np.ascontiguousarray(colour)
    return np.ascontiguousarray(np.concatenate([colour, alpha_plane], axis=2))


def composite_over_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Straight-alpha colour composited over white, in the colour's dtype."""
    full = max_value(_depth_of_dtype(colour.dtype))
    a = alpha.astype(np.float32) / np.float32(full)
    if colour.dtype.kind == "f":
        a = np.clip(np.nan_to_num(a), 0.0, 1.0)
    mixed = colour.astype(np.float32) * a + np.float32(full) * (1.0 - a)
    if colour.dtype.kind == "f":
        return mixed.astype(colour.dtype)
    return np.rint(np.clip(mixed, 0.0, full)).astype(colour.dtype)


def _luma(rgb: np.ndarray) -> np.ndarray:
    y = rgb.astype(np.float32) @ _LUMA
    y = y[:, :, None]
    if rgb.dtype.kind == "f":
        return y.astype(rgb.dtype)
    full = max_value(_depth_of_dtype(rgb.dtype))
    return np.rint(np.clip(y, 0.0, full)).astype(rgb.dtype)


def _depth_of_dtype(dtype: np.dtype) -> str:
    if dtype == np.uint8:
        return DEPTH_8
    if dtype == np.uint16:
        return DEPTH_16
    return DEPTH_FLOAT


def unpremultiply(pixels: np.ndarray) -> np.ndarray:
    """Straight alpha from premultiplied (associated) alpha; the last channel is alpha."""
    full = max_value(_depth_of_dtype(pixels.dtype))
    values = pixels.astype(np.float32)
    alpha = values[:, :, -1:]
    safe = np.where(alpha > 0, alpha, 1.0)
    colour = np.where(alpha > 0, values[:, :, :-1] * (np.float32(full) / safe), 0.0)
    if pixels.dtype.kind == "f":
        out = np.concatenate([colour, alpha], axis=2)
        return out.astype(pixels.dtype)
    colour = np.rint(np.clip(colour, 0.0, full))
    return np.concatenate([colour, alpha], axis=2).astype(pixels.dtype)
