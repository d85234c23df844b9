"""PNG output written band by band is the file Pillow writes for the same image: the same
chunks byte for byte, and the same filtered rows (filter bytes included) inside IDAT; only
the IDAT chunking and the deflate stream may differ (Pillow may link another zlib)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import data_file
from realscale.formats import read_image, write_image
from realscale.formats.pngencode import band_rows


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        out.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def layout(data: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Every chunk but IDAT as it is, and the inflated IDAT stream (the filtered rows)."""
    found = chunks(data)
    rows = zlib.decompress(b"".join(payload for kind, payload in found if kind == b"IDAT"))
    return [(kind, payload) for kind, payload in found if kind != b"IDAT"], rows


def pillow_png(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def wide_photo() -> np.ndarray:
    """A real photo made wide enough that its rows come in several bands."""
    with Image.open(data_file("realesrgan-inputs", "OST_009.png")) as image:
        photo = image.convert("RGB").resize((2400, 700), Image.Resampling.LANCZOS)
    pixels = np.asarray(photo)
    assert pixels.shape[0] > 3 * band_rows(pixels.shape[1], 4)
    return pixels


def profile(name: str) -> bytes:
    with Image.open(data_file("realesrgan-inputs", name)) as image:
        icc = image.info["icc_profile"]
    assert icc
    return icc


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "1", "I;16"])
def test_same_file_as_pillow_for_every_plain_mode(tmp_path: Path, wide_photo, mode) -> None:
    rgb = Image.fromarray(wide_photo)
    if mode == "RGBA":
        ramp = np.linspace(0, 255, wide_photo.shape[1]).astype(np.uint8)
        alpha = Image.fromarray(np.tile(ramp, (wide_photo.shape[0], 1)))
        image = rgb.copy()
        image.putalpha(alpha)
    elif mode == "I;16":
        grey = np.asarray(rgb.convert("L")).astype(np.uint16) * 257 + 3
        image = Image.fromarray(grey)
    else:
        image = rgb.convert(mode)
    options = {"dpi": (300, 300)}
    if mode in ("RGB", "RGBA"):
        options["icc_profile"] = profile("tree_alpha_16bit.png")
    elif mode in ("L", "LA"):
        options["icc_profile"] = profile("wolf_gray.jpg")
    expected = pillow_png(image, **options)
    source = tmp_path / "source.png"
    source.write_bytes(expected)
    decoded = read_image(source)  # what write_image is given: pixels plus the file's kind
    write_image(tmp_path / "ours.png", decoded.pixels, like=decoded)
    ours = (tmp_path / "ours.png").read_bytes()
    assert layout(ours) == layout(expected)
    assert [kind for kind, _ in chunks(ours)].count(b"IDAT") >= 1


@pytest.mark.parametrize("colours", [2, 4, 16, 200])
def test_same_file_as_pillow_for_palettes(tmp_path: Path, wide_photo, colours) -> None:
    """Palette files (1, 2, 4 and 8 bits, with a partly transparent entry) are written with
    the same PLTE, tRNS and unfiltered rows as Pillow writes from the same indices."""
    image = Image.fromarray(wide_photo).quantize(colours, dither=Image.Dither.NONE)
    alpha = bytes([255] * (colours - 1) + [90])
    expected = pillow_png(image, transparency=alpha)
    source = tmp_path / "palette.png"
    source.write_bytes(expected)
    decoded = read_image(source)
    assert decoded.source_mode == "PA"
    write_image(tmp_path / "ours.png", decoded.pixels, like=decoded)
    assert layout((tmp_path / "ours.png").read_bytes()) == layout(expected)


def test_exif_is_written_where_pillow_puts_it(tmp_path: Path, wide_photo) -> None:
    exif = Image.Exif()
    exif[0x010F] = "realscale-test"
    expected = pillow_png(Image.fromarray(wide_photo), exif=exif.tobytes())
    (tmp_path / "source.png").write_bytes(expected)
    decoded = read_image(tmp_path / "source.png")
    assert decoded.exif
    write_image(tmp_path / "ours.png", decoded.pixels, like=decoded)
    assert layout((tmp_path / "ours.png").read_bytes()) == layout(expected)


def test_sixteen_bit_and_float_go_band_by_band_too(tmp_path: Path, wide_photo) -> None:
    """16-bit RGB(A) has no Pillow writer to compare with: the rows must decode to the array,
    through this package's reader and through Pillow's (which keeps 8 bits of each)."""
    deep = wide_photo.astype(np.uint16) * 257 + np.uint16(5)
    write_image(tmp_path / "deep.png", deep)
    assert np.array_equal(read_image(tmp_path / "deep.png").pixels, deep)
    with Image.open(tmp_path / "deep.png") as image:
        assert np.array_equal(np.asarray(image.convert("RGB")), (deep >> 8).astype(np.uint8))
    floating = wide_photo.astype(np.float32) / 255
    write_image(tmp_path / "float.png", floating)
    written = read_image(tmp_path / "float.png")
    assert written.pixels.dtype == np.uint16
    assert np.array_equal(written.pixels, wide_photo.astype(np.uint16) * 257)
