"""Decompression with a ceiling: a small file must not unpack into gigabytes.

The size limit on pixels (``max_pixels``) is checked from a file's header, but compressed
data can claim anything: a 1 MB iCCP chunk can inflate to 1 GiB, a TIFF strip meant to hold
a few rows to many times the image. Every inflate in the readers goes through here with the
most it may produce, and stops (``TooLarge``) one byte past that instead of finishing.
"""

from __future__ import annotations

import lzma
import zlib

#: The most a PNG's ICC profile may unpack to: the limit Pillow applies to the same chunk
#: on the 8-bit path (``PngImagePlugin.MAX_TEXT_CHUNK``), so both depths accept the same files.
METADATA_LIMIT = 1 << 20
_STEP = 1 << 20  # output produced (and dropped) per step when only the size is wanted


class TooLarge(ValueError):
    """Compressed data that unpacks to more than it may; the message names what and how much,
    in a few words."""


def inflate(data: bytes, limit: int, what: str) -> bytes:
    """The zlib stream in ``data`` unpacked, or TooLarge if it holds more than ``limit``
    bytes; zlib.error if it is corrupt. At most ``limit + 1`` bytes are ever produced."""
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, limit + 1)
    if len(out) > limit:
        raise TooLarge(f"{what} unpacks to more than {limit:,} bytes")
    return out


def check_unpacked_size(data: bytes, limit: int, what: str, kind: str = "zlib") -> None:
    """Raise TooLarge if the ``kind`` ("zlib" or "lzma") stream in ``data`` unpacks to more
    than ``limit`` bytes, holding no more than a step of the output at a time."""
    if kind != "zlib":
        _check_lzma(data, limit, what)
        return
    decompressor = zlib.decompressobj()
    total = 0
    pending = data
    while True:
        out = decompressor.decompress(pending, _STEP)
        total += len(out)
        if total > limit:
            raise TooLarge(f"{what} unpacks to more than {limit:,} bytes")
        pending = decompressor.unconsumed_tail
        if decompressor.eof or (not pending and len(out) < _STEP):
            return


def _check_lzma(data: bytes, limit: int, what: str) -> None:
    decompressor = lzma.LZMADecompressor()
    total = 0
    pending = data
    while True:
        out = decompressor.decompress(pending, _STEP)
        total += len(out)
        if total > limit:
            raise TooLarge(f"{what} unpacks to more than {limit:,} bytes")
        pending = b""  # it keeps unread input itself
        if decompressor.eof or decompressor.needs_input:
            return
