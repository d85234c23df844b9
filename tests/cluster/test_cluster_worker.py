"""A Ray worker's work, run here without Ray: the files it returns are the ones
`realscale upscale` writes, byte for byte, and its messages name the driver's paths."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import REPO, data_file, rgb_crop
from realscale import Upscaler, catalogue, cli
from realscale.cluster.models import model_files
from realscale.cluster.worker import FileJob, Worker, WorkerInfo
from realscale.errors import ModelError
from realscale.formats import read_image, write_image
from realscale.options import EngineOptions


def inputs(folder: Path) -> list[Path]:
    """Real crops of several kinds: 8-bit RGB, 16-bit RGBA, grey JPEG, and a broken file."""
    folder.mkdir()
    Image.fromarray(rgb_crop("OST_009.png", 40, 60, 60)).save(folder / "rgb.png")
    tree = read_image(data_file("realesrgan-inputs", "tree_alpha_16bit.png"))
    write_image(folder / "tree16.png", tree.pixels[100:132, 100:140], like=tree)
    with Image.open(data_file("realesrgan-inputs", "wolf_gray.jpg")) as wolf:
        wolf.crop((50, 50, 90, 86)).save(folder / "wolf.jpg", quality=90)
    (folder / "broken.png").write_text("not an image")
    return sorted(folder.iterdir())


def test_files_match_the_command_and_name_the_drivers_paths(tmp_path, tiny_model) -> None:
    sources = inputs(tmp_path / "in")
    plain = tmp_path / "plain"
    plain.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "realscale", "upscale", *map(str, sources), "-o", str(plain),
         "-m", str(tiny_model), "--tile", "32"],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=str(REPO / "core")))
    assert done.returncode == 1, done.stderr
    expected_error = [line for line in done.stderr.splitlines() if "broken.png" in line]

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    worker = Worker(EngineOptions(device="cpu", tile=32), str(scratch))
    info = worker.start(model_files(str(tiny_model), allow_download=False))
    assert isinstance(info, WorkerInfo) and info.scale == 2
    assert info.model == cli_model_name(tiny_model)
    # The per-file step reads scale, width, height, format, quality and quiet from these.
    args = cli._parser().parse_args(["upscale", "x", "--tile", "32"])
    driver_out = tmp_path / "driver-out"
    for source in sources:
        target = driver_out / source.name
        result = worker.upscale_file(FileJob(str(source), source.read_bytes(), str(target),
                                             args, 10**8))
        if source.name == "broken.png":
            assert result.data is None
            assert [f"realscale: {source}: {result.error}"] == expected_error
            continue
        assert result.error is None
        assert result.data == (plain / source.name).read_bytes(), source.name
        width, height = Image.open(plain / source.name).size
        assert result.messages.startswith(f"{source} -> {target} ({width}x{height}, ")
        assert str(scratch) not in result.messages
    assert list(scratch.iterdir()) == []  # no copy outlives its call


def test_a_new_worker_removes_what_ended_workers_left(tmp_path, tiny_model) -> None:
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    stale = tmp_path / f"realscale-ray-{ended.stdout.strip()}-abc123"
    (stale / "in").mkdir(parents=True)
    running = tmp_path / f"realscale-ray-{os.getppid()}-def456"
    running.mkdir()
    worker = Worker(EngineOptions(device="cpu", tile=32), str(tmp_path))
    assert isinstance(worker.start(model_files(str(tiny_model), allow_download=False)),
                      WorkerInfo)
    assert sorted(p.name for p in tmp_path.iterdir()) == [running.name]


def cli_model_name(path: Path) -> str:
    from realscale import load_model

    return load_model(str(path)).name


def test_frames_are_the_upscalers(sample, tiny_model) -> None:
    from realscale.video.frames import read_frames

    worker = Worker(EngineOptions(device="cpu", tile=64))
    assert isinstance(worker.start(model_files(str(tiny_model), allow_download=False)),
                      WorkerInfo)
    local = Upscaler(str(tiny_model), device="cpu", tile=64)
    for frame in read_frames(str(sample), start_frame=30, frames=2):
        assert np.array_equal(worker.upscale_frame(frame, 1.5), local.upscale(frame, scale=1.5))


def test_a_model_that_cannot_load_is_one_line(tmp_path) -> None:
    worker = Worker(EngineOptions(device="cpu", tile="auto"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not weights at all" * 10)
    answer = worker.start(model_files(str(bad), allow_download=False))
    assert isinstance(answer, str) and "bad.pth" in answer and "\n" not in answer
    assert "Ray worker" in answer


def test_model_files_tell_files_from_names_as_a_local_run(tmp_path, monkeypatch) -> None:
    """The driver sends a file only where ``realscale upscale -m`` would read one
    (``loading.names_a_file``), and an ncnn pair whole, whichever of its files is named:
    a Ray worker then loads what the local run loads."""
    entry = catalogue.get("realesr-animevideov3")
    source = next(s for s in entry.sources if isinstance(s, catalogue.PackageSource))
    param, weights = catalogue.package_files(source)
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(param, folder / "anime.param")
    shutil.copy(weights, folder / "anime.bin")
    pixels = rgb_crop("OST_009.png", 24)
    local = Upscaler(str(folder / "anime.param"), device="cpu", tile=32).upscale(pixels)
    for named in ("anime.param", "anime.bin"):
        files = model_files(str(folder / named), allow_download=False)
        assert (files.spec, sorted(files.files)) == (named, ["anime.bin", "anime.param"])
        scratch = tmp_path / f"scratch-{named}"
        scratch.mkdir()
        worker = Worker(EngineOptions(device="cpu", tile=32), str(scratch))
        info = worker.start(files)
        assert isinstance(info, WorkerInfo) and info.scale == 4, info
        assert np.array_equal(worker.upscale_frame(pixels, None), local)

    # A file in the current folder named like a catalogue model is not a file to a local
    # run, nor to the driver; a name with a suffix that is no weights file is a model name.
    monkeypatch.chdir(folder)
    (folder / "realesr-animevideov3").write_bytes(b"not weights")
    assert model_files("realesr-animevideov3", allow_download=False).files == {}
    with pytest.raises(ModelError) as driver_error:
        model_files("anime.txt", allow_download=False)
    with pytest.raises(ModelError) as local_error:
        Upscaler("anime.txt", device="cpu")
    assert str(driver_error.value) == str(local_error.value)
