"""`realscale upscale` on a real two-node Ray cluster (local_cluster.py), through the
package's entry point with realscale's own argument parser (drive.py): outputs identical to
one machine's, a bad input reported and skipped, a worker killed and a machine leaving
mid-run without a file lost or changed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from local_cluster import LocalCluster
from PIL import Image

from helpers import REPO, data_file, rgb_crop
from realscale.formats import read_image, write_image

MODEL = "realesr-animevideov3"  # embedded: about 0.4 s for 96x96 on one CPU


def plain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "realscale", "upscale", *args],
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(REPO / "core")))


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".") or ".part" in p.name]


def scratch_left(cluster: LocalCluster) -> list[str]:
    return [p.name for p in cluster.scratch.iterdir() if p.name.startswith("realscale-")]


def many_crops(folder: Path, count: int, size: int = 96) -> list[Path]:
    folder.mkdir()
    with Image.open(data_file("realesrgan-inputs", "OST_009.png")) as image:
        pixels = image.convert("RGB")
        for index in range(count):
            left, top = 20 + 23 * index, 10 + 17 * index
            pixels.crop((left, top, left + size, top + size)).save(folder / f"c{index:02d}.png")
    return sorted(folder.iterdir())


def test_batch_matches_one_machine_and_reports_a_bad_input(cluster, tiny_model,
                                                           tmp_path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(rgb_crop("OST_009.png", 40, 60, 60)).save(folder / "rgb.png")
    Image.fromarray(rgb_crop("0014.jpg", 48, 0, 30)).save(folder / "photo.jpg", quality=92)
    tree = read_image(data_file("realesrgan-inputs", "tree_alpha_16bit.png"))
    write_image(folder / "tree16.png", tree.pixels[100:132, 100:140], like=tree)
    with Image.open(data_file("realesrgan-inputs", "wolf_gray.jpg")) as wolf:
        wolf.crop((50, 50, 90, 86)).save(folder / "wolf.jpg", quality=90)
    (folder / "broken.png").write_text("not an image")
    one, many = tmp_path / "one", tmp_path / "cluster"
    one.mkdir()
    many.mkdir()
    model = ["-m", str(tiny_model), "--tile", "32"]  # a weights file: sent to the workers

    local = plain(str(folder), "-o", str(one), *model)
    ran = cluster.drive("upscale", "--ray", cluster.address, "--ray-workers", "2", "--",
                        str(folder), "-o", str(many), *model)

    assert (local.returncode, ran.returncode) == (1, 1), ran.stderr
    names = sorted(p.name for p in one.iterdir())
    assert names == ["photo.jpg", "rgb.png", "tree16.png", "wolf.jpg"]
    assert sorted(p.name for p in many.iterdir()) == names
    for name in names:
        assert (many / name).read_bytes() == (one / name).read_bytes(), name
    errors = [line for line in ran.stderr.splitlines() if "broken.png" in line]
    assert errors == [line for line in local.stderr.splitlines() if "broken.png" in line]
    assert len(errors) == 1 and "Traceback" not in ran.stderr
    assert "2 Ray workers on 2 machines (CPU)" in ran.stderr
    finished = [line for line in ran.stderr.splitlines() if " -> " in line]
    assert sorted(line.split(" (")[0] for line in finished) == sorted(
        f"{folder / name} -> {many / name}" for name in names)
    assert leftovers(many) == [] and scratch_left(cluster) == []
    cluster.wait_for_no_workers()  # the workers end with the run


def run_and_disturb(cluster: LocalCluster, tmp_path: Path, disturb) -> None:
    """A batch of 16 files; once the first is written, ``disturb`` the cluster. Every file
    must still come out as on one machine, each once."""
    cluster.wait_for_no_workers()  # an earlier run's workers may still be ending
    sources = many_crops(tmp_path / "in", 16)
    one, many = tmp_path / "one", tmp_path / "cluster"
    one.mkdir()
    many.mkdir()
    driver = cluster.drive_background("upscale", "--ray", cluster.address, "--",
                                      str(tmp_path / "in"), "-o", str(many), "-m", MODEL,
                                      "--tile", "64")
    assert driver.stderr is not None
    lines = []
    for line in driver.stderr:
        lines.append(line)
        if " -> " in line:
            break
    workers = cluster.wait_for_workers(2)
    disturb(workers)
    rest = driver.stderr.read()
    assert driver.wait(300) == 0, "".join(lines) + rest
    log = "".join(lines) + rest
    lost = re.findall(r"a Ray worker on .* stopped \(.*\); it had (\d+) in hand, which go "
                      r"to the others", log)
    assert lost and int(lost[0]) >= 1, log  # it had files in hand
    assert "Traceback" not in log
    written = [line for line in log.splitlines() if " -> " in line]
    assert len(written) == len(sources)  # each file once
    local = plain(str(tmp_path / "in"), "-o", str(one), "-m", MODEL, "--tile", "64")
    assert local.returncode == 0, local.stderr
    for source in sources:
        assert (many / source.name).read_bytes() == (one / source.name).read_bytes()
    assert leftovers(many) == []


def test_a_worker_killed_mid_run_loses_nothing(cluster, tmp_path) -> None:
    killed = []

    def kill_one(workers: list[int]) -> None:
        cluster.kill(workers[:1])
        killed.append(workers[0])

    run_and_disturb(cluster, tmp_path, kill_one)
    assert not os.path.exists(f"/proc/{killed[0]}/cmdline") or \
        killed[0] not in cluster.worker_pids()


def test_a_machine_leaving_mid_run_loses_nothing(cluster, tmp_path) -> None:
    def machine_leaves(workers: list[int]) -> None:
        gone = cluster.remove_second_node()
        assert set(gone) & set(workers), "one of the workers ran on the second machine"

    try:
        run_and_disturb(cluster, tmp_path, machine_leaves)
    finally:
        if not cluster.pids("second"):
            cluster.add_second_node()
