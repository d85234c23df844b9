"""realscale.formats on real files: depth and mode kept, metadata carried, bad input refused."""

from __future__ import annotations

import builtins
import errno
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps

from realscale.errors import ImageReadError, ImageWriteError
from realscale.formats import DEFAULT_MAX_PIXELS, DecodedImage, read_image, write_image

DATA = Path(__file__).resolve().parents[1] / "data"
INPUTS = DATA / "realesrgan-inputs"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --- helpers ---------------------------------------------------------------------------------


def crop(name: str = "set5/HR/butterfly.png", box=(100, 120, 148, 152)) -> np.ndarray:
    """A small RGB crop of a real photo (48x32 by default)."""
    with Image.open(DATA / name) as image:
        return np.asarray(image.convert("RGB").crop(box))


def chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
        ">I", zlib.crc32(payload, zlib.crc32(kind))
    )


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        out.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def reference_unfilter(raw: bytes, width: int, height: int, bpp: int) -> bytearray:
    """Textbook per-byte PNG unfiltering (slow, independent of the package's vectorised one)."""
    stride = width * bpp
    out = bytearray(height * stride)
    pos = 0
    for y in range(height):
        kind = raw[pos]
        pos += 1
        base, prev = y * stride, (y - 1) * stride
        for i in range(stride):
            x = raw[pos + i]
            a = out[base + i - bpp] if i >= bpp else 0
            b = out[prev + i] if y else 0
            c = out[prev + i - bpp] if y and i >= bpp else 0
            if kind == 1:
                x += a
            elif kind == 2:
                x += b
            elif kind == 3:
                x += (a + b) // 2
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                x += a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            out[base + i] = x & 0xFF
        pos += stride
    return out


def reference_png16(pixels: np.ndarray, interlace: bool, seed: int = 0) -> bytes:
    """A 16-bit PNG made by hand with a random filter on every row (all five used)."""
    rng = np.random.default_rng(seed)
    height, width, channels = pixels.shape
    bpp = channels * 2
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
              (1, 0, 2, 2), (0, 1, 1, 2)] if interlace else [(0, 0, 1, 1)]
    raw = bytearray()
    for x0, y0, dx, dy in passes:
        sub = pixels[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        rows = sub.astype(">u2").tobytes()
        stride = sub.shape[1] * bpp
        for y in range(sub.shape[0]):
            kind = int(rng.integers(0, 5))
            raw.append(kind)
            for i in range(stride):
                x = rows[y * stride + i]
                a = rows[y * stride + i - bpp] if i >= bpp else 0
                b = rows[(y - 1) * stride + i] if y else 0
                c = rows[(y - 1) * stride + i - bpp] if y and i >= bpp else 0
                predict = [0, a, b, (a + b) // 2, 0][kind]
                if kind == 4:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    predict = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                raw.append((x - predict) & 0xFF)
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, int(interlace))
    return (PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(raw)))
            + chunk(b"IEND", b""))


def roundtrip(tmp_path: Path, image: DecodedImage, suffix: str, **kwargs) -> DecodedImage:
    out = tmp_path / f"out{suffix}"
    write_image(out, image.pixels, like=image, **kwargs)
    return read_image(out)


def exif_with_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    exif[0x010F] = "realscale-test"  # Make, to see that other tags survive
    return exif.tobytes()


def one_line(error: Exception, path: Path) -> str:
    text = str(error)
    assert "\n" not in text and str(path) in text and "Traceback" not in text
    return text


# --- 16-bit PNG ------------------------------------------------------------------------------


