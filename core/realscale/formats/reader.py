"""read_image: any supported file -> DecodedImage, or an ImageReadError a user can act on.

Routing: the header is looked at before anything is decoded, so the size limit is enforced
before a single pixel is allocated. 16-bit PNGs go to png16, TIFFs deeper than 8 bits go to
tifffile, everything else to Pillow. EXIF orientation is applied to the pixels here, once,
the same way ImageOps.exif_transpose does it.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import warnings
import zlib
from collections.abc import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ImageReadError
from . import png16, tiff
from .bounded import METADATA_LIMIT, TooLarge
from .decoded import DEFAULT_MAX_PIXELS, DecodedImage
from .metadata import apply_orientation, orientation_of, reset_orientation, with_prefix
from .palette import palette_from_pillow
from .pngchunks import HEADER_BYTES, PngDamaged, is_png, parse_header

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# Pillow's bomb limit is a module global: hold it (and the warning filter) per decode.
_PILLOW_LOCK = threading.Lock()


def read_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode the first frame of an image file into HWC pixels plus what is needed to write
    it back the same way.

    Animated GIF, WebP and PNG files give their first frame; ``n_frames`` says how many
    there are so a caller can warn. Raises ImageReadError for anything that is not a
    readable image, or is larger than ``max_pixels``.
    """
    name = os.fspath(path)
    head = _read_head(name)
    if is_png(head):
        return _read_png(name, head, max_pixels)
    if head[:4] in _TIFF_MAGIC:
        probe = _probe_tiff(name)
        if probe is not None:
            _check_size(name, probe.width, probe.height, max_pixels)
            if probe.deep:
                return _read_deep_tiff(name, probe, max_pixels)
    return _read_with_pillow(name, max_pixels)


def _read_head(name: str) -> bytes:
    try:
        with open(name, "rb") as handle:
            head = handle.read(64)
    except FileNotFoundError:
        message = f"Cannot read {name}: the file does not exist; check the path."
        raise ImageReadError(message) from None
    except IsADirectoryError:
        message = f"Cannot read {name}: it is a folder, not an image file."
        raise ImageReadError(message) from None
    except PermissionError:
        raise ImageReadError(
            f"Cannot read {name}: permission denied; check the file's permissions."
        ) from None
    except OSError as exc:
        raise ImageReadError(f"Cannot read {name}: {exc.strerror or exc}.") from exc
    if not head:
        raise ImageReadError(f"Cannot read {name}: the file is empty (0 bytes).")
    return head


