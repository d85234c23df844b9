"""The real default model on a short stretch of the sample: each frame of a 16-bit PNG
sequence equals what `realscale upscale` makes of the same decoded frame, bit for bit."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from realscale.formats import read_image, write_image
from realscale.video.frames import read_frames


def test_png_sequence_frame_equals_realscale_upscale(sample, tmp_path) -> None:
    out = tmp_path / "seq"
    done = subprocess.run(
        [sys.executable, "-m", "realscale", "video", str(sample), "-o", str(out),
         "--codec", "png", "--scale", "2", "--start-frame", "100", "--frames", "2",
         "--progress", "json"],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[0] == {"event": "start", "frames": 2, "first_frame": 100, "width": 1280,
                         "height": 960, "codec": "png", "output": str(out)}
    assert [e["done"] for e in events if e["event"] == "progress"] == [1, 2]
    assert events[-1]["event"] == "done" and events[-1]["frames"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["seq_000001.png", "seq_000002.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq"]  # no temporary left

    # Frame 101 of the source, decoded as the pipeline decodes it, through `realscale upscale`.
    frame = next(read_frames(str(sample), start_frame=101, frames=1, sixteen_bit=True))
    write_image(tmp_path / "frame101.png", frame)
    upscaled = tmp_path / "frame101_x2.png"
    done = subprocess.run(
        [sys.executable, "-m", "realscale", "upscale", str(tmp_path / "frame101.png"),
         "-o", str(upscaled), "-m", "realesr-animevideov3", "-s", "2", "-q"],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    expected = read_image(upscaled).pixels
    got = read_image(out / "seq_000002.png").pixels
    assert got.dtype == expected.dtype == np.uint16 and got.shape == (960, 1280, 3)
    assert np.array_equal(got, expected)
    assert not np.array_equal(read_image(out / "seq_000001.png").pixels, expected)


def test_onnxruntime_backend_gives_what_upscale_gives(sample, tmp_path) -> None:
    """`--backend onnxruntime` reaches the video pipeline's Upscaler as it does the image one."""
    out = tmp_path / "seq"
    done = subprocess.run(
        [sys.executable, "-m", "realscale", "video", str(sample), "-o", str(out),
         "--codec", "png", "--scale", "2", "--start-frame", "40", "--frames", "1",
         "--backend", "onnxruntime", "--progress", "none"],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    frame = next(read_frames(str(sample), start_frame=40, frames=1, sixteen_bit=True))
    write_image(tmp_path / "frame40.png", frame)
    upscaled = tmp_path / "frame40_x2.png"
    done = subprocess.run(
        [sys.executable, "-m", "realscale", "upscale", str(tmp_path / "frame40.png"),
         "-o", str(upscaled), "-m", "realesr-animevideov3", "-s", "2", "-q",
         "--backend", "onnxruntime"],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert np.array_equal(read_image(out / "seq_000001.png").pixels,
                          read_image(upscaled).pixels)
