"""16-bit PNG decoding (grey, grey+alpha, RGB, RGBA), because Pillow keeps only 8 bits.

Pillow decodes 16-bit colour PNGs as 8-bit without a warning, so this module decodes them
with zlib and numpy (pngencode writes them). Unfiltering is the slow part of PNG decoding: the Sub,
Average and Paeth filters make every byte depend on the one to its left. Decoding therefore
walks the image in anti-diagonal wavefronts (every pixel on a diagonal only depends on the
two diagonals before it) so each step is one vectorised numpy operation over a whole
diagonal; rows filtered only with None/Sub/Up take a quicker row-by-row path.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from .metadata import with_prefix
from .pngchunks import (
    PngDamaged,
    PngHeader,
    frame_count,
    iter_chunks,
    parse_header,
    parse_iccp,
    parse_phys,
)

# Adam7 passes: (x start, y start, x step, y step).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))
_BAND = 512  # rows per wavefront band: bounds the scratch memory of unfiltering
_MODES = {(1, False): "I;16", (1, True): "LA;16", (3, False): "RGB;16", (3, True): "RGBA;16"}


@dataclass
class Png16:
    """A decoded 16-bit PNG: uint16 HWC pixels plus what the file said about them."""

    pixels: np.ndarray
    mode: str
    icc_profile: bytes | None
    exif: bytes | None
    dpi: tuple[float, float] | None
    n_frames: int


def decode(data: bytes) -> Png16:
    """Decode a whole 16-bit PNG file held in memory (the header was checked by the caller)."""
    header = parse_header(data)
    if header.bit_depth != 16:
        raise PngDamaged("the PNG is not 16-bit")
    idat: list[bytes] = []
    icc = exif = trns = None
    dpi = None
    frames = 1
    for kind, payload in iter_chunks(data):
        if kind == b"IDAT":
            idat.append(payload)
        elif kind == b"iCCP":
            icc = parse_iccp(payload)
        elif kind == b"eXIf":
            exif = with_prefix(payload)
        elif kind == b"tRNS":
            trns = payload
        elif kind == b"pHYs":
            dpi = parse_phys(payload)
        elif kind == b"acTL":
            frames = frame_count(payload)
    if not idat:
        raise PngDamaged("the PNG holds no image data")
    channels = header.channels
    raw = _inflate(b"".join(idat), _raw_size(header))
    if header.interlace:
        pixels = _deinterlace(raw, header)
    else:
        rows = _unfilter(raw, header.height, header.width * channels * 2, channels * 2)
        pixels = rows.reshape(header.height, header.width, channels * 2)
        pixels = _to_uint16(pixels, channels)
    alpha = channels in (2, 4)
    if trns is not None and not alpha:
        pixels = _colour_key_alpha(pixels, trns)
        alpha = pixels.shape[2] in (2, 4)
    colour_channels = 1 if channels <= 2 else 3
    return Png16(pixels, _MODES[(colour_channels, alpha)], icc, exif, dpi, frames)


def _raw_size(header: PngHeader) -> int:
    bpp = header.channels * 2
    if not header.interlace:
        return header.height * (1 + header.width * bpp)
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        width = (header.width - x0 + dx - 1) // dx
        height = (header.height - y0 + dy - 1) // dy
        if width > 0 and height > 0:
            total += height * (1 + width * bpp)
    return total


def _inflate(compressed: bytes, expected: int) -> np.ndarray:
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(compressed, expected)
    except zlib.error as exc:
        raise PngDamaged("the PNG image data is corrupt") from exc
    if len(raw) < expected:
        raise PngDamaged("the PNG image data ends early (the file is truncated)")
    return np.frombuffer(raw, dtype=np.uint8)


def _to_uint16(pixels: np.ndarray, channels: int) -> np.ndarray:
    """Big-endian byte pairs (H, W, 2C) -> native uint16 (H, W, C)."""
    height, width = pixels.shape[:2]
    big = np.ascontiguousarray(pixels).view(">u2").reshape(height, width, channels)
    return big.astype(np.uint16)


def _deinterlace(raw: np.ndarray, header: PngHeader) -> np.ndarray:
    channels = header.channels
    bpp = channels * 2
    out = np.empty((header.height, header.width, channels), dtype=np.uint16)
    pos = 0
    for x0, y0, dx, dy in _ADAM7:
        width = (header.width - x0 + dx - 1) // dx
        height = (header.height - y0 + dy - 1) // dy
        if width <= 0 or height <= 0:
            continue
        size = height * (1 + width * bpp)
        rows = _unfilter(raw[pos : pos + size], height, width * bpp, bpp)
        out[y0::dy, x0::dx] = _to_uint16(rows.reshape(height, width, bpp), channels)
        pos += size
    return out


def _colour_key_alpha(pixels: np.ndarray, trns: bytes) -> np.ndarray:
    """A tRNS colour key (grey or RGB) becomes a real alpha channel."""
    channels = pixels.shape[2]
    if len(trns) != 2 * channels:
        return pixels
    key = np.frombuffer(trns, dtype=">u2").astype(np.uint16)
    transparent = np.all(pixels == key, axis=2, keepdims=True)
    alpha = np.where(transparent, 0, 65535).astype(np.uint16)
    return np.concatenate([pixels, alpha], axis=2)


def _unfilter(raw: np.ndarray, height: int, rowbytes: int, bpp: int) -> np.ndarray:
    """Undo PNG filtering: (height * (1 + rowbytes)) filtered bytes -> (height, rowbytes)."""
    rows = raw[: height * (rowbytes + 1)].reshape(height, rowbytes + 1)
    filters = rows[:, 0]
    if filters.size and int(filters.max()) > 4:
        raise PngDamaged("the PNG image data uses an unknown filter (the file is damaged)")
    data = rows[:, 1:]
    out = np.empty((height, rowbytes), dtype=np.uint8)
    previous = np.zeros(rowbytes, dtype=np.uint8)
    start = 0
    while start < height:
        stop = min(height, start + _BAND)
        band = filters[start:stop]
        if np.any(band >= 3):
            _unfilter_wavefront(data[start:stop], band, previous, bpp, out[start:stop])
        else:
            _unfilter_simple(data[start:stop], band, previous, bpp, out[start:stop])
        previous = out[stop - 1]
        start = stop
    return out


def _unfilter_simple(data: np.ndarray, filters: np.ndarray, previous: np.ndarray, bpp: int,
                     out: np.ndarray) -> None:
    """Rows filtered with None, Sub or Up only: each row is one vectorised step."""
    for index, kind in enumerate(filters):
        row = data[index]
        if kind == 0:
            out[index] = row
        elif kind == 1:
            # Sub: running sum along each byte lane, modulo 256.
            out[index] = np.cumsum(row.reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
        else:
            out[index] = row + previous
        previous = out[index]


def _unfilter_wavefront(data: np.ndarray, filters: np.ndarray, previous: np.ndarray,
                        bpp: int, out: np.ndarray) -> None:
    """Any filters: process pixels diagonal by diagonal (x + y constant).

    Scratch arrays are indexed [diagonal + 2, y + 1, byte]; slot y = -1 holds the row above
    the band and diagonals -2 and -1 are zero, so left, up and up-left neighbours are plain
    slices of the two previous diagonals.
    """
    rows, rowbytes = data.shape
    width = rowbytes // bpp
    diagonals = width + rows - 1
    done = np.zeros((diagonals + 2, rows + 1, bpp), dtype=np.uint8)
    done[1 : width + 1, 0] = previous.reshape(width, bpp)  # up neighbours of the first row
    skew_in = np.zeros_like(done)
    _skewed_view(skew_in, rows, width, bpp)[...] = data.reshape(rows, width, bpp)
    kinds = filters.astype(np.int16)[:, None]
    for diagonal in range(diagonals):
        y0 = max(0, diagonal - width + 1)
        y1 = min(rows, diagonal + 1)
        left = done[diagonal + 1, y0 + 1 : y1 + 1].astype(np.int16)
        up = done[diagonal + 1, y0:y1].astype(np.int16)
        up_left = done[diagonal, y0:y1].astype(np.int16)
        kind = kinds[y0:y1]
        pa = np.abs(up - up_left)
        pb = np.abs(left - up_left)
        pc = np.abs(left + up - 2 * up_left)
        paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
        average = (left + up) >> 1
        predicted = np.where(
            kind == 4, paeth,
            np.where(kind == 3, average, np.where(kind == 2, up, np.where(kind == 1, left, 0))),
        )
        done[diagonal + 2, y0 + 1 : y1 + 1] = skew_in[diagonal + 2, y0 + 1 : y1 + 1] + (
            predicted.astype(np.uint8)
        )
    out[...] = _skewed_view(done, rows, width, bpp).reshape(rows, rowbytes)


def _skewed_view(scratch: np.ndarray, rows: int, width: int, bpp: int) -> np.ndarray:
    """A (rows, width, bpp) view of a scratch array where pixel (y, x) is [x + y + 2, y + 1]."""
    stride_d, stride_y, stride_b = scratch.strides
    base = scratch[2:, 1:]
    return np.lib.stride_tricks.as_strided(
        base,
        shape=(rows, width, bpp),
        strides=(stride_d + stride_y, stride_d, stride_b),
        writeable=True,
    )
