"""write_image: pixels -> a file in the format asked for, restoring the input's kind.

The output keeps the mode and depth of ``like`` wherever the format can hold them, and
otherwise converts down: 16-bit and float to 8-bit with rounding for JPEG, WebP, BMP and GIF;
float to 16-bit for PNG. Alpha that a format cannot hold (JPEG) is composited over white.
"""

from __future__ import annotations

import os
from typing import BinaryIO

import numpy as np
from PIL import Image

from ..errors import ImageWriteError
from . import pngencode, tiff
from .atomic import write_atomically
from .convert import as_hwc, to_depth, to_layout
from .decoded import DecodedImage
from .metadata import icc_fits, without_prefix
from .modes import DEPTH_8, DEPTH_16, DEPTH_FLOAT, ModeInfo, info_of, mode_info
from .palette import quantize

_FORMATS = {
    "png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "jpe": "JPEG", "jfif": "JPEG",
    "webp": "WEBP", "tif": "TIFF", "tiff": "TIFF", "bmp": "BMP", "gif": "GIF",
}
# What each format can hold: colour models, alpha, depths.
_COLOURS = {
    "PNG": ("L", "RGB", "P", "1"),
    "JPEG": ("L", "RGB", "CMYK"),
    "WEBP": ("RGB",),
    "TIFF": ("L", "RGB", "P", "CMYK", "1"),
    "BMP": ("L", "RGB", "P", "1"),
    "GIF": ("P",),
}
_ALPHA = {"PNG": True, "JPEG": False, "WEBP": True, "TIFF": True, "BMP": True, "GIF": True}
_JPEG_EXIF_LIMIT = 65533
_DEPTHS = {"PNG": (DEPTH_8, DEPTH_16), "TIFF": (DEPTH_8, DEPTH_16, DEPTH_FLOAT)}


def output_format(path: str | os.PathLike, format: str | None = None) -> str:
    """Pillow's name for the output format: from ``format`` or else the path's suffix."""
    key = (format or os.path.splitext(os.fspath(path))[1]).lower().lstrip(".")
    if key not in _FORMATS:
        given = f"format {format!r}" if format else f"the suffix of {os.fspath(path)}"
        raise ImageWriteError(
            f"Cannot write {os.fspath(path)}: {given} is not an output format this program "
            "writes; use png, jpg, webp or tiff (or bmp, gif)."
        )
    return _FORMATS[key]


def write_image(
    path: str | os.PathLike,
    pixels: np.ndarray,
    *,
    like: DecodedImage | None = None,
    format: str | None = None,
    quality: int = 95,
) -> None:
    """Write HWC pixels (uint8, uint16 or float 0..1) atomically, in the kind of ``like``.

    Kept from ``like`` where the format allows: colour model (grey, RGB, palette, CMYK,
    bilevel), alpha, depth, ICC profile (when it fits the colour model written), EXIF (PNG,
    JPEG, WebP) and dpi. JPEG has no alpha, so alpha is composited over white. ``quality``
    is for JPEG and WebP; WebP at 100 or more is lossless. Raises ImageWriteError (leaving
    nothing behind) when the file cannot be written; a malformed array is a ValueError.
    """
    name = os.fspath(path)
    fmt = output_format(name, format)
    pixels = as_hwc(pixels)
    target = _target_mode(pixels, like, fmt)
    grey = target.colour in ("L", "1")
    icc = like.icc_profile if like is not None else None
    icc = icc if icc_fits(icc, target.colour) else None
    exif = like.exif if like is not None and fmt in ("PNG", "JPEG", "WEBP") else None
    if exif and fmt == "JPEG" and len(exif) > _JPEG_EXIF_LIMIT:
        exif = None  # one APP1 segment cannot hold it; the pixels matter more
    if exif and fmt == "WEBP":
        exif = without_prefix(exif)  # WebP's EXIF chunk holds the bare TIFF structure
    dpi = like.dpi if like is not None and fmt != "WEBP" else None

    def encode(handle: BinaryIO) -> None:
        if fmt == "PNG":
            # Converted and written band by band: no second full-size image.
            _write_png(handle, pixels, target, like, icc, exif, dpi)
            return
        data = to_depth(to_layout(pixels, grey, target.alpha), target.depth)
        if target.depth != DEPTH_8:
            tiff.write_deep(handle, data, icc_profile=icc, dpi=dpi)
        else:
            image, extra = _pillow_image(data, target, like, fmt)
            options = _options(fmt, quality, icc, exif, dpi)
            options.update(extra)
            image.save(handle, format=fmt, **options)

    write_atomically(name, encode, fmt)


