"""PNG writing a band of rows at a time, for every kind of PNG realscale writes.

Pillow encodes from its own copy of the whole image (four bytes a pixel for RGB: 1.33 times
the output array) next to the caller's array. Here rows are made, filtered and deflated a
band at a time, so the only full-size array is the caller's, at 8 bits as at 16.

Bands are filtered and deflated on a few threads at once, the way pigz does it: each band is
a run of raw deflate blocks primed with the 32 KiB before it and ended on a byte boundary,
so the pieces join into one zlib stream (the checksum is kept in order on the way).

Rows are filtered the way Pillow (after libpng) does it, so files come out as small as
Pillow's: per row, the filter whose bytes, taken as signed, lie closest to zero in sum,
trying None, Up, Sub and Paeth in that order and keeping the first best; 8-bit palette rows
are left unfiltered (packed 1, 2 and 4-bit rows are filtered like any); zlib runs with
Pillow's settings (level 6, memory level 9, the filtered strategy for filtered rows).
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

import numpy as np

from .metadata import without_prefix
from .pngchunks import SIGNATURE, header_chunk, iccp_chunk, make_chunk, phys_chunk

GREY, RGB, PALETTE, GREY_ALPHA, RGBA = 0, 2, 3, 4, 6
SAMPLES = {GREY: 1, RGB: 3, PALETTE: 1, GREY_ALPHA: 2, RGBA: 4}
_IDAT_SIZE = 1 << 20
_BAND_BYTES = 1 << 19  # raw bytes per band: bounds the scratch arrays of filtering
_WINDOW = 32 * 1024  # deflate's window: what a band's compressor is primed with
_THREADS = max(1, min(4, os.cpu_count() or 1))
_FINAL_BLOCK = b"\x03\x00"  # an empty last block (fixed Huffman): ends the deflate stream
# Filter type bytes, in the order they are tried (ties go to the earlier one).
_NONE, _SUB, _UP, _PAETH = 0, 1, 2, 4


def band_rows(width: int, bytes_per_pixel: float) -> int:
    """Rows per band for an image of this width: about half a megabyte, 8 rows at least."""
    return max(8, int(_BAND_BYTES // max(1.0, width * bytes_per_pixel)))


def scanlines(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    """(rows, row bytes) uint8 as PNG stores rows of HWC samples: 16-bit big-endian, and 1, 2
    or 4 bits packed from the left for a single channel of small values."""
    rows, width, channels = pixels.shape
    if bit_depth == 16:
        big = pixels.astype(">u2", copy=False)
        return np.ascontiguousarray(big).view(np.uint8).reshape(rows, width * channels * 2)
    if bit_depth == 8:
        return np.ascontiguousarray(pixels, dtype=np.uint8).reshape(rows, width * channels)
    per_byte = 8 // bit_depth
    padded = np.zeros((rows, -(-width // per_byte) * per_byte), dtype=np.uint8)
    padded[:, :width] = pixels[:, :, 0]
    groups = padded.reshape(rows, -1, per_byte)
    shifts = (8 - bit_depth * (np.arange(per_byte, dtype=np.uint8) + 1)).astype(np.uint8)
    return np.bitwise_or.reduce(groups << shifts, axis=2).astype(np.uint8)


def encode(
    fh: BinaryIO,
    bands: Iterable[np.ndarray],
    *,
    width: int,
    height: int,
    colour_type: int,
    bit_depth: int,
    palette: bytes | None = None,
    transparency: bytes | None = None,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    dpi: tuple[float, float] | None = None,
    level: int = 6,
) -> None:
    """Write a PNG whose rows come from ``bands``: (rows, row bytes) uint8 arrays as
    ``scanlines`` makes them, top to bottom, ``height`` rows in all. ``palette`` is the
    PLTE payload (RGB triplets) and ``transparency`` the tRNS payload, when there are any."""
    fh.write(SIGNATURE)
    fh.write(header_chunk(width, height, bit_depth, colour_type))
    if icc_profile:
        fh.write(iccp_chunk(icc_profile))
    if palette is not None:
        fh.write(make_chunk(b"PLTE", palette))
    if transparency:
        fh.write(make_chunk(b"tRNS", transparency))
    if dpi:
        fh.write(phys_chunk(dpi))
    if exif:
        fh.write(make_chunk(b"eXIf", without_prefix(exif)))
    filtered = colour_type != PALETTE or bit_depth < 8
    bpp = max(1, SAMPLES[colour_type] * bit_depth // 8)
    rowbytes = -(-width * SAMPLES[colour_type] * bit_depth // 8)
    idat = _Idat(fh)
    _deflate_bands(idat, _checked(bands, rowbytes, height), filtered, bpp, level)
    idat.close()
    fh.write(make_chunk(b"IEND", b""))


def _checked(bands: Iterable[np.ndarray], rowbytes: int, height: int) -> Iterable[np.ndarray]:
    done = 0
    for band in bands:
        if band.ndim != 2 or band.shape[1] != rowbytes:
            raise ValueError(f"PNG rows of shape {band.shape}, expected {rowbytes} bytes")
        done += band.shape[0]
        yield band
    if done != height:
        raise ValueError(f"{done} PNG rows were given for an image of {height}")


class _Idat:
    """Compressed bytes out as IDAT chunks of _IDAT_SIZE (the last one shorter)."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._pending = bytearray()

    def add(self, data: bytes) -> None:
        self._pending += data
        while len(self._pending) >= _IDAT_SIZE:
            self._fh.write(make_chunk(b"IDAT", bytes(self._pending[:_IDAT_SIZE])))
            del self._pending[:_IDAT_SIZE]

    def close(self) -> None:
        self._fh.write(make_chunk(b"IDAT", bytes(self._pending)))