def _check_size(name: str, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageReadError(
            f"Cannot read {name}: the image is {width}x{height} pixels and has nothing to "
            "upscale."
        )
    if width * height > max_pixels:
        raise ImageReadError(_too_large(name, f"{width}x{height} = {width * height:,}",
                                        max_pixels))


def _too_large(name: str, size: str, max_pixels: int) -> str:
    return (
        f"Cannot read {name}: the image is {size} pixels, more than the limit of "
        f"{max_pixels:,}; pass a larger --max-pixels if you trust this file."
    )


def _too_much_unpacked(name: str, exc: TooLarge) -> ImageReadError:
    return ImageReadError(
        f"Cannot read {name}: {exc}, so it is a decompression bomb or damaged; re-export it "
        "from the program that made it."
    )


def _damaged(name: str, reason: str) -> ImageReadError:
    return ImageReadError(f"Cannot read {name}: {reason}; re-export or re-download the file.")


def _read_png(name: str, head: bytes, max_pixels: int) -> DecodedImage:
    try:
        header = parse_header(head[:HEADER_BYTES])
    except PngDamaged as exc:
        raise _damaged(name, str(exc)) from None
    _check_size(name, header.width, header.height, max_pixels)
    if header.bit_depth != 16:
        return _read_with_pillow(name, max_pixels)
    try:
        with open(name, "rb") as handle:
            decoded = png16.decode(handle.read())
    except TooLarge as exc:
        raise _too_much_unpacked(name, exc) from None
    except PngDamaged as exc:
        raise _damaged(name, str(exc)) from None
    except (OSError, MemoryError) as exc:
        raise ImageReadError(f"Cannot read {name}: {exc}.") from exc
    pixels, exif = _upright(decoded.pixels, decoded.exif)
    return DecodedImage(
        pixels=pixels,
        source_mode=decoded.mode,
        format="PNG",
        icc_profile=decoded.icc_profile,
        exif=exif,
        dpi=decoded.dpi,
        n_frames=decoded.n_frames,
    )


def _upright(pixels: np.ndarray, exif: bytes | None) -> tuple[np.ndarray, bytes | None]:
    """Apply EXIF orientation to the pixels and say orientation 1 in the EXIF kept."""
    orientation = orientation_of(exif)
    if orientation == 1 or exif is None:
        return pixels, exif
    try:
        exif = reset_orientation(exif)
    except Exception:  # noqa: BLE001 - EXIF we cannot rewrite is dropped, not fatal
        exif = None
    return apply_orientation(pixels, orientation), exif


def _probe_tiff(name: str) -> tiff.TiffProbe | None:
    try:
        return tiff.probe(name)
    except Exception:  # noqa: BLE001 - not for tifffile: Pillow gets a try and says why
        return None


def _read_deep_tiff(name: str, probe: tiff.TiffProbe, max_pixels: int) -> DecodedImage:
    try:
        decoded = tiff.read_deep(name)
    except tiff.TiffNeedsCodecs as exc:
        if probe.samples == 1:  # Pillow keeps 16-bit and float grey, in any compression
            return _read_with_pillow(name, max_pixels)
        raise ImageReadError(
            f"Cannot read {name}: {exc}; install it (pip install imagecodecs) or save the "
            "file with Deflate or no compression."
        ) from None
    except TooLarge as exc:
        raise _too_much_unpacked(name, exc) from None
    except tiff.TiffUnsupported as exc:
        raise ImageReadError(
            f"Cannot read {name}: {exc}; save it as 8-bit, 16-bit or float RGB/grey TIFF "
            "with Deflate or no compression."
        ) from None
    except MemoryError:
        raise ImageReadError(f"Cannot read {name}: not enough memory to decode it.") from None
    except Exception as exc:  # noqa: BLE001 - tifffile raises many kinds on damaged files
        raise _damaged(name, f"the TIFF data could not be decoded ({_short(exc)})") from exc
    if decoded.pixels.dtype.kind == "f" and not np.isfinite(decoded.pixels).all():
        raise ImageReadError(
            f"Cannot read {name}: the file contains NaN or infinite values; clamp or replace "
            "them in the program that made it."
        )
    pixels = apply_orientation(decoded.pixels, decoded.orientation)
    return DecodedImage(
        pixels=pixels,
        source_mode=decoded.mode,
        format="TIFF",
        icc_profile=decoded.icc_profile,
        exif=None,
        dpi=decoded.dpi,
        n_frames=decoded.n_frames,
    )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


@contextlib.contextmanager
def _pillow_limit(max_pixels: int) -> Iterator[None]:
    """Pillow's own decompression-bomb check, set to our limit and made an error."""
    with _PILLOW_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _read_with_pillow(name: str, max_pixels: int) -> DecodedImage:
    try:
        with _pillow_limit(max_pixels), Image.open(name) as image:
            _check_size(name, image.width, image.height, max_pixels)
            image.load()
            return _from_pillow(name, image)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,}" if found else "more"
        raise ImageReadError(_too_large(name, size, max_pixels)) from None
    except UnidentifiedImageError:
        raise ImageReadError(
            f"Cannot read {name}: it is not an image file in a format this program reads "
            "(PNG, JPEG, WebP, TIFF, BMP, GIF...)."
        ) from None
    except MemoryError:
        raise ImageReadError(f"Cannot read {name}: not enough memory to decode it.") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, zlib.error) as exc:
        text = _short(exc)
        if isinstance(exc, ValueError) and _pillow_text_limit(text):
            # Pillow's own ceiling on PNG metadata (iCCP, zTXt, iTXt), the one png16 shares.
            limit = TooLarge(f"a metadata chunk (ICC profile or text) unpacks to more than "
                             f"{METADATA_LIMIT:,} bytes")
            raise _too_much_unpacked(name, limit) from None
        if "truncated" in text or isinstance(exc, EOFError):
            raise _damaged(name, "the file is truncated") from None
        raise _damaged(name, f"the image data could not be decoded ({text})") from None


