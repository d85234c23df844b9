"""Reading ffmpeg's report and frame times; the setpts expression that restores timestamps."""

from __future__ import annotations

import subprocess
from fractions import Fraction

import pytest

from realscale.video import codecs, ffmpeg
from realscale.video.ffmpeg import VideoError
from realscale.video.probe import VideoStream, frame_times, parse_framecrc, parse_info, probe
from realscale.video.timing import evaluate, runs, setpts_expression

REPORT = """\
Input #0, matroska,webm, from 'in.mkv':
  Metadata:
    title           : A show
    ENCODER         : Lavf60
  Duration: 00:01:02.50, start: 0.042000, bitrate: 1200 kb/s
  Chapters:
    Chapter #0:0: start 0.000000, end 30.000000
  Stream #0:0(jpn): Video: h264 (High), yuv420p10le(tv, bt709/bt709/arib-std-b67, \
top first), 1920x1080 [SAR 4:3 DAR 64:27], 23.98 fps, 23.98 tbr, 1k tbn (default)
    Metadata:
      timecode        : 01:00:00:00
  Stream #0:1(eng): Audio: flac, 48000 Hz, stereo, s16 (default)
  Stream #0:2(eng): Subtitle: ass (ssa)
  Stream #0:3: Attachment: ttf
    Metadata:
      filename        : font.ttf
  Stream #0:4: Video: mjpeg (Baseline), yuvj420p(pc, bt470bg/unknown/unknown), 300x300, \
90k tbr, 90k tbn (attached pic)
  Stream #0:5: Video: prores (4444), yuva444p12le(tv, progressive), 64x48, 25 fps
At least one output file must be specified
"""


def test_parse_info_reads_streams_colours_and_metadata() -> None:
    info = parse_info("in.mkv", REPORT)
    assert info is not None
    assert info.duration == pytest.approx(62.5) and info.start == pytest.approx(0.042)
    assert info.metadata["title"] == "A show"
    assert [s.kind for s in info.streams] == [
        "video", "audio", "subtitle", "attachment", "video", "video"]
    video = info.video
    assert isinstance(video, VideoStream)
    assert (video.codec, video.width, video.height, video.pix_fmt) == (
        "h264", 1920, 1080, "yuv420p10le")
    assert (video.color_range, video.colorspace, video.primaries, video.transfer) == (
        "tv", "bt709", "bt709", "arib-std-b67")
    assert video.sar == Fraction(4, 3) and video.interlaced and video.bit_depth == 10
    assert video.language == "jpn" and info.timecode == "01:00:00:00"
    assert not video.has_alpha
    cover = info.streams[4]
    assert isinstance(cover, VideoStream) and cover.attached_pic and cover.color_range == "pc"
    assert cover.colorspace == "bt470bg" and cover.primaries is None
    alpha = info.streams[5]
    assert isinstance(alpha, VideoStream) and alpha.has_alpha and alpha.bit_depth == 12
    assert info.of_kind("audio")[0].codec == "flac"


def test_parse_info_without_input_is_none() -> None:
    assert parse_info("x", "x: No such file or directory\n") is None


def test_probe_sample(sample) -> None:
    info = probe(str(sample))
    assert info.duration == pytest.approx(7.55)
    video = info.video
    assert (video.width, video.height, video.pix_fmt, video.codec) == (640, 480, "yuv420p",
                                                                       "h264")
    assert video.colorspace is None and not video.interlaced
    assert [s.codec for s in info.of_kind("audio")] == ["aac"]


def test_probe_errors_name_the_file(tmp_path) -> None:
    bad = tmp_path / "notavideo.mp4"
    bad.write_bytes(b"hello")
    with pytest.raises(VideoError, match="notavideo.mp4"):
        probe(str(bad))


def test_frame_times_of_the_sample(sample) -> None:
    times = frame_times(str(sample))
    assert len(times) == 181 and times.time_base == Fraction(1, 19184)
    assert times.pts[:3] == [0, 800, 1600] and times.constant_rate
    assert times.frame_rate() == Fraction(2398, 100) and times.size == (640, 480)
    assert times.end_seconds == pytest.approx(181 / 23.98)
    part = frame_times(str(sample), frames=5)
    assert part.pts == times.pts[:5]


def test_parse_framecrc_sorts_by_presentation_time() -> None:
    text = ("#tb 0: 1/90000\n#dimensions 0: 64x48\n"
            "0, 0, 3000, 3000, 10, 0x0\n0, 3000, 0, 3000, 10, 0x0\n0, 6000, 6000, 3000, 1, 0\n")
    times = parse_framecrc(text)
    assert times.pts == [0, 3000, 6000] and times.size == (64, 48)


@pytest.mark.parametrize("pts", [
    [0, 800, 1600, 2400],
    [0, 3400, 6800, 9000, 12400, 15800, 18000, 21400, 30400, 33800],
    [5, 6, 9, 20, 21, 22, 23, 40],
    [0],
])
def test_setpts_expression_reproduces_every_timestamp(pts) -> None:
    assert [evaluate(pts, n) for n in range(len(pts))] == pts
    expression = setpts_expression(pts)
    assert expression.count("if(") == len(runs(pts)) - 1


def test_setpts_expression_evaluated_by_ffmpeg(tmp_path) -> None:
    """ffmpeg itself evaluates the expression: the frames come out at exactly these times."""
    pts = [0, 3400, 6800, 9000, 12400, 15800, 18000, 21400, 30400, 33800, 37200]
    expression = setpts_expression(pts)
    out = ffmpeg.run(["-f", "lavfi", "-i", "testsrc2=size=32x32:rate=25", "-frames:v",
                      str(len(pts)), "-vf", f"settb=1/90000,setpts='{expression}'",
                      "-fps_mode", "passthrough", "-enc_time_base:v", "filter",
                      "-c:v", "wrapped_avframe", "-f", "framecrc", "-"], what="test")
    assert parse_framecrc(out).pts == pts


def test_codec_choice() -> None:
    assert codecs.choose("a.mov", None).name == "prores"
    assert codecs.choose("a.mp4", None).name == "h264"
    assert codecs.choose("frames/", None).name == "png"
    assert codecs.choose("out/f_%06d.tif", None).name == "tiff"
    assert codecs.choose("a.mkv", "hevc").name == "h265"
    with pytest.raises(VideoError, match="cannot go into a .mp4"):
        codecs.choose("a.mp4", "prores")
    with pytest.raises(VideoError, match="is not one realscale writes"):
        codecs.choose("a.mov", "vp9")
    with pytest.raises(VideoError, match="writes a folder of images"):
        codecs.choose("a.mov", "png")
    with pytest.raises(VideoError, match="cannot tell the output format"):
        codecs.choose("a.avi", None)


def test_bundled_ffmpeg_has_the_encoders() -> None:
    listing = subprocess.run([ffmpeg.executable(), "-hide_banner", "-encoders"],
                             capture_output=True, text=True, check=True).stdout
    for encoder in ("prores_ks", "libx264", "libx265", "mov_text", "alac"):
        assert f" {encoder} " in listing, encoder
