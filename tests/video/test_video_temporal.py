"""`realscale video --temporal`: still content stops flickering, a moving object and the
background it uncovers keep the per-frame result (no ghost), a scene cut starts afresh, and the
pipeline writes exactly what the filter makes of its frames, frame for frame.

Clips are made from real photographs with known motion (synthetic_clip.py); the filter tests
run the real compact model (realesr-animevideov3) on small frames."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from synthetic_clip import make_clip, write_lossless

from realscale import Cancelled, CancelToken, Upscaler
from realscale.formats import read_image
from realscale.video.ffmpeg import VideoError
from realscale.video.frames import read_frames
from realscale.video.pipeline import VideoJob, check_job, upscale_video
from realscale.video.probe import frame_times
from realscale.video.temporal import TemporalFilter

MODEL = "realesr-animevideov3"


@pytest.fixture(scope="module")
def compact() -> Upscaler:
    return Upscaler(MODEL)


def at_output(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An input-resolution mask at the output's resolution (whole scale factor)."""
    factor = shape[0] // mask.shape[0]
    return np.repeat(np.repeat(mask, factor, 0), factor, 1)


def mean_change(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b)[where].mean())


def test_still_clip_stops_flickering(compact) -> None:
    clip = make_clip(frames=10, size=(96, 72), moving=False, cut=99, seed=3)
    per_frame = [compact.upscale(frame) for frame in clip.frames]
    temporal = TemporalFilter()
    out = [temporal.step(f, p) for f, p in zip(clip.frames, per_frame, strict=True)]
    assert np.array_equal(out[0], per_frame[0])  # nothing to blend with yet
    everywhere = np.ones(per_frame[0].shape, bool)
    before = [mean_change(per_frame[i], per_frame[i - 1], everywhere) for i in range(4, 10)]
    after = [mean_change(out[i], out[i - 1], everywhere) for i in range(4, 10)]
    assert min(before) > 1.0  # the model really does flicker with the compression noise
    assert np.mean(after) < 0.4 * np.mean(before)
    assert max(after) < 0.5 * min(before)


def test_moving_object_uncovered_background_and_scene_cut_are_per_frame(compact) -> None:
    clip = make_clip(frames=14, size=(128, 96), cut=10, speed=(3.3, 1.2),
                     object_size=(40, 32), seed=5)
    per_frame = [compact.upscale(frame) for frame in clip.frames]
    temporal = TemporalFilter()
    cuts = []
    for index, (frame, fresh) in enumerate(zip(clip.frames, per_frame, strict=True)):
        out = temporal.step(frame, fresh)
        cuts.append(temporal.last.cut)
        if index in (0, clip.cut):
            assert np.array_equal(out, fresh), index
            continue
        moving = at_output(clip.moving(index), out.shape)
        ghost = mean_change(out, fresh, moving)
        assert ghost <= 2.0, (index, ghost)  # 8-bit levels: at most 2/255
        still = at_output(clip.still(index), out.shape)
        assert mean_change(out, fresh, still) > 0.3  # ... while still pixels are blended
    assert cuts == [i in (0, clip.cut) for i in range(len(clip.frames))]


def test_sixteen_bit_frames_are_blended_as_eight_bit_ones(compact) -> None:
    """The thresholds are in 8-bit levels whatever the depth: a 16-bit clip takes the same
    decisions and gives the same result, to the rounding of 8-bit frames (which the recursion
    carries on: at most 0.5 / (1 - 0.75) = 2 levels)."""
    clip = make_clip(frames=5, size=(64, 48), cut=3, seed=7)
    eight, sixteen = TemporalFilter(), TemporalFilter()
    for frame in clip.frames:
        fresh = compact.upscale(frame)
        a = eight.step(frame, fresh)
        b = sixteen.step(frame.astype(np.uint16) * 257, fresh.astype(np.uint16) * 257)
        assert b.dtype == np.uint16 and eight.last == sixteen.last
        difference = np.abs(b / 257.0 - a)
        assert difference.max() <= 2.0 and difference.mean() < 0.4


def run_video(source: Path, output: Path, model: str, *options: str) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-m", "realscale", "video", str(source), "-o", str(output), "-m",
         model, "--progress", "json", *options],
        capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.parametrize(("ten_bit", "scale"), [(False, None), (True, "3")])