def test_16bit_rgba_png_matches_an_independent_decode():
    path = INPUTS / "tree_alpha_16bit.png"
    image = read_image(path)
    assert image.source_mode == "RGBA;16" and image.bit_depth == 16
    assert image.pixels.dtype == np.uint16 and image.pixels.shape == (256, 342, 4)

    data = path.read_bytes()
    idat = b"".join(p for k, p in png_chunks(data) if k == b"IDAT")
    raw = reference_unfilter(zlib.decompress(idat), 342, 256, 8)
    expected = np.frombuffer(bytes(raw), dtype=">u2").reshape(256, 342, 4)
    np.testing.assert_array_equal(image.pixels, expected)
    # Real 16-bit data: low bytes carry information, and the high bytes are what Pillow sees.
    assert np.count_nonzero(image.pixels & 0xFF) > image.pixels.size // 4
    with Image.open(path) as eight_bit:
        np.testing.assert_array_equal(image.pixels >> 8, np.asarray(eight_bit))
    assert image.icc_profile and image.icc_profile[36:40] == b"acsp"


def test_16bit_rgba_png_round_trip_is_exact_and_carries_icc(tmp_path):
    image = read_image(INPUTS / "tree_alpha_16bit.png")
    again = roundtrip(tmp_path, image, ".png")
    assert again.source_mode == "RGBA;16"
    np.testing.assert_array_equal(again.pixels, image.pixels)
    assert again.icc_profile == image.icc_profile
    assert again.dpi == pytest.approx(image.dpi, abs=0.01)
    with Image.open(tmp_path / "out.png") as check:  # other readers accept the file
        check.verify()


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("interlace", [False, True])
def test_16bit_png_every_filter_and_adam7(tmp_path, channels, interlace):
    rng = np.random.default_rng(channels)
    pixels = rng.integers(0, 65536, size=(11, 13, channels), dtype=np.uint16)
    pixels[4:8, 3:9] = pixels[4, 3]  # flat area: filters predict exactly
    path = tmp_path / "hand.png"
    path.write_bytes(reference_png16(pixels, interlace, seed=channels))
    image = read_image(path)
    np.testing.assert_array_equal(image.pixels, pixels)
    assert image.source_mode == {1: "I;16", 2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}[channels]
    again = roundtrip(tmp_path, image, ".png")
    np.testing.assert_array_equal(again.pixels, pixels)
    assert again.source_mode == image.source_mode


def test_16bit_depth_comes_from_the_container_not_the_values(tmp_path):
    dark = np.arange(24 * 16 * 3, dtype=np.uint16).reshape(24, 16, 3) % 200  # all < 256
    write_image(tmp_path / "dark.png", dark)
    image = read_image(tmp_path / "dark.png")
    assert image.source_mode == "RGB;16" and image.pixels.dtype == np.uint16
    np.testing.assert_array_equal(image.pixels, dark)
    grey = Image.fromarray(np.full((5, 7), 3, dtype=np.uint16))  # Pillow's own I;16 PNG
    grey.save(tmp_path / "grey.png")
    assert read_image(tmp_path / "grey.png").source_mode == "I;16"


def test_16bit_grey_png_matches_pillow_both_ways(tmp_path):
    values = (crop()[:, :, 1].astype(np.uint16) * 257) ^ np.uint16(0x35)
    Image.fromarray(values).save(tmp_path / "grey16.png")  # written by Pillow
    image = read_image(tmp_path / "grey16.png")
    assert image.source_mode == "I;16"
    np.testing.assert_array_equal(image.pixels[:, :, 0], values)
    write_image(tmp_path / "mine.png", image.pixels, like=image)  # read back by Pillow
    with Image.open(tmp_path / "mine.png") as check:
        assert check.mode.startswith("I;16")
        np.testing.assert_array_equal(np.asarray(check), values)


def test_16bit_png_colour_key_becomes_alpha(tmp_path):
    pixels = np.zeros((3, 4, 3), dtype=np.uint16)
    pixels[1, 2] = (1000, 2000, 3000)
    write_image(tmp_path / "key.png", pixels)
    data = (tmp_path / "key.png").read_bytes()
    cut = data.index(b"IDAT") - 4
    trns = chunk(b"tRNS", struct.pack(">HHH", 1000, 2000, 3000))
    (tmp_path / "key.png").write_bytes(data[:cut] + trns + data[cut:])
    image = read_image(tmp_path / "key.png")
    assert image.source_mode == "RGBA;16"
    assert image.pixels[1, 2, 3] == 0 and image.pixels[0, 0, 3] == 65535


