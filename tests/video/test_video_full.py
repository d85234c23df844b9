"""The whole sample clip through a (tiny) network: nothing about the video may change but
its size. Every one of the 181 frames really runs through the network; a full Real-ESRGAN
model would take about 6 s a frame on a CPU, so the network is a tiny SRVGGNetCompact."""

from __future__ import annotations

import numpy as np

from realscale import Upscaler
from realscale.video import ffmpeg
from realscale.video.frames import read_frames
from realscale.video.pipeline import VideoJob, upscale_video
from realscale.video.probe import frame_times, probe


def audio_packets(path: str) -> list[str]:
    """Every audio packet's timestamps, size and checksum: equal lists, equal audio."""
    text = ffmpeg.run(["-i", path, "-map", "0:a", "-c", "copy", "-f", "framecrc", "-"],
                      what="list audio packets")
    return [line for line in text.splitlines() if line and not line.startswith("#software")]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(error, 1e-12)))


def test_full_length_h264_keeps_frames_rate_duration_and_audio(sample, tiny_model,
                                                                tmp_path) -> None:
    out = tmp_path / "onepiece_x2.mp4"
    seen = []
    upscaler = Upscaler(str(tiny_model))
    result = upscale_video(VideoJob(str(sample), str(out), preset="veryfast", crf=16),
                           upscaler, progress=seen.append)
    assert result.frames == 181 and result.size == (1280, 960)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onepiece_x2.mp4"]

    source, upscaled = probe(str(sample)), probe(str(out))
    assert upscaled.duration == source.duration
    assert (upscaled.video.codec, upscaled.video.width, upscaled.video.height) == (
        "h264", 1280, 960)
    before, after = frame_times(str(sample)), frame_times(str(out))
    assert len(after) == len(before) == 181
    assert after.time_base == before.time_base and after.pts == before.pts
    assert after.durations[-1] == before.durations[-1]
    assert after.frame_rate() == before.frame_rate()
    assert [s.codec for s in upscaled.of_kind("audio")] == ["aac"]
    assert audio_packets(str(out)) == audio_packets(str(sample))

    assert [p.done for p in seen] == list(range(1, 182))
    assert all(p.total == 181 for p in seen) and seen[-1].eta == 0
    assert seen[-1].fps > 0

    # A sampled frame is the upscale of the same decoded frame, within H.264 tolerance.
    frame = next(read_frames(str(sample), start_frame=120, frames=1))
    expected = upscaler.upscale(frame)
    got = next(read_frames(str(out), start_frame=120, frames=1))
    assert got.shape == expected.shape == (960, 1280, 3)
    assert psnr(got, expected) > 38
    other = next(read_frames(str(out), start_frame=40, frames=1))
    assert psnr(other, expected) < psnr(got, expected) - 6
