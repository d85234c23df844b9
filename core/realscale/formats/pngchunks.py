"""PNG container: signature, IHDR and chunk walking with length and CRC checks.

Used to look at a PNG's header before anything is decoded (size limit, bit depth) and by the
16-bit codec. Damage is reported as PngDamaged with a short reason; the reader turns that
into an ImageReadError naming the file.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from .bounded import METADATA_LIMIT, inflate

SIGNATURE = b"\x89PNG\r\n\x1a\n"
HEADER_BYTES = len(SIGNATURE) + 8 + 13 + 4  # signature, IHDR length+type, payload, CRC

#: Colour type -> samples per pixel (grey, -, RGB, palette, grey+alpha, -, RGBA).
SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


class PngDamaged(ValueError):
    """A PNG whose structure is broken; the message says how, in a few words."""


@dataclass(frozen=True)
class PngHeader:
    """The IHDR fields the readers need."""

    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlace: int

    @property
    def channels(self) -> int:
        return SAMPLES[self.colour_type]


def is_png(head: bytes) -> bool:
    """Whether bytes start with the PNG signature."""
    return head.startswith(SIGNATURE)


def parse_header(head: bytes) -> PngHeader:
    """The IHDR of a PNG from its first HEADER_BYTES bytes."""
    if len(head) < HEADER_BYTES:
        raise PngDamaged("the file ends inside the PNG header")
    length, kind = struct.unpack_from(">I4s", head, 8)
    if kind != b"IHDR" or length != 13:
        raise PngDamaged("the PNG header chunk is missing")
    payload = head[16:29]
    (crc,) = struct.unpack_from(">I", head, 29)
    if zlib.crc32(b"IHDR" + payload) != crc:
        raise PngDamaged("the PNG header has a bad checksum")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", payload
    )
    if colour not in SAMPLES or compression != 0 or filtering != 0 or interlace > 1:
        raise PngDamaged("the PNG header holds values no PNG may have")
    allowed = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
    if depth not in allowed[colour]:
        raise PngDamaged(f"the PNG header gives an impossible bit depth ({depth})")
    return PngHeader(width, height, depth, colour, interlace)


def iter_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, payload) for every chunk after the signature, up to and including IEND."""
    pos = len(SIGNATURE)
    end = len(data)
    while True:
        if pos + 8 > end:
            raise PngDamaged("the file ends before the PNG end marker (it is truncated)")
        length, kind = struct.unpack_from(">I4s", data, pos)
        start = pos + 8
        stop = start + length
        if length > 0x7FFFFFFF or stop + 4 > end:
            raise PngDamaged("the file ends inside a PNG chunk (it is truncated)")
        payload = data[start:stop]
        (crc,) = struct.unpack_from(">I", data, stop)
        if zlib.crc32(payload, zlib.crc32(kind)) != crc:
            name = kind.decode("latin-1", "replace")
            raise PngDamaged(f"the PNG chunk {name!r} has a bad checksum (the file is damaged)")
        yield kind, payload
        if kind == b"IEND":
            return
        pos = stop + 4


def make_chunk(kind: bytes, payload: bytes) -> bytes:
    """One serialised chunk: length, type, payload, CRC."""
    crc = zlib.crc32(payload, zlib.crc32(kind))
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def header_chunk(width: int, height: int, bit_depth: int, colour_type: int) -> bytes:
    """A serialised IHDR (deflate, adaptive filtering, no interlace)."""
    payload = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return make_chunk(b"IHDR", payload)


def parse_iccp(payload: bytes) -> bytes | None:
    """The ICC profile in an iCCP chunk, or None if it cannot be unpacked; bounded.TooLarge
    if it unpacks to more than METADATA_LIMIT (no real profile does; a bomb would)."""
    name_end = payload.find(b"\x00")
    if name_end < 0 or name_end + 2 > len(payload) or payload[name_end + 1] != 0:
        return None
    try:
        return inflate(payload[name_end + 2 :], METADATA_LIMIT, "its ICC profile")
    except zlib.error:
        return None


def iccp_chunk(icc: bytes) -> bytes:
    """A serialised iCCP chunk holding a profile."""
    return make_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc))


def parse_phys(payload: bytes) -> tuple[float, float] | None:
    """Dots per inch from a pHYs chunk (only when its unit is the metre)."""
    if len(payload) != 9:
        return None
    x, y, unit = struct.unpack(">IIB", payload)
    if unit != 1 or x == 0 or y == 0:
        return None
    return (x * 0.0254, y * 0.0254)


def phys_chunk(dpi: tuple[float, float]) -> bytes:
    """A serialised pHYs chunk for dots per inch."""
    x, y = (max(1, int(round(value / 0.0254))) for value in dpi)
    return make_chunk(b"pHYs", struct.pack(">IIB", x, y, 1))


def frame_count(actl: bytes) -> int:
    """The number of frames an APNG acTL chunk announces (1 when unreadable)."""
    if len(actl) != 8:
        return 1
    frames, _plays = struct.unpack(">II", actl)
    return max(1, frames)