def _pillow_text_limit(text: str) -> bool:
    lowered = text.lower()
    return "decompressed data too large" in lowered or "max_text_memory" in lowered


def _from_pillow(name: str, image: Image.Image) -> DecodedImage:
    """Pillow image (loaded) -> DecodedImage with the source mode recorded."""
    fmt = image.format or "UNKNOWN"
    mode = image.mode
    info = image.info
    palette = None
    transparency = info.get("transparency")
    if mode in ("P", "PA"):
        palette = palette_from_pillow(image.getpalette("RGB"), transparency)
        has_alpha = mode == "PA" or (palette is not None and bool((palette[:, 3] < 255).any()))
        source_mode = "PA" if has_alpha else "P"
        pixels = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    elif mode == "1":
        source_mode, pixels = "1", np.asarray(image.convert("L"))
    elif mode in ("L", "RGB") and transparency is not None:
        source_mode = "LA" if mode == "L" else "RGBA"
        pixels = np.asarray(image.convert(source_mode))
    elif mode in ("L", "LA", "RGB", "RGBA"):
        source_mode, pixels = mode, np.asarray(image)
    elif mode == "CMYK":
        source_mode, pixels = "CMYK", np.asarray(image.convert("RGB"))
    elif mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        source_mode, pixels = "I;16", np.asarray(image).astype(np.uint16)
    elif mode == "I":
        source_mode = "I;16"
        pixels = np.clip(np.asarray(image), 0, 65535).astype(np.uint16)
    elif mode == "F":
        pixels = np.asarray(image).astype(np.float32)
        if not np.isfinite(pixels).all():
            raise ImageReadError(
                f"Cannot read {name}: the file contains NaN or infinite values; "
                "clamp or replace them in the program that made it."
            )
        source_mode = "F"
    elif mode == "La":
        source_mode, pixels = "LA", np.asarray(image.convert("LA"))
    else:  # RGBa, YCbCr, LAB, HSV...: hand them on as what they look like
        has_alpha = "A" in mode or "a" in mode
        source_mode = "RGBA" if has_alpha else "RGB"
        pixels = np.asarray(image.convert(source_mode))
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    # A TIFF's "EXIF" is its own structural IFD: not something to copy into another file.
    exif = None if fmt == "TIFF" else with_prefix(info.get("exif"))
    orientation = image.getexif().get(0x0112, 1) if exif is None else orientation_of(exif)
    pixels = np.ascontiguousarray(pixels)
    if isinstance(orientation, int) and 2 <= orientation <= 8:
        pixels = apply_orientation(pixels, orientation)
        if exif is not None:
            exif = _reset_or_drop(exif)
    dpi = info.get("dpi")
    return DecodedImage(
        pixels=pixels,
        source_mode=source_mode,
        format=fmt,
        icc_profile=info.get("icc_profile") or None,
        exif=exif,
        palette=palette,
        dpi=(float(dpi[0]), float(dpi[1])) if dpi and dpi[0] and dpi[1] else None,
        n_frames=int(getattr(image, "n_frames", 1) or 1),
    )


def _reset_or_drop(exif: bytes) -> bytes | None:
    try:
        return reset_orientation(exif)
    except Exception:  # noqa: BLE001 - EXIF we cannot rewrite is dropped, not fatal
        return None