# --- 8-bit modes, palette, CMYK, TIFF ------------------------------------------------------


def make_8bit(tmp_path: Path, mode: str, suffix: str = ".png") -> Path:
    rgb = Image.fromarray(crop())
    alpha = Image.fromarray(crop("set5/HR/bird.png")[:, :, 0])
    if mode == "1":
        image = rgb.convert("1")
    elif mode in ("L", "RGB", "CMYK"):
        image = rgb.convert(mode)
    elif mode in ("LA", "RGBA"):
        image = rgb.convert(mode[:-1])
        image.putalpha(alpha)
    elif mode == "P":
        image = rgb.quantize(40)
    else:  # PA: a palette with partial transparency on some entries
        image = rgb.quantize(40)
        image.info["transparency"] = bytes([0, 128, 200] + [255] * 37)
    path = tmp_path / f"in-{mode}{suffix}"
    image.save(path, **({"transparency": image.info["transparency"]} if mode == "PA" else {}))
    return path


@pytest.mark.parametrize("mode", ["1", "L", "LA", "RGB", "RGBA", "P", "PA"])
def test_8bit_png_modes_round_trip_exactly(tmp_path, mode):
    path = make_8bit(tmp_path, mode)
    image = read_image(path)
    assert image.source_mode == mode and image.pixels.dtype == np.uint8
    with Image.open(path) as original:
        target = {"1": "L", "P": "RGB", "PA": "RGBA"}.get(mode, mode)
        expected = np.asarray(original.convert(target))
    np.testing.assert_array_equal(image.pixels.reshape(expected.shape), expected)
    again = roundtrip(tmp_path, image, ".png")
    assert again.source_mode == mode
    np.testing.assert_array_equal(again.pixels, image.pixels)
    with Image.open(tmp_path / "out.png") as written:
        assert written.mode == {"PA": "P"}.get(mode, mode)
        if mode in ("P", "PA"):
            assert written.getpalette() == original_palette(path)


def original_palette(path: Path) -> list[int]:
    with Image.open(path) as image:
        return image.getpalette()


def test_palette_output_maps_new_colours_to_the_nearest_entry(tmp_path):
    image = read_image(make_8bit(tmp_path, "PA"))
    changed = image.pixels.astype(np.int16)
    changed[:, :, :3] += 3  # an "upscaled" image: colours no longer exactly in the palette
    write_image(tmp_path / "near.png", np.clip(changed, 0, 255).astype(np.uint8), like=image)
    with Image.open(tmp_path / "near.png") as written:
        assert written.mode == "P"
        indices = np.asarray(written)
    palette = image.palette.astype(np.int32)
    assert set(np.unique(indices)) <= set(range(len(palette)))
    # Every opaque pixel went to an entry at least as close as the one it came from.
    got = palette[indices][:, :, :3]
    source = np.clip(changed, 0, 255)[:, :, :3]
    before = ((image.pixels[:, :, :3].astype(np.int32) - source) ** 2).sum(axis=2)
    after = ((got - source) ** 2).sum(axis=2)
    opaque = image.pixels[:, :, 3] == 255
    assert (after[opaque] <= before[opaque]).all()


def test_partly_transparent_palette_into_gif_keeps_one_transparent_index(tmp_path):
    image = read_image(make_8bit(tmp_path, "PA"))
    write_image(tmp_path / "out.gif", image.pixels, like=image)
    gif = read_image(tmp_path / "out.gif")
    clear = image.pixels[:, :, 3] < 128
    assert clear.any() and (gif.pixels[clear][:, 3] == 0).all()
    np.testing.assert_array_equal(gif.pixels[~clear][:, :3], image.pixels[~clear][:, :3])
    assert (gif.pixels[~clear][:, 3] == 255).all()


