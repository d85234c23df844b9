"""`realscale upscale --ray` and `realscale video --ray` as a user types them, on the real
two-node Ray cluster of local_cluster.py: the files are the ones one machine writes, the
video keeps its audio, Ctrl-C leaves nothing half-written and stops the workers, and the
mistakes a user can make are one line each."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from local_cluster import LocalCluster
from PIL import Image

from helpers import REPO, data_file, ignores, like_a_terminal, rgb_crop
from realscale.video import ffmpeg


def realscale(cluster: LocalCluster | None, *args: str, **env: str,
              ) -> subprocess.CompletedProcess[str]:
    base = cluster.env() if cluster else dict(os.environ, PYTHONPATH=str(REPO / "core"))
    return subprocess.run([sys.executable, "-m", "realscale", *args], capture_output=True,
                          text=True, timeout=600, env=dict(base, **env))


def crops(folder: Path, count: int, size: int) -> Path:
    folder.mkdir()
    with Image.open(data_file("realesrgan-inputs", "OST_009.png")) as image:
        for index in range(count):
            left, top = 20 + 23 * index, 10 + 17 * index
            image.convert("RGB").crop((left, top, left + size, top + size)).save(
                folder / f"c{index:02d}.png")
    return folder


def no_leftovers(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")
                or ".part" in p.name]


def test_upscale_on_the_cluster_writes_what_one_machine_writes(cluster, tiny_model,
                                                               tmp_path) -> None:
    folder = crops(tmp_path / "in", 3, 40)
    Image.fromarray(rgb_crop("0014.jpg", 48, 0, 30)).save(folder / "photo.jpg", quality=92)
    one, many = tmp_path / "one", tmp_path / "cluster"
    one.mkdir()
    many.mkdir()
    model = ["-m", str(tiny_model), "--tile", "32"]
    assert realscale(None, "upscale", str(folder), "-o", str(one), *model).returncode == 0
    # --ray without an address: the cluster named by RAY_ADDRESS.
    ran = realscale(cluster, "upscale", str(folder), "-o", str(many), *model, "--ray",
                    "--ray-workers", "2", RAY_ADDRESS=cluster.address)
    assert ran.returncode == 0, ran.stderr
    assert "2 Ray workers on 2 machines (CPU)" in ran.stderr
    names = sorted(p.name for p in one.iterdir())
    assert len(names) == 4 and sorted(p.name for p in many.iterdir()) == names
    for name in names:
        assert (many / name).read_bytes() == (one / name).read_bytes(), name
    no_leftovers(many)


def audio_packets(path: Path) -> list[str]:
    text = ffmpeg.run(["-i", str(path), "-map", "0:a", "-c", "copy", "-f", "framecrc", "-"],
                      what="list audio packets")
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_video_on_the_cluster_is_the_same_file_with_its_audio(cluster, sample, tiny_model,
                                                              tmp_path) -> None:
    common = [str(sample), "-m", str(tiny_model), "--tile", "128", "--start-frame", "5",
              "--frames", "24", "-q"]
    one, many = tmp_path / "one.mov", tmp_path / "cluster.mov"
    assert realscale(None, "video", *common, "-o", str(one)).returncode == 0
    ran = realscale(cluster, "video", *common, "-o", str(many), f"--ray={cluster.address}")
    assert ran.returncode == 0, ran.stderr
    assert many.read_bytes() == one.read_bytes()
    assert audio_packets(many)  # the audio is there (and, the files being equal, the same)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster.mov", "one.mov"]


def test_ctrl_c_stops_the_workers_and_leaves_only_whole_files(cluster, tmp_path) -> None:
    folder = crops(tmp_path / "in", 16, 96)
    out = tmp_path / "out"
    out.mkdir()
    cluster.wait_for_no_workers()  # an earlier run's workers may still be ending
    command = like_a_terminal(
        [sys.executable, "-m", "realscale", "upscale", str(folder), "-o", str(out), "-m",
         "realesr-animevideov3", "--tile", "64", "--ray", cluster.address],
        env=cluster.env(), stderr=subprocess.PIPE)
    assert command.stderr is not None
    assert not ignores(command.pid, signal.SIGINT)  # Ctrl-C reaches it, as in a terminal
    for line in command.stderr:
        if " -> " in line:
            break
    # Ctrl-C with the batch under way: the command is held still (SIGSTOP) from its first
    # file until both workers are there and the signal is sent, so on a loaded machine the
    # batch cannot run to its end in between.
    command.send_signal(signal.SIGSTOP)
    try:
        cluster.wait_for_workers(2)
        command.send_signal(signal.SIGINT)
    finally:
        command.send_signal(signal.SIGCONT)
    rest = command.stderr.read()
    assert command.wait(60) == 130, rest
    assert "realscale: interrupted" in rest and "Traceback" not in rest
    cluster.wait_for_no_workers()
    no_leftovers(out)
    written = sorted(out.iterdir())
    assert 1 <= len(written) < 16
    for path in written:
        with Image.open(path) as image:
            image.load()  # whole files only
            assert image.size == (384, 384)


def test_video_cancel_stops_the_workers_and_leaves_nothing(cluster, sample, tiny_model,
                                                           tmp_path) -> None:
    out = tmp_path / "out.mov"
    command = subprocess.Popen(
        [sys.executable, "-m", "realscale", "video", str(sample), "-o", str(out), "-m",
         str(tiny_model), "--progress", "json", f"--ray={cluster.address}"],
        env=cluster.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    assert command.stdout is not None
    for line in command.stdout:
        event = json.loads(line)
        if event["event"] == "progress" and event["done"] >= 3:
            break
    command.send_signal(signal.SIGTERM)
    rest = command.stdout.read()
    assert command.wait(60) == 130
    assert json.loads(rest.splitlines()[-1])["event"] == "cancelled"
    cluster.wait_for_no_workers()
    assert list(tmp_path.iterdir()) == []


def test_without_ray_installed_the_flag_says_how_to_install_it(tmp_path) -> None:
    Image.fromarray(rgb_crop("OST_009.png", 16)).save(tmp_path / "x.png")
    for command in (["upscale", str(tmp_path / "x.png"), "--ray"],
                    ["video", str(data_file("realesrgan-inputs", "video", "onepiece_demo.mp4")),
                     "-o", str(tmp_path / "o.mov"), "--ray"]):
        code = ("import runpy, sys; sys.modules['ray'] = None; "
                f"sys.argv = ['realscale', *{command!r}]; "
                "runpy.run_module('realscale', run_name='__main__')")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO / "core")))
        assert done.returncode == 2
        assert done.stderr.strip().splitlines()[-1] == (
            "realscale: --ray needs Ray, which is not installed here: pip install "
            "'realscale[ray]' (on every machine of the cluster)")
        assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_flag_mistakes_are_one_line(tmp_path) -> None:
    image = tmp_path / "a.png"
    Image.fromarray(rgb_crop("OST_009.png", 16)).save(image)
    taken = realscale(None, "upscale", "--ray", str(image), str(image))
    assert taken.returncode == 2 and "is not a Ray address" in taken.stderr
    assert "--ray=ADDRESS" in taken.stderr
    alone = realscale(None, "upscale", str(image), "--ray-workers", "2")
    assert alone.returncode == 2
    assert alone.stderr.strip() == ("realscale: --ray-workers and --ray-gpus-per-worker only "
                                    "apply with --ray; add --ray (and an address) or leave "
                                    "them out")
