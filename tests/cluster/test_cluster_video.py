"""Video frames on a real two-node Ray cluster: ClusterUpscaler.upscale_frames (what
`realscale video --ray` runs between ffmpeg's decoder and encoder) gives every frame, in
order, exactly as the Upscaler on one machine does, also when a worker is killed mid-way."""

from __future__ import annotations

import numpy as np
import pytest

from realscale import Upscaler
from realscale.video.frames import read_frames

TILE = 128  # the 640x480 frames are cut into tiles: the tiling must match too


@pytest.fixture(scope="module")
def expected(sample, tiny_model) -> np.ndarray:
    local = Upscaler(str(tiny_model), device="cpu", tile=TILE)
    return np.stack([local.upscale(frame)
                     for frame in read_frames(str(sample), start_frame=10, frames=24)])


def test_frames_in_order_and_identical(cluster, sample, tiny_model, expected,
                                       tmp_path) -> None:
    out = tmp_path / "frames.npy"
    ran = cluster.drive("frames", "--ray", cluster.address, "--", str(sample), str(out),
                        str(tiny_model), str(TILE), "10", "24")
    assert ran.returncode == 0, ran.stderr
    got = np.load(out)
    assert got.shape == expected.shape == (24, 960, 1280, 3)
    assert np.array_equal(got, expected)
    cluster.wait_for_no_workers()  # the workers end with the run


def test_a_worker_killed_mid_video_loses_no_frame(cluster, sample, tiny_model, expected,
                                                  tmp_path) -> None:
    out = tmp_path / "frames.npy"
    cluster.wait_for_no_workers()  # an earlier run's workers may still be ending
    driver = cluster.drive_background("frames", "--ray", cluster.address, "--", str(sample),
                                      str(out), str(tiny_model), str(TILE), "10", "24")
    assert driver.stdout is not None and driver.stderr is not None
    for line in driver.stdout:
        if line.strip() == "frame 4":
            break
    workers = cluster.wait_for_workers(2)
    cluster.kill(workers[1:2])
    shown = [line.strip() for line in driver.stdout]
    log = driver.stderr.read()
    assert driver.wait(300) == 0, log
    assert shown[-1] == "frame 24"
    assert "a Ray worker on" in log and "in hand, which go to the others" in log, log
    assert np.array_equal(np.load(out), expected)
