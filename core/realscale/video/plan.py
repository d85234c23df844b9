"""Everything decided before a frame moves: which frames, which pixel formats and colours,
the ffmpeg command lines, and where the output goes while it is being written."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from fractions import Fraction

from .codecs import MUXERS, SEQUENCE_SUFFIX, Codec
from .ffmpeg import VideoError
from .probe import FrameTimes, MediaInfo, VideoStream, seek_args
from .timing import setpts_expression

# Sources whose file does not name its matrix: what players assume for their size.
_HD_HEIGHT = 720
# ffmpeg's scale filter and its colour tags spell the matrices differently.
_SCALE_MATRIX = {
    "bt709": "bt709", "bt470bg": "bt470", "smpte170m": "smpte170m", "bt2020nc": "bt2020",
    "bt2020c": "bt2020", "fcc": "fcc", "smpte240m": "smpte240m",
}
_SWS_FLAGS = "accurate_rnd+full_chroma_int+full_chroma_inp"
_TEXT_SUBTITLES = {"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text"}
_MP4_AUDIO = {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}
_MOV_AUDIO = {"aac", "mp3", "alac", "ac3", "eac3"}
_LONG_FILTER = 2000


@dataclass
class Colour:
    """The YUV matrix and range used to convert to RGB and back (None: RGB source)."""

    matrix: str | None
    range: str
    primaries: str | None = None
    transfer: str | None = None


@dataclass
class Plan:
    source: str
    info: MediaInfo
    codec: Codec
    times: FrameTimes
    first_frame: int
    seek: float | None
    trimmed: bool
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    channels: int
    colour: Colour
    output: str
    temporary: str
    """The file (or folder) written until the end; renamed to ``output`` when complete."""
    pattern: str | None = None
    """File name pattern of an image sequence (``name_%06d.png``)."""
    start_number: int = 1
    copied: list[tuple[int, list[str]]] = field(default_factory=list)
    """(input stream index, codec options) of the source streams muxed beside the video;
    ``{n}`` in the options stands for the output stream number."""
    notes: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return len(self.times)

    @property
    def raw_format(self) -> str:
        sixteen = self.codec.sixteen_bit
        return {(3, False): "rgb24", (4, False): "rgba", (3, True): "rgb48le",
                (4, True): "rgba64le"}[(self.channels, sixteen)]

    @property
    def dtype(self) -> str:
        return "<u2" if self.codec.sixteen_bit else "u1"

    def frame_bytes(self, size: tuple[int, int]) -> int:
        return size[0] * size[1] * self.channels * (2 if self.codec.sixteen_bit else 1)

    def decoder_args(self) -> list[str]:
        """ffmpeg arguments that write the chosen frames as raw RGB(A) to stdout."""
        return decoder_args(self.source, self.seek, self.frames, self.colour, self.raw_format)

    def encoder_args(self, *, crf: int | None, preset: str | None,
                     filter_file: str | None = None) -> list[str]:
        """ffmpeg arguments that read raw upscaled frames on stdin and write the temporary
        output, with the source's other streams copied beside the video."""
        width, height = self.out_size
        rate = self.times.frame_rate()
        args = ["-f", "rawvideo", "-pix_fmt", self.raw_format, "-s", f"{width}x{height}",
                "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", "pipe:0"]
        others = self.copied
        if others or not self.trimmed:
            if self.trimmed:
                start = (self.seek or 0.0) + self.times.seconds(0)
                length = self.times.end_seconds - self.times.seconds(0)
                args += [*seek_args(start), "-t", f"{length:.6f}"]
            args += ["-i", self.source]
        args += ["-map", "0:v:0"]
        suffix = os.path.splitext(self.output)[1].lower()
        for number, (stream, codec_args) in enumerate(others, start=1):
            args += ["-map", f"1:{stream}", *[a.replace("{n}", str(number)) for a in codec_args]]
        if others or not self.trimmed:
            args += ["-map_metadata", "1", "-map_chapters", "1" if not self.trimmed else "-1"]
        language = self.info.video.language
        if language and language != "und":
            args += ["-metadata:s:v:0", f"language={language}"]
        if filter_file is not None:
            args += ["-/filter:v", filter_file]
        else:
            args += ["-filter:v", self.video_filter()]
        alpha = self.channels == 4
        args += self.codec.encoder_args(alpha=alpha, crf=crf, preset=preset)
        if self.codec.name == "h265" and suffix in (".mp4", ".m4v", ".mov"):
            args += ["-tag:v", "hvc1"]
        args += ["-fps_mode", "passthrough", "-enc_time_base:v", "filter"]
        den = self.times.time_base.denominator
        if MUXERS.get(suffix) in ("mov", "mp4") and self.times.time_base.numerator == 1 \
                and den < 2**31:
            args += ["-video_track_timescale", str(den)]
        args += self._colour_tags()
        timecode = self.info.timecode
        if timecode and not self.trimmed:
            args += ["-timecode", timecode]
        args += ["-f", MUXERS[suffix], "-y", self.temporary]
        return args

    def video_filter(self) -> str:
        """settb/setpts (source timestamps) and the RGB to YUV conversion for the encoder."""
        time_base = self.times.time_base
        pts = self.times.pts
        if self.trimmed:
            pts = [p - pts[0] for p in pts]
        steps = [f"settb={time_base.numerator}/{time_base.denominator}"]
        if pts[0] != 0 or not self.times.constant_rate:
            # Constant-rate frames starting at 0 already have their times (frame n at n/rate,
            # exactly the source's ticks). Anything else gets each frame's own time; ffmpeg
            # before 7.1 then loses the last frame's duration (see pipeline._check_output).
            steps.append(f"setpts='{setpts_expression(pts)}'")
        alpha = self.channels == 4
        out_matrix = self.output_matrix()
        steps.append(f"scale=flags={_SWS_FLAGS}:out_color_matrix={_SCALE_MATRIX[out_matrix]}"
                     f":out_range={self.colour.range if self.colour.matrix else 'tv'}")
        steps.append(f"format={self.codec.pix_fmt(alpha)}")
        sar = self.info.video.sar
        if sar is not None and sar != 1:
            steps.append(f"setsar={sar.numerator}/{sar.denominator}")
        return ",".join(steps)

    def needs_filter_file(self) -> bool:
        return len(self.video_filter()) > _LONG_FILTER

    def output_matrix(self) -> str:
        if self.colour.matrix is not None:
            return self.colour.matrix
        return "bt709" if self.out_size[1] >= _HD_HEIGHT else "smpte170m"

    def _colour_tags(self) -> list[str]:
        matrix = self.output_matrix()
        tags = ["-colorspace", matrix,
                "-color_range", self.colour.range if self.colour.matrix else "tv"]
        if self.colour.primaries:
            tags += ["-color_primaries", self.colour.primaries]
        if self.colour.transfer:
            tags += ["-color_trc", self.colour.transfer]
        return tags

    def choose_streams(self, audio: bool, subtitles: bool) -> None:
        """Decide which source streams go beside the video (and how), into ``copied``."""
        if self.codec.sequence:
            if audio and self.info.of_kind("audio"):
                self.notes.append("an image sequence holds no sound; the audio was left out")
            return
        suffix = os.path.splitext(self.output)[1].lower()
        muxer = MUXERS[suffix]
        chosen = self.copied
        for stream in self.info.streams:
            if stream.kind == "audio" and audio:
                chosen.append((stream.index, self._audio_codec(stream.codec, muxer)))
            elif stream.kind == "subtitle" and subtitles:
                options = self._subtitle_codec(stream.codec, muxer)
                if options is not None:
                    chosen.append((stream.index, options))
            elif stream.kind == "attachment" and muxer == "matroska" and subtitles:
                chosen.append((stream.index, ["-c:{n}", "copy"]))

    def _audio_codec(self, codec: str, muxer: str) -> list[str]:
        fits = (muxer == "matroska" or codec.startswith("pcm_") and muxer == "mov"
                or (codec in _MP4_AUDIO if muxer == "mp4" else codec in _MOV_AUDIO))
        if fits:
            return ["-c:{n}", "copy"]
        if codec.startswith("pcm_") or codec == "flac":
            self.notes.append(f"{codec} audio cannot go into {muxer}; stored as ALAC "
                              "(lossless)")
            return ["-c:{n}", "alac"]
        self.notes.append(f"{codec} audio cannot go into {muxer}; re-encoded as AAC "
                          "(use .mkv to keep it as it is)")
        return ["-c:{n}", "aac", "-b:{n}", "320k"]

    def _subtitle_codec(self, codec: str, muxer: str) -> list[str] | None:
        if muxer == "matroska":
            return ["-c:{n}", "srt" if codec == "mov_text" else "copy"]
        if codec == "mov_text":
            return ["-c:{n}", "copy"]
        if codec in _TEXT_SUBTITLES:
            return ["-c:{n}", "mov_text"]
        self.notes.append(f"{codec} subtitles cannot go into {muxer} and were left out "
                          "(use .mkv to keep them)")
        return None