def test_gif_palette_round_trip_and_animation_frame_count(tmp_path):
    frames = [Image.fromarray(crop(box=(x, 50, x + 20, 66))).quantize(16) for x in (0, 40, 80)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:],
                   transparency=0, duration=100)
    image = read_image(tmp_path / "anim.gif")
    assert image.format == "GIF" and image.n_frames == 3 and image.is_animated
    assert image.source_mode == "PA"
    with Image.open(tmp_path / "anim.gif") as first:
        np.testing.assert_array_equal(image.pixels, np.asarray(first.convert("RGBA")))
    again = roundtrip(tmp_path, image, ".gif")
    np.testing.assert_array_equal(again.pixels, image.pixels)
    assert again.n_frames == 1


def test_animated_webp_and_apng_give_the_first_frame(tmp_path):
    frames = [Image.fromarray(crop(box=(x, 0, x + 16, 12))) for x in (0, 30)]
    frames[0].save(tmp_path / "a.webp", save_all=True, append_images=frames[1:], lossless=True)
    frames[0].save(tmp_path / "a.png", save_all=True, append_images=frames[1:])
    for name in ("a.webp", "a.png"):
        image = read_image(tmp_path / name)
        assert image.n_frames == 2
        # Pillow decodes animated WebP frames as RGBA; the colours are the first frame's.
        np.testing.assert_array_equal(image.pixels[:, :, :3], np.asarray(frames[0]))


@pytest.mark.parametrize("suffix", [".jpg", ".tif"])
def test_cmyk_is_read_as_rgb_and_written_back_as_cmyk(tmp_path, suffix):
    Image.fromarray(crop()).convert("CMYK").save(tmp_path / f"cmyk{suffix}")
    image = read_image(tmp_path / f"cmyk{suffix}")
    assert image.source_mode == "CMYK" and image.pixels.shape[2] == 3
    with Image.open(tmp_path / f"cmyk{suffix}") as original:
        np.testing.assert_array_equal(image.pixels, np.asarray(original.convert("RGB")))
    again = roundtrip(tmp_path, image, suffix)
    with Image.open(tmp_path / f"out{suffix}") as written:
        assert written.mode == "CMYK"
    assert again.source_mode == "CMYK"
    if suffix == ".tif":
        np.testing.assert_array_equal(again.pixels, image.pixels)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "RGB", "RGBA", "CMYK", "P"])
def test_8bit_tiff_round_trips(tmp_path, mode):
    image = read_image(make_8bit(tmp_path, mode, ".tif"))
    assert image.format == "TIFF" and image.pixels.dtype == np.uint8
    again = roundtrip(tmp_path, image, ".tif")
    np.testing.assert_array_equal(again.pixels, image.pixels)
    assert again.source_mode == ("RGB" if mode == "P" else image.source_mode)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16bit_tiff_round_trip(tmp_path, channels):
    rgb = crop().astype(np.uint16) * 257 + 3
    pixels = {1: rgb[:, :, :1], 3: rgb, 4: np.concatenate([rgb, rgb[:, :, :1]], axis=2)}
    data = pixels[channels]
    extras = {"extrasamples": ("unassalpha",)} if channels == 4 else {}
    tifffile.imwrite(tmp_path / "in.tif", data[:, :, 0] if channels == 1 else data,
                     photometric="minisblack" if channels == 1 else "rgb", **extras)
    image = read_image(tmp_path / "in.tif")
    assert image.source_mode == {1: "I;16", 3: "RGB;16", 4: "RGBA;16"}[channels]
    np.testing.assert_array_equal(image.pixels, data)
    again = roundtrip(tmp_path, image, ".tiff")
    np.testing.assert_array_equal(again.pixels, data)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tiff").reshape(data.shape),
                                  data)