def _write_png(
    handle: BinaryIO, pixels: np.ndarray, target: ModeInfo, like: DecodedImage | None,
    icc: bytes | None, exif: bytes | None, dpi: tuple[float, float] | None,
) -> None:
    """The PNG of ``pixels`` in the target kind, each band of rows converted on its way to
    the encoder: the same conversions as the other formats, one band at a time."""
    height, width = pixels.shape[:2]
    grey = target.colour in ("L", "1")
    palette = transparency = None
    if target.colour == "P":
        assert like is not None and like.palette is not None  # _target_mode's rule
        entries = like.palette[:256]
        colours = len(entries)
        bit_depth = 1 if colours <= 2 else 2 if colours <= 4 else 4 if colours <= 16 else 8
        colour_type = pngencode.PALETTE
        palette = entries[:, :3].tobytes()
        if (entries[:, 3] < 255).any():
            transparency = entries[:, 3].tobytes()

        def rows(band: np.ndarray) -> np.ndarray:
            rgb = to_depth(to_layout(band, grey=False, alpha=target.alpha), DEPTH_8)
            indices = quantize(to_layout(rgb, grey=False, alpha=True), entries)
            return pngencode.scanlines(indices[:, :, None], bit_depth)
    elif target.colour == "1":
        bit_depth, colour_type = 1, pngencode.GREY

        def rows(band: np.ndarray) -> np.ndarray:
            level = to_depth(to_layout(band, grey=True, alpha=False), DEPTH_8)
            return pngencode.scanlines((level >= 128).astype(np.uint8), 1)
    else:
        bit_depth = 8 if target.depth == DEPTH_8 else 16
        colour_type = {(True, False): pngencode.GREY, (True, True): pngencode.GREY_ALPHA,
                       (False, False): pngencode.RGB, (False, True): pngencode.RGBA}[
            (grey, target.alpha)]
        depth = DEPTH_8 if bit_depth == 8 else DEPTH_16

        def rows(band: np.ndarray) -> np.ndarray:
            return pngencode.scanlines(to_depth(to_layout(band, grey, target.alpha), depth),
                                       bit_depth)

    written = pngencode.SAMPLES[colour_type] * bit_depth / 8
    step = pngencode.band_rows(width, max(written, pixels.shape[2] * pixels.dtype.itemsize))
    pngencode.encode(
        handle, (rows(pixels[top : top + step]) for top in range(0, height, step)),
        width=width, height=height, colour_type=colour_type, bit_depth=bit_depth,
        palette=palette, transparency=transparency, icc_profile=icc, exif=exif, dpi=dpi,
    )


def _target_mode(pixels: np.ndarray, like: DecodedImage | None, fmt: str) -> ModeInfo:
    """The colour model, alpha and depth to write, given the input's kind and the format."""
    source = mode_info(like.source_mode) if like is not None else None
    if source is None:
        source = info_of(pixels)
    colour, alpha, depth = source.colour, source.alpha, source.depth
    if colour == "P" and (like is None or like.palette is None or fmt not in ("PNG", "GIF")):
        colour = "RGB"  # palettes are restored in PNG and GIF only
    if colour == "CMYK" and alpha:
        colour = "RGB"
    if colour not in _COLOURS[fmt]:
        if fmt == "GIF":
            colour = "P"
        elif colour == "1" and "L" in _COLOURS[fmt]:
            colour = "L"
        else:
            colour = "RGB"
    if not _ALPHA[fmt]:
        alpha = False
    if colour == "1" and alpha:
        colour = "L"
    allowed = _DEPTHS.get(fmt, (DEPTH_8,))
    if colour in ("P", "1", "CMYK"):
        depth = DEPTH_8
    elif depth not in allowed:
        depth = DEPTH_16 if depth == DEPTH_FLOAT and DEPTH_16 in allowed else DEPTH_8
    return ModeInfo(colour, alpha, depth)


