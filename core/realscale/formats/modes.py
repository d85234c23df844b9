"""Names for what a file held (``DecodedImage.source_mode``) and what they mean.

A source mode says three things the writer needs to restore a file's kind: the colour model
(grey, RGB, palette, CMYK, bilevel), whether there is alpha, and the sample depth. Pillow's
names are used where Pillow has one; the 16-bit and float colour modes that Pillow lacks
get a ``;16`` or ``;F`` suffix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Sample depths. "f" is 32-bit float with a nominal range of 0..1.
DEPTH_8 = "8"
DEPTH_16 = "16"
DEPTH_FLOAT = "f"


@dataclass(frozen=True)
class ModeInfo:
    """What a source mode means: colour model, alpha, sample depth."""

    colour: str  # "L", "RGB", "P", "CMYK" or "1"
    alpha: bool
    depth: str  # DEPTH_8, DEPTH_16 or DEPTH_FLOAT


_MODES: dict[str, ModeInfo] = {
    "1": ModeInfo("1", False, DEPTH_8),
    "L": ModeInfo("L", False, DEPTH_8),
    "LA": ModeInfo("L", True, DEPTH_8),
    "P": ModeInfo("P", False, DEPTH_8),
    "PA": ModeInfo("P", True, DEPTH_8),
    "RGB": ModeInfo("RGB", False, DEPTH_8),
    "RGBA": ModeInfo("RGB", True, DEPTH_8),
    "CMYK": ModeInfo("CMYK", False, DEPTH_8),
    "I;16": ModeInfo("L", False, DEPTH_16),
    "LA;16": ModeInfo("L", True, DEPTH_16),
    "RGB;16": ModeInfo("RGB", False, DEPTH_16),
    "RGBA;16": ModeInfo("RGB", True, DEPTH_16),
    "F": ModeInfo("L", False, DEPTH_FLOAT),
    "LA;F": ModeInfo("L", True, DEPTH_FLOAT),
    "RGB;F": ModeInfo("RGB", False, DEPTH_FLOAT),
    "RGBA;F": ModeInfo("RGB", True, DEPTH_FLOAT),
}


def mode_info(source_mode: str) -> ModeInfo | None:
    """The meaning of a source mode, or None for a name this module does not know."""
    return _MODES.get(source_mode)


def mode_name(colour: str, alpha: bool, depth: str) -> str:
    """The source mode for a colour model, alpha and depth (inverse of mode_info)."""
    for name, info in _MODES.items():
        if info == ModeInfo(colour, alpha, depth):
            return name
    raise ValueError(f"no source mode for {colour} alpha={alpha} depth={depth}")


def depth_of(pixels: np.ndarray) -> str:
    """The sample depth a pixel array's dtype stands for."""
    if pixels.dtype == np.uint8:
        return DEPTH_8
    if pixels.dtype == np.uint16:
        return DEPTH_16
    return DEPTH_FLOAT


def info_of(pixels: np.ndarray) -> ModeInfo:
    """The mode an HWC pixel array stands for by itself (no palette, CMYK or bilevel)."""
    channels = pixels.shape[2]
    colour = "L" if channels <= 2 else "RGB"
    return ModeInfo(colour, channels in (2, 4), depth_of(pixels))


def bits_of(depth: str) -> int:
    """Bits per sample of a depth."""
    return {DEPTH_8: 8, DEPTH_16: 16, DEPTH_FLOAT: 32}[depth]
