"""What is in a video file: streams, sizes, colours, and the exact time of every frame.

imageio-ffmpeg ships ffmpeg but not ffprobe, so the stream list comes from the report that
``ffmpeg -i`` prints, and frame times from a ``framecrc`` pass that decodes the video without
converting it (exact presentation timestamps in the stream's own time base).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

from . import ffmpeg
from .ffmpeg import VideoError

_STREAM = re.compile(
    r"^\s*Stream #(\d+):(\d+)(?:\[0x[0-9a-fA-F]+\])?(?:\(([^)]*)\))?: (\w+): (.*)$"
)
_DURATION = re.compile(r"^\s*Duration: ([0-9:.]+|N/A)(?:, start: (-?[0-9.]+))?")
_SIZE = re.compile(r"^(\d+)x(\d+)(?: \[SAR (\d+):(\d+) DAR \d+:\d+\])?")
_PIXFMT = re.compile(r"^([a-z0-9_]+)(?:\((.*)\))?$")
_METADATA = re.compile(r"^\s+([^:]+?)\s*: (.*)$")
_ALPHA = re.compile(r"^(yuva|gbrap|rgba|bgra|argb|abgr|ya\d|rgba64|bgra64|pal8)")


@dataclass
class Stream:
    """One stream of the input as ffmpeg reports it."""

    index: int
    kind: str
    """video, audio, subtitle, data or attachment."""
    codec: str
    language: str | None = None
    attached_pic: bool = False
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class VideoStream(Stream):
    width: int = 0
    height: int = 0
    pix_fmt: str = ""
    color_range: str | None = None
    """"tv" (limited) or "pc" (full), None when the file does not say."""
    colorspace: str | None = None
    primaries: str | None = None
    transfer: str | None = None
    field_order: str | None = None
    sar: Fraction | None = None

    @property
    def has_alpha(self) -> bool:
        return bool(_ALPHA.match(self.pix_fmt))

    @property
    def bit_depth(self) -> int:
        name = self.pix_fmt
        if name.startswith(("rgb48", "bgr48", "rgba64", "bgra64", "gray16", "ya16")):
            return 16
        found = re.search(r"p(\d{1,2})(?:le|be)?$", name) or re.search(r"^gray(\d{1,2})", name)
        return int(found.group(1)) if found else 8

    @property
    def is_rgb(self) -> bool:
        return self.pix_fmt.startswith(("rgb", "bgr", "gbr", "argb", "abgr", "pal8", "0rgb"))

    @property
    def interlaced(self) -> bool:
        return self.field_order not in (None, "progressive", "unknown")


@dataclass
class MediaInfo:
    path: str
    duration: float | None
    start: float
    streams: list[Stream]
    metadata: dict[str, str]

    @property
    def video(self) -> VideoStream:
        """The first real video stream (not cover art)."""
        for stream in self.streams:
            if isinstance(stream, VideoStream) and not stream.attached_pic:
                return stream
        msg = f"{self.path} has no video stream"
        raise VideoError(msg)

    def of_kind(self, kind: str) -> list[Stream]:
        return [s for s in self.streams if s.kind == kind]

    @property
    def timecode(self) -> str | None:
        """The start timecode the file carries (global or on its video or data stream)."""
        for source in (self.metadata, *(s.metadata for s in self.streams)):
            value = source.get("timecode")
            if value:
                return value
        return None


@dataclass
class FrameTimes:
    """Presentation time of every decoded frame, in ticks of ``time_base`` seconds."""

    time_base: Fraction
    pts: list[int]
    durations: list[int]
    size: tuple[int, int] | None = None
    """Frame size as decoded (after the file's rotation is applied)."""

    def __len__(self) -> int:
        return len(self.pts)

    def seconds(self, index: int) -> float:
        return float(self.pts[index] * self.time_base)

    @property
    def end_seconds(self) -> float:
        """When the last frame stops showing (its start plus its duration)."""
        if not self.pts:
            return 0.0
        return float((self.pts[-1] + max(self.durations[-1], 0)) * self.time_base)

    def frame_rate(self) -> Fraction:
        """The nominal rate: the commonest frame step (exact for constant-rate video)."""
        steps = [b - a for a, b in zip(self.pts, self.pts[1:], strict=False) if b > a]
        if not steps:
            step = self.durations[0] if self.durations and self.durations[0] > 0 else 0
            if step <= 0:
                return Fraction(25)
            steps = [step]
        common = max(set(steps), key=steps.count)
        return 1 / (common * self.time_base)

    @property
    def constant_rate(self) -> bool:
        steps = {b - a for a, b in zip(self.pts, self.pts[1:], strict=False)}
        return len(steps) <= 1


def probe(path: str) -> MediaInfo:
    """Read the stream list of a media file."""
    text = ffmpeg.info_text(path)
    info = parse_info(path, text)
    if info is None:
        raise VideoError(ffmpeg.failure(f"read {path}", text))
    return info


def parse_info(path: str, text: str) -> MediaInfo | None:
    """Parse what ``ffmpeg -i`` printed for input #0; None when it could not open the file."""
    lines = text.splitlines()
    try:
        first = next(i for i, line in enumerate(lines) if line.startswith("Input #0"))
    except StopIteration:
        return None
    duration: float | None = None
    start = 0.0
    streams: list[Stream] = []
    metadata: dict[str, str] = {}
    target: dict[str, str] | None = None
    target_indent = 0
    for line in lines[first + 1:]:
        if line.startswith(("Input #", "Output #", "At least one output")):
            break
        indent = len(line) - len(line.lstrip(" "))
        stripped = line.strip()
        if stripped == "Metadata:":
            target = metadata if not streams or indent <= 2 else streams[-1].metadata
            target_indent = indent
            continue
        match = _DURATION.match(line)
        if match:
            target = None
            duration = _clock(match.group(1))
            start = float(match.group(2) or 0.0)
            continue
        match = _STREAM.match(line)
        if match:
            target = None
            streams.append(_stream(match))
            continue
        if target is not None and indent > target_indent:
            item = _METADATA.match(line)
            if item:
                target.setdefault(item.group(1).strip().lower(), item.group(2).strip())
            continue
        target = None
    return MediaInfo(path=path, duration=duration, start=start, streams=streams,
                     metadata=metadata)


def frame_times(path: str, *, seek: float | None = None, frames: int | None = None) -> FrameTimes:
    """Decode the first video stream (from ``seek`` seconds, at most ``frames`` frames) and
    return each frame's presentation time. Timestamps are those ffmpeg gives the stream when
    it reads the file with the same ``seek``: the decoder pipeline below uses the same."""
    args = [*seek_args(seek), "-i", path, "-map", "0:v:0"]
    if frames is not None:
        args += ["-frames:v", str(frames)]
    args += ["-c:v", "wrapped_avframe", "-fps_mode", "passthrough",
             "-enc_time_base:v", "demux", "-f", "framecrc", "-"]
    return parse_framecrc(ffmpeg.run(args, what=f"read the frames of {path}"))


def parse_framecrc(text: str) -> FrameTimes:
    time_base = Fraction(1, 1)
    size: tuple[int, int] | None = None
    pts: list[int] = []
    durations: list[int] = []
    for line in text.splitlines():
        if line.startswith("#tb 0:"):
            time_base = Fraction(line.split(":", 1)[1].strip())
            continue
        if line.startswith("#dimensions 0:"):
            width, height = line.split(":", 1)[1].strip().split("x")
            size = (int(width), int(height))
            continue
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 5 and parts[0] == "0":
            pts.append(int(parts[2]))
            durations.append(int(parts[3]))
    order = sorted(range(len(pts)), key=pts.__getitem__)
    return FrameTimes(time_base, [pts[i] for i in order], [durations[i] for i in order], size)


def seek_args(seek: float | None) -> list[str]:
    return [] if not seek else ["-ss", f"{seek:.6f}"]


def _stream(match: re.Match[str]) -> Stream:
    index = int(match.group(2))
    language = match.group(3)
    kind = match.group(4).lower()
    details = match.group(5)
    parts = _split_top(details)
    codec = parts[0].split(" ")[0] if parts else "unknown"
    if kind != "video":
        return Stream(index=index, kind=kind, codec=codec, language=language)
    stream = VideoStream(index=index, kind=kind, codec=codec, language=language,
                         attached_pic="(attached pic)" in details)
    for part in parts[1:]:
        size = _SIZE.match(part)
        if size and not stream.width:
            stream.width, stream.height = int(size.group(1)), int(size.group(2))
            if size.group(3):
                num, den = int(size.group(3)), int(size.group(4))
                stream.sar = Fraction(num, den) if num and den else None
            continue
        pixfmt = _PIXFMT.match(part)
        if pixfmt and not stream.pix_fmt and not stream.width:
            stream.pix_fmt = pixfmt.group(1)
            _colour(stream, pixfmt.group(2) or "")
    return stream


def _colour(stream: VideoStream, text: str) -> None:
    for item in (t.strip() for t in text.split(",")):
        if item in ("tv", "pc"):
            stream.color_range = item
        elif item in ("progressive", "unknown") or "first" in item:
            stream.field_order = item
        elif item:
            names = item.split("/")
            if len(names) == 1:
                names = names * 3
            known = [None if n in ("unknown", "reserved") else n for n in names]
            stream.colorspace, stream.primaries, stream.transfer = (known + [None] * 3)[:3]


def _split_top(text: str) -> list[str]:
    """Split at commas that are not inside brackets."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if current:
        parts.append("".join(current).strip())
    return parts


def _clock(text: str) -> float | None:
    if text == "N/A":
        return None
    hours, minutes, seconds = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