def test_command_writes_what_the_filter_makes(tiny_model, tmp_path, ten_bit, scale) -> None:
    """16-bit PNGs from `realscale video --temporal` equal, bit for bit, the filter applied
    to the source's frames and the per-frame run's PNGs: the frames are paired in order, the
    cut is per-frame, and nothing else changes (8- and 10-bit sources, native and --scale)."""
    clip = make_clip(frames=8, size=(96, 72), cut=5, seed=11)
    source = write_lossless(clip, tmp_path / "clip.mkv", ten_bit=ten_bit)
    extra = ["--codec", "png", *(["--scale", scale] if scale else [])]
    run_video(source, tmp_path / "per", str(tiny_model), *extra)
    events = run_video(source, tmp_path / "tmp", str(tiny_model), "--temporal", *extra)
    assert events[-1]["event"] == "done" and events[-1]["frames"] == 8
    names = [f"{kind}_{i:06d}.png" for kind in ("per",) for i in range(1, 9)]
    assert sorted(p.name for p in (tmp_path / "per").iterdir()) == names
    frames = list(read_frames(str(source), sixteen_bit=True))
    if ten_bit:
        assert any(np.any(f % 257) for f in frames)  # real 10-bit values, not 8-bit ones
    temporal = TemporalFilter()
    for index, frame in enumerate(frames):
        fresh = read_image(tmp_path / "per" / f"per_{index + 1:06d}.png").pixels
        got = read_image(tmp_path / "tmp" / f"tmp_{index + 1:06d}.png").pixels
        assert got.dtype == np.uint16 and got.shape == fresh.shape
        assert np.array_equal(got, temporal.step(frame, fresh)), index
        assert np.array_equal(got, fresh) == (index in (0, clip.cut)), index


def test_frames_timestamps_and_audio_are_kept(sample, tiny_model, tmp_path) -> None:
    """H.264 (8-bit frames through the filter): the same frames, timestamps and audio as a
    per-frame run of the same stretch."""
    from test_video_full import audio_packets

    outs = {}
    for name, temporal in (("per.mp4", False), ("temporal.mp4", True)):
        outs[name] = tmp_path / name
        upscale_video(VideoJob(str(sample), str(outs[name]), start_frame=90, frames=16,
                               preset="ultrafast", temporal=temporal),
                      Upscaler(str(tiny_model)))
    per, temporal = frame_times(str(outs["per.mp4"])), frame_times(str(outs["temporal.mp4"]))
    assert len(temporal) == len(per) == 16
    assert temporal.pts == per.pts and temporal.time_base == per.time_base
    assert temporal.durations == per.durations
    assert audio_packets(str(outs["temporal.mp4"])) == audio_packets(str(outs["per.mp4"]))
    assert audio_packets(str(outs["per.mp4"]))  # there is audio to compare


@pytest.mark.parametrize("output", ["out.mp4", "frames"])
def test_cancelled_temporal_run_leaves_nothing(sample, tiny_model, tmp_path, output) -> None:
    token = CancelToken()

    def progress(state) -> None:
        if state.done == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        upscale_video(VideoJob(str(sample), str(tmp_path / output), temporal=True),
                      Upscaler(str(tiny_model)), progress=progress, cancel=token)
    assert list(tmp_path.iterdir()) == []


def test_without_opencv_the_job_is_refused_at_once(sample, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)  # what `import cv2` meets when it is absent
    with pytest.raises(VideoError, match="--temporal needs OpenCV"):
        check_job(VideoJob(str(sample), str(tmp_path / "o.mov"), temporal=True))
    check_job(VideoJob(str(sample), str(tmp_path / "o.mov")))


@pytest.mark.parametrize("shape", [(96, 128, 3), (36, 48, 4), (12, 16, 3)])
def test_output_is_warped_only_where_something_moved(shape) -> None:
    """The warp resamples only the rows and columns that moved (a cost saving): it must
    give what warping the whole frame gives, at x4, x1.5 and x0.5 of a 24x32 input."""
    import cv2

    rng = np.random.default_rng(2)
    image = rng.integers(0, 65536, shape, dtype=np.uint16)
    flow = np.zeros((24, 32, 2), np.float32)
    flow[9:13, 20:23] = rng.uniform(-3, 3, (4, 3, 2))
    got = TemporalFilter()._warp(image, flow)
    height, width = shape[:2]
    whole = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
    map_x = whole[..., 0] * np.float32(width / 32) + np.arange(width, dtype=np.float32)
    map_y = whole[..., 1] * np.float32(height / 24) + np.arange(
        height, dtype=np.float32)[:, None]
    expected = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    assert np.array_equal(got, expected)
    assert not np.array_equal(got, image)
