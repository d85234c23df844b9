"""Small files that unpack into gigabytes are refused without being unpacked: the pixel limit
is checked from the header, and every compressed piece the readers inflate has a ceiling."""

from __future__ import annotations

import lzma
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from helpers import REPO, rgb_crop
from realscale.errors import ImageReadError
from realscale.formats import read_image, write_image
from realscale.formats.bounded import METADATA_LIMIT

GIB = 1 << 30
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
        ">I", zlib.crc32(payload, zlib.crc32(kind))
    )


def zeros_deflated(size: int) -> bytes:
    """A zlib stream of ``size`` zero bytes (about 1 MB per GiB), made a piece at a time."""
    deflater = zlib.compressobj(9)
    piece = bytes(1 << 24)
    out = [deflater.compress(piece) for _ in range(size // len(piece))]
    return b"".join(out) + deflater.flush()


@pytest.fixture(scope="module")
def gib_stream() -> bytes:
    return zeros_deflated(GIB)


def png_with_iccp(depth: int, profile_stream: bytes) -> bytes:
    """A real 16x16 RGB PNG (8- or 16-bit) whose iCCP chunk holds ``profile_stream``."""
    width = height = 16
    rows = b"".join(b"\0" + bytes(range(width * 3 * depth // 8)) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, depth, 2, 0, 0, 0)
    return (PNG_SIGNATURE + chunk(b"IHDR", header)
            + chunk(b"iCCP", b"ICC Profile\0\0" + profile_stream)
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def deep_tiff(strip: bytes, compression: int, size: int = 16) -> bytes:
    """A 16-bit RGB TIFF of size x size pixels in one strip holding ``strip`` as it is."""
    bits_at, strip_at = 8, 14
    ifd_at = strip_at + len(strip) + (strip_at + len(strip)) % 2
    tags = [(256, 3, 1, size), (257, 3, 1, size), (258, 3, 3, bits_at),
            (259, 3, 1, compression), (262, 3, 1, 2), (273, 4, 1, strip_at), (277, 3, 1, 3),
            (278, 3, 1, size), (279, 4, 1, len(strip)), (284, 3, 1, 1)]
    ifd = struct.pack("<H", len(tags))
    for tag, kind, count, value in tags:
        packed = (struct.pack("<HH", value, 0) if kind == 3 and count == 1
                  else struct.pack("<I", value))
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += struct.pack("<I", 0)
    head = b"II*\0" + struct.pack("<I", ifd_at) + struct.pack("<3H", 16, 16, 16) + strip
    return head + b"\0" * (ifd_at - len(head)) + ifd


def run_measured(*args: str) -> tuple[int, str, int]:
    """Run ``realscale`` as a user does; its exit code, stderr and peak memory in bytes."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "core"))
    process = subprocess.Popen([sys.executable, "-m", "realscale", *args], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, stderr, usage.ru_maxrss * 1024  # Linux gives KiB


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB: Linux")
@pytest.mark.parametrize("kind", ["png8", "png16", "tiff16"])
def test_one_mb_file_unpacking_to_a_gib_is_refused_without_the_memory(
    tmp_path: Path, gib_stream: bytes, kind: str
) -> None:
    """Before: the 16-bit PNG's profile and the TIFF's strip were inflated whole (2.3 GB of
    memory for a 1 MB file) and the upscale went on."""
    if kind == "tiff16":
        source = tmp_path / "bomb.tif"
        source.write_bytes(deep_tiff(gib_stream, compression=8))
        expected = "a compressed strip unpacks to more than 1,536 bytes"
    else:
        source = tmp_path / "bomb.png"
        source.write_bytes(png_with_iccp(16 if kind == "png16" else 8, gib_stream))
        expected = f"unpacks to more than {METADATA_LIMIT:,} bytes"
    assert source.stat().st_size < 1_100_000
    out = tmp_path / "out"
    out.mkdir()
    code, stderr, peak = run_measured("upscale", str(source), "-o", str(out),
                                      "--model", "realesr-animevideov3", "-q")
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "decompression bomb" in lines[0], lines
    assert list(out.iterdir()) == []
    # The whole process (Python, the network, the file) stays below what the bomb alone
    # would have taken.
    assert peak < GIB, f"peak memory {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("depth", [8, 16])
def test_profile_limit_is_the_same_on_both_png_paths(tmp_path: Path, depth: int) -> None:
    """The 8-bit path is Pillow's (1 MiB per chunk); the 16-bit codec keeps the same limit,
    so a file is accepted or refused whatever its depth."""
    largest = bytes(range(256)) * (METADATA_LIMIT // 256)
    path = tmp_path / "ok.png"
    path.write_bytes(png_with_iccp(depth, zlib.compress(largest)))
    assert read_image(path).icc_profile == largest
    path.write_bytes(png_with_iccp(depth, zlib.compress(largest + b"!")))
    with pytest.raises(ImageReadError, match="unpacks to more than 1,048,576 bytes") as caught:
        read_image(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_lzma_tiff_strip_is_bounded_too(tmp_path: Path) -> None:
    path = tmp_path / "lzma.tif"
    pixels = (np.arange(16 * 16 * 3, dtype=np.uint16) * 97).reshape(16, 16, 3)
    path.write_bytes(deep_tiff(lzma.compress(pixels.astype("<u2").tobytes()), 34925))
    assert np.array_equal(read_image(path).pixels, pixels)
    path.write_bytes(deep_tiff(lzma.compress(bytes(64 << 20)), 34925))
    with pytest.raises(ImageReadError, match="strip unpacks to more than 1,536 bytes"):
        read_image(path)


@pytest.mark.parametrize(
    "options",
    [{"tile": (16, 16)}, {"rowsperstrip": 3}, {"planarconfig": "separate"},
     {"predictor": True}, {"rowsperstrip": 1000}],
)
def test_real_deflate_tiffs_pass_the_strip_check(tmp_path: Path, options: dict) -> None:
    """No false alarm on what tifffile writes: tiles with padding, short last strips,
    planar samples, predictors."""
    pixels = rgb_crop("OST_009.png", 40).astype(np.uint16)[:37] * 257
    planes = options.get("planarconfig") == "separate"
    tifffile.imwrite(tmp_path / "t.tif", np.moveaxis(pixels, 2, 0) if planes else pixels,
                     photometric="rgb", compression="zlib", **options)
    assert np.array_equal(read_image(tmp_path / "t.tif").pixels, pixels)


def test_tiff_with_too_many_samples_is_refused(tmp_path: Path) -> None:
    # 20 samples per pixel: the pixel limit alone would let a "small" image take 20 planes.
    tifffile.imwrite(tmp_path / "many.tif", np.zeros((4, 4, 20), np.uint16),
                     photometric="minisblack", planarconfig="contig")
    with pytest.raises(ImageReadError, match="20 samples per pixel"):
        read_image(tmp_path / "many.tif")


def test_written_deep_files_read_back(tmp_path: Path) -> None:
    """The checks see the realscale writers' own output as ordinary files."""
    pixels = rgb_crop("OST_009.png", 48).astype(np.uint16) * 257
    for name in ("w.png", "w.tif"):
        write_image(tmp_path / name, pixels)
        assert np.array_equal(read_image(tmp_path / name).pixels, pixels)
    assert Image.open(tmp_path / "w.png").size == (48, 48)
