"""The output codecs ``realscale video`` writes, and what each needs from the pipeline."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .ffmpeg import VideoError


@dataclass(frozen=True)
class Codec:
    name: str
    label: str
    sixteen_bit: bool
    """Decode and upscale at 16 bits per channel (so nothing is lost before a deep format)."""
    alpha: bool
    """Keeps an alpha channel when the source has one."""
    sequence: bool = False
    """Writes numbered image files instead of one video file."""
    quality: bool = False
    """Takes --crf."""
    containers: tuple[str, ...] = ()
    even_size: bool = False
    """Chroma subsampling needs an even width and height."""

    def encoder_args(self, *, alpha: bool, crf: int | None, preset: str | None) -> list[str]:
        """ffmpeg output options for the video stream (after the pixel-format filter)."""
        if self.name == "prores":
            return ["-c:v", "prores_ks", "-profile:v", "3", "-vendor", "apl0"]
        if self.name == "prores4444":
            args = ["-c:v", "prores_ks", "-profile:v", "4", "-vendor", "apl0"]
            return args + (["-alpha_bits", "16"] if alpha else [])
        if self.name == "h264":
            return ["-c:v", "libx264", "-crf", str(18 if crf is None else crf),
                    "-preset", preset or "medium"]
        if self.name == "h265":
            return ["-c:v", "libx265", "-crf", str(20 if crf is None else crf),
                    "-preset", preset or "medium", "-x265-params", "log-level=error"]
        msg = f"{self.name} is not a video codec"
        raise ValueError(msg)

    def pix_fmt(self, alpha: bool) -> str:
        """The pixel format the encoder is fed (after RGB to YUV conversion)."""
        return {
            "prores": "yuv422p10le",
            "prores4444": "yuva444p10le" if alpha else "yuv444p10le",
            "h264": "yuv420p",
            "h265": "yuv420p10le",
        }[self.name]


CODECS: dict[str, Codec] = {
    c.name: c for c in (
        Codec("prores", "ProRes 422 HQ", True, False, containers=(".mov", ".mkv"),
              even_size=True),
        Codec("prores4444", "ProRes 4444 (keeps alpha)", True, True,
              containers=(".mov", ".mkv")),
        Codec("h264", "H.264 (8-bit 4:2:0, --crf)", False, False, quality=True,
              containers=(".mp4", ".m4v", ".mov", ".mkv"), even_size=True),
        Codec("h265", "H.265 (10-bit 4:2:0, --crf)", True, False, quality=True,
              containers=(".mp4", ".m4v", ".mov", ".mkv"), even_size=True),
        Codec("png", "16-bit PNG image sequence", True, True, sequence=True),
        Codec("tiff", "16-bit TIFF image sequence", True, True, sequence=True),
    )
}
ALIASES = {
    "prores-hq": "prores", "prores422hq": "prores", "prores-422-hq": "prores",
    "prores-4444": "prores4444", "x264": "h264", "avc": "h264", "x265": "h265", "hevc": "h265",
    "png16": "png", "tif": "tiff", "tiff16": "tiff",
}
MUXERS = {".mov": "mov", ".mp4": "mp4", ".m4v": "mp4", ".mkv": "matroska"}
SEQUENCE_SUFFIX = {"png": ".png", "tiff": ".tif"}
DEFAULT_BY_SUFFIX = {".mov": "prores", ".mp4": "h264", ".m4v": "h264", ".mkv": "h264",
                     ".png": "png", ".tif": "tiff", ".tiff": "tiff", "": "png"}


def choose(output: str, requested: str | None) -> Codec:
    """The codec for ``output``: as asked, else the default for its suffix."""
    suffix = os.path.splitext(output.rstrip("/\\"))[1].lower()
    if requested:
        name = ALIASES.get(requested.lower(), requested.lower())
        if name not in CODECS:
            msg = (f"--codec {requested!r} is not one realscale writes; choose one of "
                   f"{', '.join(CODECS)}")
            raise VideoError(msg)
        codec = CODECS[name]
    elif suffix in DEFAULT_BY_SUFFIX:
        codec = CODECS[DEFAULT_BY_SUFFIX[suffix]]
    else:
        msg = (f"cannot tell the output format from {output!r}; end it in .mov, .mp4 or .mkv, "
               "or give --codec png/tiff and a folder for an image sequence")
        raise VideoError(msg)
    if codec.sequence:
        if suffix in MUXERS:
            msg = (f"{codec.label} writes a folder of images, but {output!r} names a "
                   f"{suffix} file; give a folder (or a pattern like out/frame_%06d.png)")
            raise VideoError(msg)
    elif suffix not in codec.containers:
        allowed = ", ".join(codec.containers)
        msg = f"{codec.label} cannot go into a {suffix or 'folder'} output; use {allowed}"
        raise VideoError(msg)
    return codec