def _deflate_bands(
    idat: _Idat, bands: Iterable[np.ndarray], filtered: bool, bpp: int, level: int
) -> None:
    """One zlib stream of all bands' filtered rows. Filtering a band needs only the raw row
    above it; deflating it needs the filtered bytes before it, as the dictionary that lets
    the pieces join. A few bands are in flight at a time, so memory stays a few bands."""
    strategy = zlib.Z_FILTERED if filtered else zlib.Z_DEFAULT_STRATEGY
    idat.add(zlib.compressobj(level, zlib.DEFLATED, 15, 9, strategy).flush()[:2])
    checksum = zlib.adler32(b"")
    window = b""
    depth = 2 * _THREADS
    rows_ahead: deque[Future[np.ndarray]] = deque()
    parts_ahead: deque[Future[bytes]] = deque()
    pool = ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="realscale-png")

    def next_rows() -> None:
        nonlocal checksum, window
        rows = rows_ahead.popleft().result()
        flat = rows.reshape(-1)
        checksum = zlib.adler32(flat.data, checksum)
        parts_ahead.append(pool.submit(_deflate_part, flat, window, level, strategy))
        tail = flat[-_WINDOW:].tobytes()
        window = tail if len(tail) == _WINDOW else (window + tail)[-_WINDOW:]

    try:
        previous: np.ndarray | None = None
        for band in bands:
            if filtered:
                above = np.zeros(band.shape[1], np.uint8) if previous is None else previous
                rows_ahead.append(pool.submit(filter_rows, band, above, bpp))
                previous = band[-1].copy()
            else:
                rows_ahead.append(pool.submit(_unfiltered, band))
            while len(rows_ahead) > depth:
                next_rows()
            while len(parts_ahead) > depth:
                idat.add(parts_ahead.popleft().result())
        while rows_ahead:
            next_rows()
        while parts_ahead:
            idat.add(parts_ahead.popleft().result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    idat.add(_FINAL_BLOCK + struct.pack(">I", checksum & 0xFFFFFFFF))


def _deflate_part(data: np.ndarray, window: bytes, level: int, strategy: int) -> bytes:
    """Raw deflate blocks of ``data``, primed with ``window``, ending on a byte boundary."""
    if window:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15, 9, strategy, zdict=window)
    else:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15, 9, strategy)
    return compressor.compress(data.data) + compressor.flush(zlib.Z_SYNC_FLUSH)


def _unfiltered(band: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros((band.shape[0], 1), np.uint8), band], axis=1)


def filter_rows(band: np.ndarray, previous: np.ndarray, bpp: int) -> np.ndarray:
    """Rows with their filter byte in front: per row the best of None, Up, Sub and Paeth.

    ``previous`` is the row above the band (zeros above the first row of the image)."""
    rows, rowbytes = band.shape
    above = np.empty_like(band)
    above[0] = previous
    above[1:] = band[:-1]
    left = np.zeros_like(band)
    left[:, bpp:] = band[:, :-bpp]
    up_left = np.zeros_like(band)
    up_left[:, bpp:] = above[:, :-bpp]
    # Paeth: the neighbour closest to left + above - up_left, ties to left, then above.
    to_above = above.astype(np.int16)
    to_above -= up_left
    to_left = left.astype(np.int16)
    to_left -= up_left
    far = to_above + to_left
    np.abs(far, out=far)
    np.abs(to_above, out=to_above)  # distance of the guess from left
    np.abs(to_left, out=to_left)  # distance of the guess from above
    predicted = np.where(to_left <= far, above, up_left)
    take_left = (to_above <= to_left) & (to_above <= far)
    del far, to_above, to_left
    np.copyto(predicted, left, where=take_left)
    del take_left
    candidates = (band, band - above, band - left, np.subtract(band, predicted, out=predicted))
    # A filtered byte's distance from zero as a signed value: |int8|, with -128 read as 128.
    costs = np.stack([
        np.add.reduce(np.abs(candidate.view(np.int8)).view(np.uint8), axis=1, dtype=np.uint64)
        for candidate in candidates
    ])
    best = np.argmin(costs, axis=0)  # the first of equal costs, as Pillow keeps it
    out = np.empty((rows, rowbytes + 1), dtype=np.uint8)
    out[:, 0] = np.array([_NONE, _UP, _SUB, _PAETH], dtype=np.uint8)[best]
    for index, candidate in enumerate(candidates):
        chosen = best == index
        if chosen.any():
            out[chosen, 1:] = candidate[chosen]
    return out
