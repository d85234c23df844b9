"""Video upscaling: ``realscale video`` and the pipeline behind it.

    from realscale import Upscaler
    from realscale.video import VideoJob, upscale_video

    upscale_video(VideoJob("in.mp4", "out.mov"), Upscaler("realesr-animevideov3"))

decodes with ffmpeg, upscales every frame in order and encodes ProRes, H.264, H.265 or a
16-bit image sequence, copying the source's audio and subtitles. ``VideoJob(...,
temporal=True)`` (``--temporal``) blends each frame with the motion-compensated previous
output where the motion is reliable, so still content stops flickering (temporal.py).
Importing this package does not import torch (the command line imports it at every start);
the names below that need the pipeline load it on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .codecs import CODECS, Codec
from .ffmpeg import VideoError

if TYPE_CHECKING:
    from .frames import read_frames
    from .pipeline import DEFAULT_VIDEO_MODEL, Progress, VideoJob, VideoResult, upscale_video

__all__ = [
    "CODECS", "DEFAULT_VIDEO_MODEL", "Codec", "Progress", "VideoError", "VideoJob",
    "VideoResult", "read_frames", "upscale_video",
]
_LAZY = {"read_frames": "frames", "DEFAULT_VIDEO_MODEL": "pipeline", "Progress": "pipeline",
         "VideoJob": "pipeline", "VideoResult": "pipeline", "upscale_video": "pipeline"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
