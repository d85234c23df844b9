"""The decoded image record handed from read_image to the upscaler and back to write_image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .modes import bits_of, mode_info

#: Largest image read_image accepts by default (about 16000 x 16000): decoding more is far
#: more likely a decompression bomb or a mistake than a photo. ``--max-pixels`` raises it.
DEFAULT_MAX_PIXELS = 256_000_000


@dataclass
class DecodedImage:
    """Pixels of one image plus everything needed to write the result back the same way.

    ``pixels`` is HWC with C = 1, 2, 3 or 4 (L, LA, RGB, RGBA), dtype uint8, uint16 or
    float32, in the file's own colour encoding, straight (not premultiplied) alpha, already
    turned upright by the EXIF orientation. Palette, bilevel and CMYK files are expanded to
    RGB(A) or L; ``source_mode`` remembers what the file held so write_image can restore it.
    """

    pixels: np.ndarray
    #: What the file held: "1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "I;16",
    #: "LA;16", "RGB;16", "RGBA;16", "F", "LA;F", "RGB;F" or "RGBA;F".
    source_mode: str
    #: Pillow's format name: "PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF"...
    format: str
    icc_profile: bytes | None = None
    #: EXIF as "Exif\0\0" + TIFF structure, orientation already set to 1.
    exif: bytes | None = None
    #: (N, 4) uint8 RGBA entries of a palette file ("P"/"PA"), else None.
    palette: np.ndarray | None = None
    #: Dots per inch as the file gave them (written back unchanged).
    dpi: tuple[float, float] | None = None
    #: Frames in the file; only the first is decoded (animated GIF, WebP, APNG, multi-page TIFF).
    n_frames: int = 1

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def has_alpha(self) -> bool:
        return self.pixels.shape[2] in (2, 4)

    @property
    def bit_depth(self) -> int:
        """Bits per sample the file held (8, 16 or 32 for float)."""
        info = mode_info(self.source_mode)
        if info is not None:
            return bits_of(info.depth)
        return {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(self.pixels.dtype, 32)

    @property
    def is_animated(self) -> bool:
        return self.n_frames > 1