def test_pillow_16bit_grey_tiff_is_kept_16bit(tmp_path):
    values = crop()[:, :, 0].astype(np.uint16) * 250
    Image.fromarray(values).save(tmp_path / "grey.tif")
    image = read_image(tmp_path / "grey.tif")
    assert image.source_mode == "I;16"
    np.testing.assert_array_equal(image.pixels[:, :, 0], values)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_float_tiff_round_trip(tmp_path, channels):
    rgb = crop().astype(np.float32) / 255.0 + np.float32(1e-4)
    data = {1: rgb[:, :, :1], 3: rgb, 4: np.concatenate([rgb, rgb[:, :, 2:]], axis=2)}
    data = data[channels]
    extras = {"extrasamples": ("unassalpha",)} if channels == 4 else {}
    tifffile.imwrite(tmp_path / "in.tif", data[:, :, 0] if channels == 1 else data,
                     photometric="minisblack" if channels == 1 else "rgb", **extras)
    image = read_image(tmp_path / "in.tif")
    assert image.source_mode == {1: "F", 3: "RGB;F", 4: "RGBA;F"}[channels]
    assert image.pixels.dtype == np.float32 and image.bit_depth == 32
    np.testing.assert_array_equal(image.pixels, data)
    again = roundtrip(tmp_path, image, ".tif")
    np.testing.assert_array_equal(again.pixels, data)
    assert again.source_mode == image.source_mode


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_float_tiff_with_nan_or_inf_is_refused(tmp_path, bad):
    data = np.full((4, 5, 3), 0.5, dtype=np.float32)
    data[2, 3, 1] = bad
    tifffile.imwrite(tmp_path / "bad.tif", data, photometric="rgb")
    with pytest.raises(ImageReadError, match="NaN or infinite") as caught:
        read_image(tmp_path / "bad.tif")
    one_line(caught.value, tmp_path / "bad.tif")


# --- converting down -------------------------------------------------------------------------


