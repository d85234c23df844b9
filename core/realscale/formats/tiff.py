"""TIFF with more than 8 bits per sample (16-bit integer, float), through tifffile.

Pillow reads 8-bit TIFFs well (every compression, palette, CMYK) but turns 16-bit colour
into 8-bit and cannot read float colour at all, so the reader asks tifffile what a TIFF holds
first and only hands deeper samples to tifffile. Compressions that tifffile decodes only with
the optional ``imagecodecs`` package (LZW, PackBits, JPEG...) give a clear error when that
package is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import tifffile

from .bounded import check_unpacked_size
from .convert import unpremultiply
from .modes import DEPTH_16, DEPTH_FLOAT, mode_name

_MINISWHITE, _MINISBLACK, _RGB, _SEPARATED = 0, 1, 2, 5
_ASSOCIATED_ALPHA = 1
_MAX_SAMPLES = 8  # RGBA plus a few extra channels; more is not an image this program upscales
# Compressions tifffile can decode without imagecodecs, by the stream kind they use. tifffile
# inflates such a segment whole before cutting it to size, so its size is checked first.
_STREAMS = {8: "zlib", 32946: "zlib", 50013: "zlib", 34925: "lzma"}


class TiffUnsupported(ValueError):
    """A TIFF this package cannot read; the message says what it holds, in a few words."""


class TiffNeedsCodecs(TiffUnsupported):
    """A TIFF compressed in a way tifffile decodes only with the imagecodecs package."""


@dataclass
class TiffProbe:
    """What the first page of a TIFF holds, read from its header only."""

    width: int
    height: int
    deep: bool  # more than 8 bits per sample: decode with tifffile
    samples: int
    n_frames: int


@dataclass
class DeepTiff:
    """A decoded deep TIFF: HWC uint16 or float32 pixels plus what the file said about them."""

    pixels: np.ndarray
    mode: str
    icc_profile: bytes | None
    dpi: tuple[float, float] | None
    orientation: int
    n_frames: int


def probe(path: str) -> TiffProbe:
    """Read a TIFF's first IFD without decoding pixels."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        bits = page.bitspersample
        deep = bits > 8 or page.sampleformat == 3
        return TiffProbe(
            page.imagewidth, page.imagelength, deep, page.samplesperpixel, len(tif.pages)
        )