def decoder_args(source: str, seek: float | None, frames: int, colour: Colour,
                 raw_format: str) -> list[str]:
    """ffmpeg arguments that decode ``frames`` frames from ``seek`` as raw ``raw_format``."""
    scale = f"scale=flags={_SWS_FLAGS}"
    if colour.matrix is not None:
        scale += f":in_color_matrix={_SCALE_MATRIX[colour.matrix]}:in_range={colour.range}"
    return [*seek_args(seek), "-i", source, "-map", "0:v:0", "-frames:v", str(frames),
            "-an", "-sn", "-dn", "-fps_mode", "passthrough",
            "-vf", f"{scale},format={raw_format}", "-f", "rawvideo", "-pix_fmt", raw_format, "-"]


def colour_of(video: VideoStream) -> Colour:
    """The conversion a player would use for this source (guessed from its size when the
    file does not say), so upscaled colours match the original."""
    if video.is_rgb:
        return Colour(None, "pc")
    matrix = video.colorspace if video.colorspace in _SCALE_MATRIX else None
    if matrix is None:
        matrix = "bt709" if video.height >= _HD_HEIGHT else "smpte170m"
    full = video.color_range == "pc" or video.pix_fmt.startswith("yuvj")
    return Colour(matrix, "pc" if full else "tv", video.primaries, video.transfer)


def temporary_name(path: str) -> str:
    """A hidden name beside ``path`` that nobody mistakes for the finished file."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.{secrets.token_hex(4)}.part")


def sequence_layout(output: str, codec: Codec) -> tuple[str, str]:
    """(folder, file pattern) of an image sequence output."""
    suffix = SEQUENCE_SUFFIX[codec.name]
    if "%" in os.path.basename(output):
        folder, pattern = os.path.split(os.path.abspath(output))
        try:
            pattern % 1
        except (TypeError, ValueError):
            msg = f"{output!r} is not a usable frame pattern; write it like out/frame_%06d.png"
            raise VideoError(msg) from None
        return folder, pattern
    folder = os.path.abspath(output.rstrip("/\\"))
    return folder, f"{os.path.basename(folder)}_%06d{suffix}"


def fraction_text(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"
