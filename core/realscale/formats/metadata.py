"""EXIF orientation and ICC profile handling shared by every format.

EXIF is kept as the bytes the file had (with the ``Exif\\0\\0`` prefix JPEG uses), so maker
notes and GPS data survive untouched; only the orientation value is patched in place once
the rotation has been applied to the pixels.
"""

from __future__ import annotations

import struct

import numpy as np
from PIL import Image

EXIF_PREFIX = b"Exif\x00\x00"
ORIENTATION_TAG = 0x0112


def with_prefix(exif: bytes | None) -> bytes | None:
    """EXIF in the canonical form this package keeps: ``Exif\\0\\0`` + TIFF structure."""
    if not exif:
        return None
    return exif if exif.startswith(EXIF_PREFIX) else EXIF_PREFIX + exif


def without_prefix(exif: bytes) -> bytes:
    """The bare TIFF structure that PNG eXIf and WebP EXIF chunks hold."""
    return exif[len(EXIF_PREFIX) :] if exif.startswith(EXIF_PREFIX) else exif


def orientation_of(exif: bytes | None) -> int:
    """The EXIF orientation (1..8); 1 when absent or unreadable."""
    if not exif:
        return 1
    try:
        parsed = Image.Exif()
        parsed.load(with_prefix(exif) or b"")
        value = int(parsed.get(ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - unreadable EXIF means "no orientation"
        return 1
    return value if 1 <= value <= 8 else 1


def reset_orientation(exif: bytes) -> bytes:
    """EXIF with the orientation set to 1, patched in place where the tag can be found."""
    patched = _patch_in_place(with_prefix(exif) or b"")
    if patched is not None:
        return patched
    # Unusual layout: let Pillow rewrite the whole block (loses nothing Pillow understands).
    parsed = Image.Exif()
    parsed.load(with_prefix(exif) or b"")
    parsed[ORIENTATION_TAG] = 1
    return parsed.tobytes()


def _patch_in_place(exif: bytes) -> bytes | None:
    tiff = exif[len(EXIF_PREFIX) :]
    if tiff[:4] == b"II*\x00":
        order = "<"
    elif tiff[:4] == b"MM\x00*":
        order = ">"
    else:
        return None
    try:
        (ifd,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, ifd)
        for index in range(count):
            entry = ifd + 2 + 12 * index
            tag, kind, number = struct.unpack_from(order + "HHI", tiff, entry)
            if tag == ORIENTATION_TAG:
                if kind != 3 or number != 1:  # not a single SHORT: leave it to Pillow
                    return None
                data = bytearray(exif)
                struct.pack_into(order + "H", data, len(EXIF_PREFIX) + entry + 8, 1)
                return bytes(data)
    except struct.error:
        return None
    return None


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip an HWC array the way ImageOps.exif_transpose turns an image upright."""
    if orientation == 2:
        out = pixels[:, ::-1]
    elif orientation == 3:
        out = pixels[::-1, ::-1]
    elif orientation == 4:
        out = pixels[::-1]
    elif orientation == 5:
        out = pixels.transpose(1, 0, 2)
    elif orientation == 6:
        out = np.rot90(pixels, k=-1)
    elif orientation == 7:
        out = pixels[::-1, ::-1].transpose(1, 0, 2)
    elif orientation == 8:
        out = np.rot90(pixels, k=1)
    else:
        return pixels
    return np.ascontiguousarray(out)


def icc_colour_space(icc: bytes | None) -> str | None:
    """The data colour space an ICC profile is for: "GRAY", "RGB", "CMYK" or another tag."""
    if not icc or len(icc) < 20:
        return None
    return icc[16:20].decode("latin-1").strip()


def icc_fits(icc: bytes | None, colour: str) -> bool:
    """Whether a profile may be attached to an image of a colour model (L, RGB, P, CMYK).

    A grey profile on an RGB file (or an RGB profile on a grey one) makes colour-managed
    viewers show wrong colours or refuse the file, so such a profile is left out.
    """
    space = icc_colour_space(icc)
    if space is None:
        return False
    wanted = {"L": "GRAY", "1": "GRAY", "RGB": "RGB", "P": "RGB", "CMYK": "CMYK"}.get(colour)
    return space == wanted
