"""Codecs, alpha, timestamps, other streams and outputs, on tiny synthetic clips."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from realscale import Upscaler
from realscale.formats import read_image
from realscale.video import ffmpeg, plan
from realscale.video.ffmpeg import VideoError
from realscale.video.frames import read_frames
from realscale.video.pipeline import VideoJob, upscale_video
from realscale.video.probe import frame_times, probe

VFR_PTS = "N*3000+mod(N\\,3)*400+gt(N\\,20)*9000"  # ticks of 1/90000 s: jitter and a gap


def make(path: Path, *args: str) -> Path:
    ffmpeg.run([*args, "-y", str(path)], what=f"make {path.name}")
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    srt = folder / "subs.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:00,300\nHello\n\n"
                   "2\n00:00:00,300 --> 00:00:00,600\nWorld\n")
    lavfi = ["-f", "lavfi", "-i"]
    return {
        "vfr": make(folder / "vfr.mp4", *lavfi, "testsrc2=size=64x48:rate=30,settb=1/90000,"
                    f"setpts={VFR_PTS}", *lavfi, "sine=sample_rate=48000", "-t", "1",
                    "-fps_mode", "passthrough", "-enc_time_base:v", "demux", "-c:v",
                    "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    "-video_track_timescale", "90000"),
        "alpha": make(folder / "alpha.mov", *lavfi, "testsrc2=size=64x48:rate=25,format=rgba,"
                      "geq=r='r(X\\,Y)':g='g(X\\,Y)':b='b(X\\,Y)':a='X*4'", "-frames:v", "6",
                      "-c:v", "png"),
        "subs": make(folder / "subs.mkv", *lavfi, "testsrc2=size=64x48:rate=25", *lavfi,
                     "sine=sample_rate=48000", "-i", str(srt), "-t", "0.6", "-map", "0",
                     "-map", "1", "-map", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                     "-c:a", "flac", "-c:s", "srt", "-metadata:s:s:0", "language=fra"),
        "odd": make(folder / "odd.mp4", *lavfi, "testsrc2=size=62x46:rate=25", "-frames:v",
                    "3", "-c:v", "libx264", "-pix_fmt", "yuv444p"),
    }


@pytest.fixture(scope="module")
def identity(identity_model: Path) -> Upscaler:
    return Upscaler(str(identity_model), precision="fp32")


def decode_rgba(path: Path) -> np.ndarray:
    width, height = frame_times(str(path)).size or (0, 0)
    raw = subprocess.run([*ffmpeg.base_command(), "-i", str(path), "-f", "rawvideo",
                          "-pix_fmt", "rgba64le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, "<u2").reshape(-1, height, width, 4)


@pytest.mark.parametrize("suffix", [".mov", ".mkv"])
@pytest.mark.parametrize("long_filter", [False, True])
def test_variable_frame_rate_keeps_every_timestamp(media, identity, tmp_path, monkeypatch,
                                                   suffix, long_filter) -> None:
    if long_filter:  # the timestamp expression goes to ffmpeg through a file
        monkeypatch.setattr(plan, "_LONG_FILTER", 10)
    out = tmp_path / f"vfr{suffix}"
    result = upscale_video(VideoJob(str(media["vfr"]), str(out)), identity)
    assert any("variable frame rate" in note for note in result.notes)
    before, after = frame_times(str(media["vfr"])), frame_times(str(out))
    assert not before.constant_rate and len(after) == len(before) > 20
    seconds = [round(float(p * before.time_base), 3) for p in before.pts]
    assert [round(float(p * after.time_base), 3) for p in after.pts] == seconds
    if suffix == ".mov":
        assert after.pts == before.pts  # exact, in the source's own time base
    assert list(tmp_path.iterdir()) == [out]


def test_prores_4444_keeps_alpha(media, identity, tmp_path) -> None:
    out = tmp_path / "alpha.mov"
    upscale_video(VideoJob(str(media["alpha"]), str(out), codec="prores4444"), identity)
    video = probe(str(out)).video
    assert video.codec == "prores" and video.pix_fmt.startswith("yuva444p")
    source, result = decode_rgba(media["alpha"]), decode_rgba(out)
    assert result.shape == (6, 96, 128, 4)
    alpha_error = np.abs(result[:, ::2, ::2, 3].astype(int) - source[..., 3])
    assert alpha_error.max() <= 2 * 257  # the alpha ramp survives (ProRes: 16-bit alpha)
    assert colour_error(result[:, ::2, ::2], source) <= 8


def colour_error(result: np.ndarray, source: np.ndarray) -> float:
    """Colour difference in 8-bit steps where the source is at least half opaque (realscale
    un-premultiplies, so colour under near-transparent pixels is not kept)."""
    solid = source[..., 3] >= 32768
    error = np.abs(result[..., :3].astype(int) - source[..., :3]) / 257
    return float(np.percentile(error[solid], 99))


def test_png_sequence_keeps_alpha_exactly(media, identity, tmp_path) -> None:
    out = tmp_path / "frames" / "f_%03d.png"
    out.parent.mkdir()
    upscale_video(VideoJob(str(media["alpha"]), str(out), start_number=0), identity)
    names = sorted(p.name for p in out.parent.iterdir())
    assert names == [f"f_{i:03d}.png" for i in range(6)]
    source = decode_rgba(media["alpha"])
    for index, name in enumerate(names):
        pixels = read_image(out.parent / name).pixels
        assert pixels.dtype == np.uint16 and pixels.shape == (96, 128, 4)
        assert np.array_equal(pixels[::2, ::2, 3], source[index, ..., 3])
        assert colour_error(pixels[None, ::2, ::2], source[index:index + 1]) <= 3


def test_tiff_sequence_into_a_new_folder_and_refusing_to_mix(media, identity,
                                                             tmp_path) -> None:
    out = tmp_path / "shot"
    upscale_video(VideoJob(str(media["odd"]), str(out), codec="tiff"), identity)
    assert sorted(p.name for p in out.iterdir()) == [f"shot_00000{i}.tif" for i in (1, 2, 3)]
    assert read_image(out / "shot_000001.tif").pixels.dtype == np.uint16
    with pytest.raises(VideoError, match="already holds frames"):
        upscale_video(VideoJob(str(media["odd"]), str(out), codec="tiff"), identity)
    upscale_video(VideoJob(str(media["odd"]), str(out), codec="tiff", frames=2,
                           overwrite=True), identity)
    assert sorted(p.name for p in out.iterdir()) == ["shot_000001.tif", "shot_000002.tif"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shot"]


@pytest.mark.parametrize(("suffix", "audio", "subtitle"), [
    (".mp4", "flac", "mov_text"), (".mov", "alac", "mov_text"), (".mkv", "flac", "subrip")])
def test_audio_and_subtitles_are_carried_over(media, identity, tmp_path, suffix, audio,
                                              subtitle) -> None:
    out = tmp_path / f"subs{suffix}"
    upscale_video(VideoJob(str(media["subs"]), str(out), codec="h264", preset="ultrafast"),
                  identity)
    info = probe(str(out))
    assert [s.codec for s in info.of_kind("audio")] == [audio]
    subs = info.of_kind("subtitle")
    assert [s.codec for s in subs] == [subtitle] and subs[0].language == "fra"
    cues = ffmpeg.run(["-i", str(out), "-map", "0:s:0", "-f", "srt", "-"], what="read cues")
    assert "Hello" in cues and "World" in cues
    quiet = tmp_path / f"quiet{suffix}"
    upscale_video(VideoJob(str(media["subs"]), str(quiet), codec="h264", preset="ultrafast",
                           audio=False, subtitles=False), identity)
    assert [s.kind for s in probe(str(quiet)).streams] == ["video"]


def test_h265_is_ten_bit(media, identity, tmp_path) -> None:
    out = tmp_path / "x.mkv"
    upscale_video(VideoJob(str(media["subs"]), str(out), codec="h265", preset="ultrafast",
                           crf=28), identity)
    video = probe(str(out)).video
    assert (video.codec, video.pix_fmt, video.width) == ("hevc", "yuv420p10le", 128)


def test_rotated_video_is_upscaled_upright(media, identity, tmp_path) -> None:
    rotated = make(tmp_path / "rotated.mp4", "-display_rotation:v:0", "90", "-i",
                   str(media["vfr"]), "-c", "copy")
    out = tmp_path / "upright.mov"
    upscale_video(VideoJob(str(rotated), str(out)), identity)
    assert frame_times(str(out)).size == (96, 128)
    assert "rotation" not in ffmpeg.info_text(str(out))
    upright = next(read_frames(str(rotated), frames=1))
    assert upright.shape == (64, 48, 3)


def test_refusals(media, identity, tmp_path) -> None:
    with pytest.raises(VideoError, match="needs an even width and height.*93x69"):
        upscale_video(VideoJob(str(media["odd"]), str(tmp_path / "o.mp4"), scale=1.5),
                      identity)
    taken = tmp_path / "taken.mov"
    taken.write_bytes(b"x")
    with pytest.raises(VideoError, match="already exists"):
        upscale_video(VideoJob(str(media["odd"]), str(taken)), identity)
    with pytest.raises(VideoError, match="is the input"):
        upscale_video(VideoJob(str(media["odd"]), str(media["odd"]), overwrite=True),
                      identity)
    with pytest.raises(VideoError, match="past the end"):
        upscale_video(VideoJob(str(media["odd"]), str(tmp_path / "p.mov"), start_frame=3),
                      identity)
    with pytest.raises(VideoError, match="--crf is for h264 and h265"):
        upscale_video(VideoJob(str(media["odd"]), str(tmp_path / "c.mov"), crf=20), identity)
    assert taken.read_bytes() == b"x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.mov"]


def test_timecode_is_kept_for_the_whole_clip(media, identity, tmp_path) -> None:
    source = make(tmp_path / "tc.mov", "-i", str(media["odd"]), "-c", "copy",
                  "-timecode", "01:00:10:05")
    out = tmp_path / "tc_x2.mov"
    upscale_video(VideoJob(str(source), str(out)), identity)
    assert probe(str(out)).timecode == "01:00:10:05"
    part = tmp_path / "part.mov"
    upscale_video(VideoJob(str(source), str(part), start_frame=1), identity)
    assert probe(str(part)).timecode is None  # a trimmed part does not start there


def test_video_that_starts_after_the_audio_stays_in_sync(identity, tmp_path) -> None:
    source = make(tmp_path / "late.mp4", "-itsoffset", "0.2", "-f", "lavfi", "-i",
                  "testsrc2=size=64x48:rate=25", "-f", "lavfi", "-i",
                  "sine=sample_rate=48000", "-t", "0.6", "-c:v", "libx264", "-pix_fmt",
                  "yuv420p", "-c:a", "aac")
    out = tmp_path / "late_x2.mov"
    upscale_video(VideoJob(str(source), str(out)), identity)
    before, after = frame_times(str(source)), frame_times(str(out))
    assert before.seconds(0) == pytest.approx(0.2, abs=0.03)
    assert [round(after.seconds(i), 4) for i in range(len(after))] == [
        round(before.seconds(i), 4) for i in range(len(before))]
