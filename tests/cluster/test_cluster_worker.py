"""A Ray worker's work, run here without Ray: the files it returns are the ones
`realscale upscale` writes, byte for byte, and its messages name the driver's paths."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from helpers import REPO, data_file, rgb_crop
from realscale import cli
from realscale.cluster.models import model_files
from realscale.cluster.worker import FileJob, Worker, WorkerInfo
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
    from realscale import Upscaler
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
