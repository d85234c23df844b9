"""Image files in and out: the one place realscale touches image formats.

``read_image`` gives a DecodedImage (HWC numpy pixels plus what the file held);
``write_image`` writes pixels back in the same kind where the output format can hold it:
8/16-bit grey and colour with or without alpha, palette, CMYK, bilevel, float TIFF, with ICC
profile, EXIF and dpi. Decisions a caller should know:

- Animated GIF/WebP/APNG and multi-page TIFF: the first frame is read; ``n_frames`` tells how
  many there were so the caller can warn that only one is upscaled.
- Bit depth comes from the file's container, never from pixel values.
- JPEG has no alpha: alpha is composited over white.
- Palette files are read as RGB(A) and written back with the original palette (exact colours
  keep their index, others go to the nearest entry) when the output is PNG or GIF.
- CMYK is read as RGB with Pillow's conversion and written back as CMYK in JPEG and TIFF.
- EXIF orientation is applied on read and the EXIF kept says orientation 1.
- Compressed pieces are unpacked with a ceiling (bounded.py): a PNG's ICC profile at 1 MiB as
  Pillow does, a TIFF strip or tile at its own size, so a small file cannot take gigabytes.
- Writes are atomic: a temporary file next to the output is fsynced, its size checked against
  what was written (a short write is an error), and only then renamed into place.
- PNG is written a band of rows at a time (pngencode.py): no second full-size image.
"""

from __future__ import annotations

from .decoded import DEFAULT_MAX_PIXELS, DecodedImage
from .reader import read_image
from .writer import output_format, write_image

__all__ = ["DEFAULT_MAX_PIXELS", "DecodedImage", "output_format", "read_image", "write_image"]