def test_16bit_into_8bit_formats_converts_with_rounding(tmp_path):
    image = read_image(INPUTS / "tree_alpha_16bit.png")
    expected = ((image.pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
    write_image(tmp_path / "out.webp", image.pixels, like=image, quality=100)  # lossless
    webp = read_image(tmp_path / "out.webp")
    assert webp.source_mode == "RGBA" and webp.format == "WEBP"
    visible = expected[:, :, 3] > 0  # lossless WebP may change colours under alpha 0
    np.testing.assert_array_equal(webp.pixels[visible], expected[visible])
    assert webp.icc_profile == image.icc_profile


def test_jpeg_composites_alpha_over_white(tmp_path):
    image = read_image(INPUTS / "children-alpha.png")
    write_image(tmp_path / "out.jpg", image.pixels, like=image)
    jpeg = read_image(tmp_path / "out.jpg")
    assert jpeg.source_mode == "RGB" and jpeg.pixels.shape[2] == 3
    clear = image.pixels[:, :, 3] == 0
    assert clear.any() and jpeg.pixels[clear].mean() > 250
    solid = image.pixels[:, :, 3] == 255
    diff = np.abs(jpeg.pixels[solid].astype(int) - image.pixels[solid][:, :3]).mean()
    assert diff < 3


def test_float_pixels_are_clipped_and_written_at_the_deepest_depth(tmp_path):
    pixels = np.array([[[-0.5, 0.5, 1.7]], [[np.nan, 1.0, 0.0]]], dtype=np.float32)
    write_image(tmp_path / "f.png", pixels)
    image = read_image(tmp_path / "f.png")
    assert image.source_mode == "RGB;16"
    np.testing.assert_array_equal(image.pixels[:, 0], [[0, 32768, 65535], [0, 65535, 0]])
    write_image(tmp_path / "f.jpg", pixels, format="jpeg")
    assert read_image(tmp_path / "f.jpg").pixels.dtype == np.uint8


def test_format_argument_overrides_the_suffix(tmp_path):
    image = read_image(INPUTS / "00017_gray.png")
    write_image(tmp_path / "out.bin", image.pixels, like=image, format="tiff")
    again = read_image(tmp_path / "out.bin")
    assert again.format == "TIFF" and again.source_mode == "L"
    np.testing.assert_array_equal(again.pixels, image.pixels)


# --- metadata and orientation ----------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
def test_icc_and_exif_are_carried(tmp_path, suffix):
    image = read_image(INPUTS / "wolf_gray.jpg")
    assert image.source_mode == "L" and image.icc_profile and image.exif
    again = roundtrip(tmp_path, image, suffix)
    if suffix == ".webp":  # WebP has no grey: RGB, and a grey profile would not fit it
        assert again.source_mode == "RGB" and again.icc_profile is None
    else:
        assert again.source_mode == "L" and again.icc_profile == image.icc_profile
    if suffix in (".png", ".jpg", ".webp"):
        assert again.exif == image.exif
    if suffix != ".webp":
        assert again.dpi == pytest.approx(image.dpi, abs=0.01)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_exif_transpose(tmp_path, orientation):
    source = Image.fromarray(crop())  # 48x32: not square
    source.save(tmp_path / "o.png", exif=exif_with_orientation(orientation))
    image = read_image(tmp_path / "o.png")
    with Image.open(tmp_path / "o.png") as original:
        np.testing.assert_array_equal(image.pixels, np.asarray(ImageOps.exif_transpose(original)))
    exif = Image.Exif()
    exif.load(image.exif)
    assert exif[0x0112] == 1 and exif[0x010F] == "realscale-test"


def test_rotated_jpeg_is_upright_and_written_with_orientation_1(tmp_path):
    Image.fromarray(crop()).save(tmp_path / "r.jpg", exif=exif_with_orientation(6))
    image = read_image(tmp_path / "r.jpg")
    assert image.pixels.shape == (48, 32, 3)
    with Image.open(tmp_path / "r.jpg") as original:
        np.testing.assert_array_equal(image.pixels, np.asarray(ImageOps.exif_transpose(original)))
    write_image(tmp_path / "out.jpg", image.pixels, like=image)
    with Image.open(tmp_path / "out.jpg") as written:
        assert written.size == (32, 48) and written.getexif()[0x0112] == 1
        assert written.getexif()[0x010F] == "realscale-test"


def test_rotated_16bit_png_is_upright(tmp_path):
    pixels = np.arange(4 * 6 * 3, dtype=np.uint16).reshape(4, 6, 3) * 901
    rotated = DecodedImage(pixels, "RGB;16", "PNG", exif=exif_with_orientation(8))
    write_image(tmp_path / "r.png", pixels, like=rotated)  # written as given: orientation 8
    image = read_image(tmp_path / "r.png")
    np.testing.assert_array_equal(image.pixels, np.rot90(pixels))
    exif = Image.Exif()
    exif.load(image.exif)
    assert exif[0x0112] == 1 and exif[0x010F] == "realscale-test"


# --- bad input -------------------------------------------------------------------------------


def test_missing_empty_and_folder_inputs(tmp_path):
    with pytest.raises(ImageReadError, match="does not exist") as caught:
        read_image(tmp_path / "nope.png")
    one_line(caught.value, tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty") as caught:
        read_image(tmp_path / "empty.png")
    one_line(caught.value, tmp_path / "empty.png")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)


def test_text_file_named_png(tmp_path):
    (tmp_path / "notes.png").write_text("these are not pixels\n" * 10)
    with pytest.raises(ImageReadError, match="not an image") as caught:
        read_image(tmp_path / "notes.png")
    one_line(caught.value, tmp_path / "notes.png")


@pytest.mark.parametrize("name", ["tree_alpha_16bit.png", "children-alpha.png", "0014.jpg"])
def test_truncated_files(tmp_path, name):
    data = (INPUTS / name).read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated") as caught:
        read_image(path)
    one_line(caught.value, path)


def test_damaged_16bit_png_checksum(tmp_path):
    write_image(tmp_path / "d.png", np.ones((3, 3, 3), dtype=np.uint16))
    data = bytearray((tmp_path / "d.png").read_bytes())
    data[data.index(b"IDAT") + 6] ^= 0xFF
    (tmp_path / "d.png").write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match="damaged"):
        read_image(tmp_path / "d.png")


def png_header_only(width: int, height: int, depth: int = 8) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, 2, 0, 0, 0)
    return (PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("depth", [8, 16])
def test_zero_size_png(tmp_path, depth):
    (tmp_path / "zero.png").write_bytes(png_header_only(0, 0, depth))
    with pytest.raises(ImageReadError, match="0x0") as caught:
        read_image(tmp_path / "zero.png")
    one_line(caught.value, tmp_path / "zero.png")


@pytest.mark.parametrize("depth", [8, 16])
def test_decompression_bomb_is_refused_from_the_header(tmp_path, depth):
    (tmp_path / "bomb.png").write_bytes(png_header_only(60000, 60000, depth))
    with pytest.raises(ImageReadError, match="--max-pixels") as caught:
        read_image(tmp_path / "bomb.png")
    text = one_line(caught.value, tmp_path / "bomb.png")
    assert f"{DEFAULT_MAX_PIXELS:,}" in text


@pytest.mark.parametrize("name", ["0014.jpg", "children-alpha.png", "tree_alpha_16bit.png"])
def test_max_pixels_limit_applies_to_every_reader(name):
    with pytest.raises(ImageReadError, match="--max-pixels"):
        read_image(INPUTS / name, max_pixels=10_000)
    assert read_image(INPUTS / name, max_pixels=400 * 600).pixels.size > 0


def test_pillow_bomb_error_becomes_our_error(tmp_path):
    # A GIF's logical screen is checked by Pillow itself while opening.
    Image.new("P", (300, 300)).save(tmp_path / "big.gif")
    with pytest.raises(ImageReadError, match="--max-pixels") as caught:
        read_image(tmp_path / "big.gif", max_pixels=20_000)
    one_line(caught.value, tmp_path / "big.gif")
    assert Image.MAX_IMAGE_PIXELS != 20_000  # Pillow's global limit restored


def test_tiff_size_is_checked_before_decoding(tmp_path):
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((200, 300), dtype=np.float32))
    with pytest.raises(ImageReadError, match="200 = 60,000"):
        read_image(tmp_path / "big.tif", max_pixels=50_000)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".webp", ".bmp"])