def _pillow_image(
    data: np.ndarray, target: ModeInfo, like: DecodedImage | None, fmt: str
) -> tuple[Image.Image, dict[str, object]]:
    """An 8-bit Pillow image in the target mode, plus save options it needs."""
    if target.colour == "P":
        return _palette_image(data, like, fmt)
    image = Image.fromarray(data[:, :, 0] if data.shape[2] == 1 else data)  # mode from shape
    if target.colour == "CMYK":
        image = image.convert("CMYK")
    elif target.colour == "1":
        image = image.convert("1", dither=Image.Dither.NONE)
    elif image.mode == "LA" and fmt in ("BMP", "WEBP"):
        image = image.convert("RGBA")
    return image, {}


def _palette_image(
    data: np.ndarray, like: DecodedImage | None, fmt: str
) -> tuple[Image.Image, dict[str, object]]:
    rgba = to_layout(data, grey=False, alpha=True)
    palette = like.palette if like is not None else None
    if palette is not None and fmt == "GIF":
        # GIF has one transparent index and no partial alpha.
        palette = palette.copy()
        palette[:, 3] = np.where(palette[:, 3] < 128, 0, 255)
        rgba = rgba.copy()
        rgba[:, :, 3] = np.where(rgba[:, :, 3] < 128, 0, 255)
    if palette is None:
        return _adaptive_gif(rgba)
    indices = quantize(rgba, palette)
    extra: dict[str, object] = {}
    alpha = palette[:, 3]
    if (alpha < 255).any():
        if fmt == "GIF":
            clear = int(np.argmin(alpha))
            indices[(alpha == 0)[indices]] = clear  # GIF has only one transparent index
            extra["transparency"] = clear
        else:
            extra["transparency"] = alpha.tobytes()
    image = Image.fromarray(indices)
    image.putpalette(palette[:, :3].tobytes(), rawmode="RGB")
    if fmt == "GIF":
        extra["optimize"] = False
    return image, extra


def _adaptive_gif(rgba: np.ndarray) -> tuple[Image.Image, dict[str, object]]:
    """A GIF palette made for the image: 255 colours plus a transparent index if needed."""
    transparent = rgba[:, :, 3] < 128
    rgb = Image.fromarray(np.ascontiguousarray(rgba[:, :, :3]))
    if not transparent.any():
        return rgb.quantize(256, dither=Image.Dither.NONE), {}
    quantized = rgb.quantize(255, dither=Image.Dither.NONE)
    indices = np.asarray(quantized).copy()
    indices[transparent] = 255
    colours = (quantized.getpalette("RGB") or [])[: 255 * 3]
    colours += [0] * (256 * 3 - len(colours))
    image = Image.fromarray(indices)
    image.putpalette(bytes(colours), rawmode="RGB")
    return image, {"transparency": 255, "optimize": False}


def _options(
    fmt: str,
    quality: int,
    icc: bytes | None,
    exif: bytes | None,
    dpi: tuple[float, float] | None,
) -> dict[str, object]:
    options: dict[str, object] = {}
    if icc:
        options["icc_profile"] = icc
    if exif:
        options["exif"] = exif
    if dpi and fmt in ("PNG", "JPEG", "TIFF", "BMP"):
        options["dpi"] = dpi
    if fmt == "JPEG":
        options["quality"] = max(1, min(int(quality), 100))
        # Upscaled detail suffers from chroma subsampling; keep full colour at high quality.
        options["subsampling"] = 0 if quality >= 90 else 2
    elif fmt == "WEBP":
        options["method"] = 4
        if quality >= 100:
            options["lossless"] = True
        else:
            options["quality"] = max(1, int(quality))
    elif fmt == "TIFF":
        options["compression"] = "tiff_deflate"
    return options
