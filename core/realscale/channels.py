"""Channel handling: what the network (RGB in, RGB out) is given for grey, grey + alpha, RGB
and RGBA images of 8 bits, 16 bits or floats, and how its output becomes the image's own
channels again.

Grey is run as RGB and returned as luma. Translucent alpha runs as a second pass (alpha
repeated as RGB) next to the premultiplied colour, so that what lies under transparent pixels
cannot bleed into edges; an alpha that is opaque everywhere is not run at all.
"""

from __future__ import annotations

import numpy as np

UNPREMULTIPLY_EPSILON = 0.01
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
MAX_VALUE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
"""The value of full intensity per integer dtype (floats run in [0, 1])."""


def has_alpha(channels: int) -> bool:
    """Whether an image of this many channels (1 to 4) has alpha (LA, RGBA)."""
    return channels in (2, 4)


def translucent(pixels: np.ndarray) -> bool:
    """Whether an HWC image has alpha below full opacity anywhere (then alpha runs too)."""
    if not has_alpha(pixels.shape[2]):
        return False
    max_value = MAX_VALUE.get(pixels.dtype)
    opaque = 1.0 if max_value is None else max_value
    return bool((pixels[..., -1] < opaque).any())


def passes(translucent: bool) -> int:
    """Network images per tile: the colour, and the alpha where it is translucent."""
    return 2 if translucent else 1


def to_float(pixels: np.ndarray) -> np.ndarray:
    max_value = MAX_VALUE.get(pixels.dtype)
    if max_value is None:
        return np.clip(pixels, 0.0, 1.0, dtype=np.float32)
    return pixels.astype(np.float32) / np.float32(max_value)


def from_float(pixels: np.ndarray, dtype: np.dtype) -> np.ndarray:
    max_value = MAX_VALUE.get(np.dtype(dtype))
    if max_value is None:
        return pixels.astype(np.float32)
    return np.rint(np.clip(pixels, 0.0, 1.0) * max_value).astype(dtype)


def network_input(region: np.ndarray, translucent: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """One tile of the image (its own dtype and channels) -> the network's RGB float input,
    premultiplied where translucent, and the alpha pass (alpha as RGB) or None."""
    work = to_float(region)
    colour = work[..., :-1] if has_alpha(region.shape[2]) else work
    if colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    if not translucent:
        return colour, None
    alpha = work[..., -1:]
    # Premultiplied colour: what lies under transparent pixels cannot bleed into edges.
    return colour * alpha, np.repeat(alpha, 3, axis=2)


def network_output(band: np.ndarray, channels: int, translucent: bool) -> np.ndarray:
    """Network output (RGB, or premultiplied RGB + alpha-as-RGB) to the input's channels,
    floats in [0, 1]."""
    colour = np.clip(band[..., :3], 0.0, 1.0)
    if translucent:
        alpha_rgb = np.clip(band[..., 3:6], 0.0, 1.0)
        alpha = (alpha_rgb @ LUMA)[..., None]
        # Un-premultiply each channel by the same channel of the alpha pass: the network
        # treats both passes alike, so its per-channel bias cancels and a white edge stays
        # white instead of picking up a colour fringe. The small term that vanishes at full
        # opacity keeps the division defined where both passes are (nearly) zero.
        soft = UNPREMULTIPLY_EPSILON * (1.0 - alpha_rgb)
        colour = np.clip((colour + soft) / (alpha_rgb + soft), 0.0, 1.0)
    elif has_alpha(channels):
        alpha = np.ones(colour.shape[:2] + (1,), dtype=np.float32)
    if channels in (1, 2):
        colour = (colour @ LUMA)[..., None]
    if has_alpha(channels):
        return np.concatenate([colour, alpha], axis=2)
    return colour
