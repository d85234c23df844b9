"""The `realscale` command as a user runs it: a real process, real files, exit codes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import REPO, data_file, ignores, like_a_terminal, rgb_crop, signal_mask
from realscale import Upscaler, load_model
from realscale.formats import read_image

MODEL = "realesr-animevideov3"  # the compact model: these tests are about the command


def realscale(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "core"))
    return subprocess.run(
        [sys.executable, "-m", "realscale", *args], capture_output=True, text=True,
        env=env, cwd=cwd, timeout=300,
    )


@pytest.fixture(scope="module")
def upscaler() -> Upscaler:
    return Upscaler(load_model(MODEL), device="cpu")


@pytest.fixture
def small_png(tmp_path: Path) -> Path:
    path = tmp_path / "in.png"
    Image.fromarray(rgb_crop("OST_009.png", 40, 60, 60)).save(path)
    return path


def no_leftovers(folder: Path) -> None:
    names = [p.name for p in folder.iterdir()]
    assert not [n for n in names if n.startswith(".") or n.endswith((".part", ".tmp"))], names


def test_single_file_equals_api(tmp_path: Path, small_png: Path, upscaler: Upscaler) -> None:
    out = tmp_path / "out.png"
    result = realscale("upscale", str(small_png), "-o", str(out), "--model", MODEL)
    assert result.returncode == 0, result.stderr
    expected = upscaler.upscale(np.asarray(Image.open(small_png)))
    assert np.array_equal(np.asarray(Image.open(out)), expected)
    no_leftovers(tmp_path)


def test_sixteen_bit_rgba_stays_sixteen_bit(tmp_path: Path, upscaler: Upscaler) -> None:
    source = read_image(data_file("realesrgan-inputs", "tree_alpha_16bit.png"))
    assert source.pixels.dtype == np.uint16 and source.pixels.shape[2] == 4
    crop_path = tmp_path / "tree16.png"
    from realscale.formats import write_image

    write_image(crop_path, source.pixels[100:140, 100:140], like=source)
    out = tmp_path / "tree16_x2.png"
    result = realscale("upscale", str(crop_path), "-o", str(out), "--model", MODEL, "-s", "2")
    assert result.returncode == 0, result.stderr
    written = read_image(out)
    assert written.pixels.dtype == np.uint16 and written.pixels.shape == (80, 80, 4)
    expected = upscaler.upscale(read_image(crop_path).pixels, scale=2)
    assert np.array_equal(written.pixels, expected)


def test_folder_glob_format_and_batch_failure(tmp_path: Path, small_png: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(small_png, folder / "a.png")
    Image.open(small_png).convert("L").save(folder / "b.jpg")
    (folder / "broken.png").write_text("not an image")
    out = tmp_path / "out"
    out.mkdir()
    result = realscale("upscale", str(folder), "-o", str(out), "--model", MODEL, "-f", "webp")
    assert result.returncode == 1, "some of a batch failed: exit 1"
    assert sorted(p.name for p in out.iterdir()) == ["a.webp", "b.webp"]
    errors = [line for line in result.stderr.splitlines() if "broken.png" in line]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    glob_out = tmp_path / "glob"
    glob_out.mkdir()
    result = realscale("upscale", str(folder / "*.png"), "-o", str(glob_out), "--model", MODEL)
    assert (glob_out / "a.png").is_file()
    no_leftovers(out)


def test_never_overwrites_an_input(tmp_path: Path, small_png: Path) -> None:
    before = small_png.read_bytes()
    result = realscale("upscale", str(small_png), "-o", str(small_png), "--model", MODEL)
    assert result.returncode == 2
    assert "is an input" in result.stderr
    assert small_png.read_bytes() == before


def _bomb_png(path: Path, width: int, height: int) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\0" * (width * 3 + 1) * 8)  # a few rows; the header lies
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body)
                     + chunk(b"IEND", b""))


def _float_tiff_with_nan(path: Path) -> None:
    import tifffile

    data = np.full((8, 8, 3), 0.5, np.float32)
    data[2, 3, 1] = np.nan
    tifffile.imwrite(path, data, photometric="rgb")


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("empty.png", lambda p: p.write_bytes(b""), "empty"),
        ("text.png", lambda p: p.write_text("hello, I am text\n" * 20), "not"),
        ("truncated.png", None, "truncated"),
        ("bomb.png", lambda p: _bomb_png(p, 100_000, 100_000), "--max-pixels"),
        ("nan.tif", _float_tiff_with_nan, "NaN"),
        ("missing.png", lambda p: None, "does not exist"),
    ],
)
def test_bad_input_one_line_nothing_written(tmp_path: Path, name, make, message) -> None:
    source = tmp_path / name
    if make is None:
        real = data_file("realesrgan-inputs", "OST_009.png").read_bytes()
        source.write_bytes(real[: len(real) // 2])
    else:
        make(source)
    out = tmp_path / "out"
    out.mkdir()
    started = time.monotonic()
    result = realscale("upscale", str(source), "-o", str(out), "--model", MODEL)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and message.lower() in lines[0].lower(), lines
    assert "Traceback" not in result.stderr
    assert list(out.iterdir()) == []
    if name == "bomb.png":
        assert time.monotonic() - started < 60  # refused from the header, not decoded


def test_max_pixels_flag(tmp_path: Path, small_png: Path) -> None:
    result = realscale("upscale", str(small_png), "-o", str(tmp_path / "o.png"),
                       "--model", MODEL, "--max-pixels", "100")
    assert result.returncode == 2 and "--max-pixels" in result.stderr


def test_tiny_and_animated_inputs(tmp_path: Path) -> None:
    one = tmp_path / "one.png"
    Image.new("RGB", (1, 1), (10, 200, 30)).save(one)
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "green", "blue")]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = tmp_path / "out"
    out.mkdir()
    result = realscale("upscale", str(one), str(gif), "-o", str(out), "--model", MODEL)
    assert result.returncode == 0, result.stderr
    assert Image.open(out / "one.png").size == (4, 4)
    assert Image.open(out / "anim.gif").size == (32, 32)
    assert "only the first of 3 frames" in result.stderr


def test_output_folder_missing_or_unwritable(tmp_path: Path, small_png: Path) -> None:
    result = realscale("upscale", str(small_png), "-o", str(tmp_path / "nope" / "o.png"),
                       "--model", MODEL)
    assert result.returncode == 2 and "does not exist" in result.stderr
    # /proc refuses new files even for root: a real unwritable folder.
    result = realscale("upscale", str(small_png), "-o", "/proc/realscale-test.png",
                       "--model", MODEL)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "/proc/realscale-test.png" in result.stderr
    assert not Path("/proc/realscale-test.png").exists()


def test_scale_and_fit_flags(tmp_path: Path, small_png: Path) -> None:
    out = tmp_path / "s.png"
    assert realscale("upscale", str(small_png), "-o", str(out), "--model", MODEL,
                     "--scale", "1.5").returncode == 0
    assert Image.open(out).size == (60, 60)
    assert realscale("upscale", str(small_png), "-o", str(out), "--model", MODEL,
                     "--width", "100").returncode == 0
    assert Image.open(out).size == (100, 100)


def test_models_lists_catalogue() -> None:
    result = realscale("models")
    assert result.returncode == 0
    for name in ("realesrgan-x4plus", "realesrgan-x4plus-anime", "realesr-animevideov3-x2"):
        assert name in result.stdout
    assert "BSD-3-Clause" in result.stdout and "embedded" in result.stdout


def test_unknown_model_is_one_line(small_png: Path, tmp_path: Path) -> None:
    result = realscale("upscale", str(small_png), "-o", str(tmp_path / "o.png"),
                       "--model", "realesrgan-x4plu")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "realesrgan-x4plus" in result.stderr


def _formats_batch(folder: Path) -> list[Path]:
    """One input per output writer: Pillow's JPEG, PNG, WebP, TIFF, BMP and GIF encoders,
    the 16-bit PNG encoder and tifffile (16-bit TIFF); distinct names, so distinct outputs."""
    from realscale.formats import write_image

    folder.mkdir()
    photo = rgb_crop("OST_009.png", 96, 40, 60)
    paths = []
    for name in ("a.jpg", "b.png", "c.webp", "d.tif", "e.bmp", "f.gif"):
        Image.fromarray(photo).save(folder / name)
        paths.append(folder / name)
    for name in ("g16.png", "h16.tif"):
        write_image(folder / name, photo.astype(np.uint16) * 257)
        paths.append(folder / name)
    return paths


def test_file_size_limit_fails_every_format_and_keeps_nothing(tmp_path: Path) -> None:
    """A full disk, made real with RLIMIT_FSIZE (ulimit -f): every writer must fail with
    one line, leave no file, and exit non-zero; before, the JPEG was cut off and kept."""
    import resource

    limit = 8 * 1024
    inputs = _formats_batch(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO / "core"))
    args = [sys.executable, "-m", "realscale", "upscale", *map(str, inputs), "-o", str(out),
            "--model", MODEL, "-q"]
    limited = subprocess.run(
        args, capture_output=True, text=True, env=env, timeout=300,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)),
    )
    assert limited.returncode == 1, limited.stderr  # a batch where inputs failed
    lines = limited.stderr.strip().splitlines()
    assert len(lines) == len(inputs) and "Traceback" not in limited.stderr, lines
    for source, line in zip(inputs, lines, strict=True):
        assert str(source) in line and "file size limit" in line, line
    assert list(out.iterdir()) == []
    # The same batch without the limit: every complete file is larger than the limit, so
    # each writer above really was cut short.
    full = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert full.returncode == 0, full.stderr
    for source in inputs:
        written = out / source.name
        assert written.stat().st_size > limit, written
        assert read_image(written).pixels.shape[:2] == (384, 384)


def _big_write(tmp_path: Path) -> tuple[list[str], Path]:
    """A command that spends a while writing: a 4000x4000 PNG from a small input."""
    source = tmp_path / "in.png"
    Image.fromarray(rgb_crop("OST_009.png", 64, 40, 60)).save(source)
    out = tmp_path / "out"
    out.mkdir()
    return ([sys.executable, "-m", "realscale", "upscale", str(source), "-o",
             str(out / "big.png"), "--model", MODEL, "--width", "4000", "-q"], out)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX signals")
@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_stop_signal_while_writing_leaves_nothing(tmp_path: Path, name: str) -> None:
    import signal

    command, out = _big_write(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO / "core"))

    process = like_a_terminal(command, signals=(getattr(signal, name),),
                              stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 240
        # Wait for the temporary file, then freeze the process while it exists: the signal
        # is sure to arrive in the middle of the write, not after the rename.
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the output was never started"
            if any(p.name.endswith(".part") for p in out.iterdir()):
                process.send_signal(signal.SIGSTOP)
                if any(p.name.endswith(".part") for p in out.iterdir()):
                    break
                process.send_signal(signal.SIGCONT)
            time.sleep(0.002)
        process.send_signal(getattr(signal, name))
        process.send_signal(signal.SIGCONT)
        code = process.wait(120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = process.stderr.read() if process.stderr else ""
    assert code == 128 + getattr(signal, name), stderr
    assert list(out.iterdir()) == [], stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX signals")
def test_hangup_ignored_by_nohup_stays_ignored(tmp_path: Path, small_png: Path) -> None:
    """Under nohup the command must outlive the terminal: a SIGHUP it was started ignoring
    does not stop it."""
    import signal

    env = dict(os.environ, PYTHONPATH=str(REPO / "core"))
    out = tmp_path / "out.png"
    process = subprocess.Popen(
        [sys.executable, "-m", "realscale", "upscale", str(small_png), "-o", str(out),
         "--model", MODEL, "-q"],
        stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    )
    try:
        deadline = time.monotonic() + 120
        while not ignores(process.pid, signal.SIGHUP) or not _past_startup(process.pid):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        process.send_signal(signal.SIGHUP)
        assert process.wait(120) == 0, process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert Image.open(out).size == (160, 160)


def _past_startup(pid: int) -> bool:
    """The command has set its own handlers (SIGTERM caught), so a HUP now meets them."""
    import signal

    return bool(signal_mask(pid, "SigCgt") & (1 << (signal.SIGTERM - 1)))


def test_inputs_that_share_an_output_are_refused_before_any_work(tmp_path: Path) -> None:
    photo = rgb_crop("OST_009.png", 24)
    for folder in ("d1", "d2"):
        (tmp_path / folder).mkdir()
        Image.fromarray(photo).save(tmp_path / folder / "x.png")
    Image.fromarray(photo).save(tmp_path / "d1" / "x.jpg")
    out = tmp_path / "out"
    out.mkdir()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    same_name = realscale("upscale", "d1/x.png", "d2/x.png", "-o", "out", "--model", MODEL,
                          cwd=tmp_path)
    same_stem = realscale("upscale", "d1/x.png", "d1/x.jpg", "-f", "png", "--model", MODEL,
                          cwd=tmp_path)
    for result, message in ((same_name, "out/x.png"), (same_stem, "the same file in d1")):
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
        assert "d1/x.png and d" in lines[0]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    # One file named twice (here by a glob and by name) is one input, not a clash.
    twice = realscale("upscale", "d1/*.png", "d1/x.png", "-o", "out", "--model", MODEL,
                      cwd=tmp_path)
    assert twice.returncode == 0, twice.stderr
    assert [p.name for p in out.iterdir()] == ["x.png"]


def test_impossible_output_size_is_one_line_and_the_batch_goes_on(tmp_path: Path) -> None:
    small, large = tmp_path / "small.png", tmp_path / "large.png"
    Image.fromarray(rgb_crop("OST_009.png", 20)).save(small)
    Image.fromarray(rgb_crop("OST_009.png", 100)).save(large)
    out = tmp_path / "out"
    out.mkdir()
    result = realscale("upscale", str(small), "-o", str(out / "o.png"), "--model", MODEL,
                       "--width", "100000000")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "100,000,000x100,000,000" in lines[0], lines
    assert "limit of 256,000,000" in lines[0] and "--max-pixels" in lines[0]
    # The limit is --max-pixels for results as for inputs: 400x400 is over, 80x80 is not,
    # and the batch goes on past the refused one.
    result = realscale("upscale", str(large), str(small), "-o", str(out), "--model", MODEL,
                       "--max-pixels", "10000", "-q")
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "large.png" in lines[0] and "400x400" in lines[0], lines
    assert [p.name for p in out.iterdir()] == ["small.png"]
    assert Image.open(out / "small.png").size == (80, 80)


def _engine_help(command: str) -> list[str]:
    """The engine options' lines of a command's --help (from --tile to --download)."""
    text = realscale(command, "--help").stdout
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("--tile"))
    end = next(i for i, line in enumerate(lines) if line.strip().startswith("--download"))
    return [line.strip() for line in lines[start : end + 2]]


def test_upscale_and_video_share_the_engine_options_and_the_tile_check(
        tmp_path: Path, small_png: Path) -> None:
    # The same flags and help, after each command's own default model.
    assert len(_engine_help("upscale")) >= 6
    assert _engine_help("upscale") == _engine_help("video")
    assert "--precision {auto,fp32,fp16,bf16}" in realscale("video", "--help").stdout
    clip = data_file("realesrgan-inputs", "video", "onepiece_demo.mp4")
    for tile in ("8", "big", "-16"):
        for command in (["upscale", str(small_png), "-o", str(tmp_path / "o.png")],
                        ["video", str(clip), "-o", str(tmp_path / "o.mov")]):
            done = realscale(*command, f"--tile={tile}", "--model", MODEL)
            assert done.returncode == 2, done.stderr
            assert done.stderr.strip().splitlines()[-1].endswith(
                "argument --tile: the tile size must be auto or a whole number of at least 16 "
                f"pixels, got {tile!r}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


def test_check_tile_and_engine_options() -> None:
    from realscale.errors import RealscaleError
    from realscale.options import EngineOptions, check_tile
    from realscale.tiling import MIN_TILE

    assert check_tile("auto") == "auto" and check_tile(MIN_TILE) == MIN_TILE
    assert check_tile(" 64 ") == 64
    for bad in (MIN_TILE - 1, "0", 0, True, 32.0, None, "auto ", "AUTO"):
        with pytest.raises(RealscaleError, match="auto or a whole number of at least 16"):
            check_tile(bad)
    # A request: missing fields are auto, "auto" is the tile's one spelling (0 was protocol
    # 1's), and a wrong field is named.
    assert EngineOptions.from_request({"model": "m"}) == EngineOptions(model="m")
    assert EngineOptions.from_request({"model": "m", "tile": 32, "device": "cuda:1",
                                       "precision": "bf16", "download": True}) == \
        EngineOptions(model="m", device="cuda:1", precision="bf16", tile=32, download=True)
    assert EngineOptions.from_request({"tile": 0}).tile == "auto"
    for request, field in (({"tile": "32"}, "'tile'"), ({"precision": "half"}, "'precision'"),
                           ({"backend": "tensorrt"}, "'backend'"), ({"device": 0}, "'device'"),
                           ({"download": "yes"}, "'download'"), ({"model": 3}, "'model'")):
        with pytest.raises(RealscaleError, match=field):
            EngineOptions.from_request(request)
    with pytest.raises(RealscaleError, match="at least 16"):
        EngineOptions(tile=8)