def test_one_pixel_images(tmp_path, suffix):
    for pixels in (np.array([[[10, 200, 30]]], np.uint8), np.array([[[7, 60000]]], np.uint16),
                   np.array([[[0.25]]], np.float32)):
        write_image(tmp_path / f"p{suffix}", pixels)
        image = read_image(tmp_path / f"p{suffix}")
        assert image.pixels.shape[:2] == (1, 1)
    if suffix == ".tif":
        assert image.source_mode == "F" and image.pixels[0, 0, 0] == np.float32(0.25)


# --- atomic writes ---------------------------------------------------------------------------


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_write_into_a_missing_folder(tmp_path):
    target = tmp_path / "missing" / "out.png"
    with pytest.raises(ImageWriteError, match="does not exist") as caught:
        write_image(target, np.zeros((2, 2, 3), np.uint8))
    one_line(caught.value, target)
    assert not target.parent.exists()


def test_unwritable_folder(tmp_path, monkeypatch):
    # Tests may run as root, where a read-only folder is still writable: refuse the create.
    real_open = builtins.open

    def refuse(path, mode="r", *args, **kwargs):
        if str(path).startswith(str(tmp_path)) and "x" in mode:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refuse)
    with pytest.raises(ImageWriteError, match="permission denied"):
        write_image(tmp_path / "out.png", np.zeros((2, 2, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_disk_full_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, suffix):
    target = tmp_path / f"out{suffix}"
    target.write_bytes(b"previous result")

    def full(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ImageWriteError, match="disk is full") as caught:
        write_image(target, np.zeros((4, 4, 3), np.uint16))
    one_line(caught.value, target)
    assert target.read_bytes() == b"previous result" and leftovers(tmp_path) == []


def test_encoder_failure_is_a_write_error(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("encoder exploded")

    monkeypatch.setattr(Image.Image, "save", broken)
    with pytest.raises(ImageWriteError, match="encoder exploded"):
        write_image(tmp_path / "out.jpg", np.zeros((4, 4, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_bad_output_names(tmp_path):
    with pytest.raises(ImageWriteError, match="not an output format"):
        write_image(tmp_path / "out.xyz", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ImageWriteError, match="folder"):
        write_image(tmp_path, np.zeros((2, 2, 3), np.uint8), format="png")
    with pytest.raises(ValueError):
        write_image(tmp_path / "out.png", np.zeros((2, 2, 5), np.uint8))


def test_written_file_has_normal_permissions(tmp_path):
    write_image(tmp_path / "out.png", np.zeros((2, 2, 3), np.uint8))
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out.png").stat().st_mode & 0o777 == 0o666 & ~umask
    assert io.BytesIO((tmp_path / "out.png").read_bytes()).read(8) == PNG_SIGNATURE


# --- TIFF details ----------------------------------------------------------------------------


def test_tiff_orientation_is_applied_on_both_tiff_paths(tmp_path):
    rgb = crop()
    Image.fromarray(rgb).save(tmp_path / "eight.tif", exif=exif_with_orientation(6))
    deep = rgb.astype(np.float32) / 255.0
    tifffile.imwrite(tmp_path / "float.tif", deep, photometric="rgb",
                     extratags=[(0x0112, "H", 1, 6, True)])
    eight = read_image(tmp_path / "eight.tif")
    np.testing.assert_array_equal(eight.pixels, np.rot90(rgb, k=-1))
    floating = read_image(tmp_path / "float.tif")
    np.testing.assert_array_equal(floating.pixels, np.rot90(deep, k=-1))


def test_premultiplied_tiff_alpha_is_made_straight(tmp_path):
    straight = np.array([[[40000, 20000, 0, 32768], [1000, 2000, 3000, 0]]], dtype=np.uint16)
    alpha = straight[:, :, 3:].astype(np.float64) / 65535.0
    premultiplied = np.concatenate(
        [np.rint(straight[:, :, :3] * alpha).astype(np.uint16), straight[:, :, 3:]], axis=2
    )
    tifffile.imwrite(tmp_path / "assoc.tif", premultiplied, photometric="rgb",
                     extrasamples=("assocalpha",))
    image = read_image(tmp_path / "assoc.tif")
    assert image.source_mode == "RGBA;16"
    np.testing.assert_allclose(image.pixels[0, 0].astype(int), straight[0, 0], atol=2)
    np.testing.assert_array_equal(image.pixels[0, 1], [0, 0, 0, 0])


def test_lzw_16bit_grey_tiff_falls_back_to_pillow(tmp_path):
    values = crop()[:, :, 2].astype(np.uint16) * 257 + 1
    Image.fromarray(values).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    image = read_image(tmp_path / "lzw.tif")
    assert image.source_mode == "I;16"
    np.testing.assert_array_equal(image.pixels[:, :, 0], values)


def test_multi_page_tiff_gives_the_first_page(tmp_path):
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tif:
        for value in (0.25, 0.75):
            tif.write(np.full((3, 4), value, dtype=np.float32))
    image = read_image(tmp_path / "pages.tif")
    assert image.n_frames == 2 and (image.pixels == np.float32(0.25)).all()