def read_deep(path: str) -> DeepTiff:
    """Decode the first page of a 16-bit or float TIFF as straight-alpha HWC samples."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        kind = _sample_kind(page)
        photometric = int(page.photometric)
        if photometric not in (_MINISWHITE, _MINISBLACK, _RGB):
            what = "CMYK" if photometric == _SEPARATED else f"photometric {photometric}"
            raise TiffUnsupported(f"it holds deep {what} samples")
        _check_layout(page)
        _check_segments(tif, page)
        try:
            pixels = page.asarray()
        except (KeyError, ValueError, ImportError) as exc:
            if "imagecodecs" in str(exc):
                name = getattr(page.compression, "name", str(page.compression))
                raise TiffNeedsCodecs(
                    f"it is compressed with {name}, which needs the imagecodecs package"
                ) from exc
            raise
        pixels = _to_hwc(pixels, page.axes)
        icc = _tag(page, "InterColorProfile")
        dpi = _dpi(page)
        orientation = _tag(page, "Orientation")
        extras = tuple(int(e) for e in (page.extrasamples or ()))
        frames = len(tif.pages)
    colour_samples = 1 if photometric in (_MINISWHITE, _MINISBLACK) else 3
    if pixels.shape[2] < colour_samples:
        raise TiffUnsupported("it holds fewer samples than its colour model needs")
    alpha = pixels.shape[2] > colour_samples
    pixels = pixels[:, :, : colour_samples + (1 if alpha else 0)]
    pixels = pixels.astype(np.uint16 if kind == DEPTH_16 else np.float32, copy=False)
    if photometric == _MINISWHITE:
        white = np.uint16(65535) if kind == DEPTH_16 else np.float32(1.0)
        pixels = pixels.copy()
        pixels[:, :, :1] = white - pixels[:, :, :1]
    if alpha and extras and extras[0] == _ASSOCIATED_ALPHA:
        pixels = unpremultiply(pixels)
    colour = "L" if colour_samples == 1 else "RGB"
    return DeepTiff(
        np.ascontiguousarray(pixels),
        mode_name(colour, alpha, kind),
        bytes(icc) if isinstance(icc, (bytes, bytearray)) else None,
        dpi,
        int(orientation) if orientation else 1,
        frames,
    )


def _check_layout(page: tifffile.TiffPage) -> None:
    """The array tifffile allocates has depth x height x width x samples entries; the size
    limit covers height x width only, so the other two must stay small."""
    if int(page.samplesperpixel) > _MAX_SAMPLES:
        raise TiffUnsupported(f"it holds {page.samplesperpixel} samples per pixel")
    if int(getattr(page, "imagedepth", 1) or 1) > 1:
        raise TiffUnsupported("it holds a volume (image depth above 1), not an image")


def _check_segments(tif: tifffile.TiffFile, page: tifffile.TiffPage) -> None:
    """Raise bounded.TooLarge if a compressed strip or tile unpacks to more bytes than a
    whole one holds: a decompression bomb must not be inflated in one piece."""
    stream = _STREAMS.get(int(page.compression))
    if stream is None:
        return
    samples = int(page.samplesperpixel) if int(page.planarconfig) == 1 else 1
    sample_bytes = (int(page.bitspersample) + 7) // 8
    if page.is_tiled:
        area = int(page.tilewidth) * int(page.tilelength) * int(page.tiledepth or 1)
        what = "a compressed tile"
    else:
        area = int(page.imagewidth) * min(int(page.rowsperstrip), int(page.imagelength))
        what = "a compressed strip"
    limit = area * samples * sample_bytes
    handle = tif.filehandle
    for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False):
        if not count:
            continue
        handle.seek(offset)
        check_unpacked_size(handle.read(count), limit, what, stream)


def _sample_kind(page: tifffile.TiffPage) -> str:
    bits = page.bitspersample
    if page.sampleformat == 3 and bits in (16, 32, 64):
        return DEPTH_FLOAT
    if page.sampleformat in (1, None) and bits == 16:
        return DEPTH_16
    raise TiffUnsupported(f"it holds {bits}-bit samples of a kind this program cannot use")


def _to_hwc(pixels: np.ndarray, axes: str) -> np.ndarray:
    """tifffile's page array (YX, YXS or SYX) -> HWC."""
    if axes == "YX":
        return pixels[:, :, None]
    if axes == "YXS":
        return pixels
    if axes == "SYX":
        return np.moveaxis(pixels, 0, -1)
    raise TiffUnsupported(f"its pages have an unusual layout ({axes})")


def _tag(page: tifffile.TiffPage, name: str) -> Any:
    tag = page.tags.get(name)
    return None if tag is None else tag.value


def _dpi(page: tifffile.TiffPage) -> tuple[float, float] | None:
    x, y, unit = (_tag(page, n) for n in ("XResolution", "YResolution", "ResolutionUnit"))
    if not (isinstance(x, tuple) and isinstance(y, tuple)) or not x[1] or not y[1]:
        return None
    per = {2: 1.0, 3: 2.54}.get(int(unit) if unit is not None else 2)
    if per is None:
        return None
    return (x[0] / x[1] * per, y[0] / y[1] * per)


def write_deep(
    fh: BinaryIO,
    pixels: np.ndarray,
    *,
    icc_profile: bytes | None = None,
    dpi: tuple[float, float] | None = None,
) -> None:
    """Write uint16 or float32 HWC pixels as a Deflate-compressed TIFF, alpha unassociated."""
    channels = pixels.shape[2]
    if pixels.dtype.kind == "f":
        pixels = pixels.astype(np.float32, copy=False)
    options: dict[str, Any] = {
        "photometric": "minisblack" if channels <= 2 else "rgb",
        "planarconfig": "contig",
        "compression": "zlib",
        "metadata": None,
        "software": "realscale",
    }
    data = pixels[:, :, 0] if channels == 1 else pixels
    if channels in (2, 4):
        options["extrasamples"] = ("unassalpha",)
    if icc_profile:
        options["iccprofile"] = icc_profile
    if dpi:
        options["resolution"] = (float(dpi[0]), float(dpi[1]))
        options["resolutionunit"] = "INCH"
    tifffile.imwrite(fh, np.ascontiguousarray(data), **options)
