"""Choosing frames by number, and reading them as realscale's video pipeline sees them."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from . import ffmpeg
from .ffmpeg import VideoError
from .plan import colour_of, decoder_args
from .probe import FrameTimes, frame_times, probe


def select_frames(source: str, start_frame: int = 0,
                  frames: int | None = None) -> tuple[float | None, FrameTimes]:
    """(seek, times): where to seek so that decoding starts exactly at ``start_frame`` (0-based,
    in presentation order), and the times of the frames from there (at most ``frames``)."""
    if start_frame < 0 or (frames is not None and frames < 1):
        msg = "the start frame must be 0 or more and the frame count 1 or more"
        raise VideoError(msg)
    seek = None
    if start_frame > 0:
        # Seek half a frame before the first wanted frame: ffmpeg decodes from the keyframe
        # before it and drops every frame earlier than the seek point, frame-accurately.
        every = frame_times(source, frames=start_frame + 1)
        if len(every) <= start_frame:
            msg = (f"frame {start_frame} is past the end of {os.path.basename(source)} "
                   f"({len(every)} frames)")
            raise VideoError(msg)
        seek = (every.seconds(start_frame - 1) + every.seconds(start_frame)) / 2
    times = frame_times(source, seek=seek, frames=frames)
    if not times.pts:
        msg = f"{os.path.basename(source)} has no video frames"
        raise VideoError(msg)
    return seek, times


def read_frames(source: str, *, start_frame: int = 0, frames: int | None = None,
                sixteen_bit: bool = False) -> Iterator[np.ndarray]:
    """Decode frames to HxWx3 RGB (uint8, or uint16 with ``sixteen_bit``) with the colour
    conversion the pipeline uses, one at a time."""
    video = probe(source).video
    seek, times = select_frames(source, start_frame, frames)
    width, height = times.size or (video.width, video.height)
    raw = "rgb48le" if sixteen_bit else "rgb24"
    dtype = np.dtype("<u2" if sixteen_bit else "u1")
    process = ffmpeg.Process(decoder_args(source, seek, len(times), colour_of(video), raw),
                             what=f"read {source}", stdin=False, stdout=True)
    size = width * height * 3 * dtype.itemsize
    try:
        assert process.popen.stdout is not None
        while True:
            data = process.popen.stdout.read(size)
            if len(data) < size:
                break
            yield np.frombuffer(data, dtype).reshape(height, width, 3)
    except BaseException:
        process.kill()
        raise
    process.finish()
