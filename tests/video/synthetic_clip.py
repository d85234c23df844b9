"""A clip with known motion made from real photographs (tests/data): a still background,
independent compression noise in every frame, an object moving across it, a scene cut.

Used by the temporal tests and by bench/temporal.py. Every frame knows which pixels the object
covers, so "did not move", "the moving object" and "the background it just uncovered" are exact.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

DATA = Path(__file__).resolve().parents[1] / "data"
BACKGROUNDS = (DATA / "realesrgan-inputs" / "OST_009.png",
               DATA / "realesrgan-inputs" / "00003.png")
OBJECT = DATA / "set5" / "HR" / "butterfly.png"


@dataclass
class SyntheticClip:
    frames: list[np.ndarray]
    """HxWx3 uint8 RGB, each compressed on its own (JPEG of the frame plus grain)."""
    covered: list[np.ndarray]
    """Per frame, HxW bool: the pixels the object covers (any part of it)."""
    cut: int
    """Index of the first frame after the scene cut."""

    def still(self, index: int, margin: int = 8) -> np.ndarray:
        """Pixels whose content is the same in frame ``index - 1`` and ``index``: not covered
        by the object in either, grown by ``margin`` pixels (the object's JPEG blocks)."""
        moving = self.covered[index] | self.covered[index - 1]
        kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
        return ~cv2.dilate(moving.astype(np.uint8), kernel).astype(bool)

    def moving(self, index: int) -> np.ndarray:
        """The object in frame ``index`` and the background it uncovered since the last one."""
        return self.covered[index] | (self.covered[index - 1] & ~self.covered[index])


def _photo(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def make_clip(frames: int = 24, size: tuple[int, int] = (192, 144), *, cut: int | None = None,
              speed: tuple[float, float] = (2.6, 0.7), object_size: tuple[int, int] = (56, 40),
              quality: tuple[int, int] = (70, 90), grain: float = 1.5, moving: bool = True,
              seed: int = 0) -> SyntheticClip:
    """``frames`` frames of ``size`` (width, height): a crop of one photograph with a piece of
    another moving across it by ``speed`` pixels a frame (sub-pixel, resampled; none without
    ``moving``), each frame with its own grain and JPEG quality; at ``cut`` (default: two
    thirds in; past the end for none) the scene changes to another photograph and the object
    starts again elsewhere."""
    width, height = size
    cut = frames * 2 // 3 if cut is None else cut
    rng = np.random.default_rng(seed)
    scenes = [_photo(path)[:height, :width].astype(np.float32) for path in BACKGROUNDS]
    for scene in scenes:
        if scene.shape[:2] != (height, width):
            msg = f"the photographs are smaller than {width}x{height}"
            raise ValueError(msg)
    ob_w, ob_h = object_size
    thing = _photo(OBJECT)[60:60 + ob_h, 80:80 + ob_w].astype(np.float32)
    alpha = np.ones((ob_h, ob_w), np.float32)
    clip = SyntheticClip(frames=[], covered=[], cut=cut)
    for index in range(frames):
        scene = scenes[0] if index < cut else scenes[1]
        step = index if index < cut else index - cut
        start = (8.0, 20.0) if index < cut else (width - ob_w - 10.0, 50.0)
        direction = 1.0 if index < cut else -1.0
        x = start[0] + direction * speed[0] * step
        y = start[1] + speed[1] * step
        matrix = np.float32([[1, 0, x], [0, 1, y]])
        placed = cv2.warpAffine(thing, matrix, (width, height), flags=cv2.INTER_CUBIC)
        cover = cv2.warpAffine(alpha if moving else 0 * alpha, matrix, (width, height),
                               flags=cv2.INTER_LINEAR)
        frame = scene * (1 - cover[..., None]) + placed * cover[..., None]
        frame += rng.normal(0.0, grain, frame.shape).astype(np.float32)
        pixels = np.clip(frame + 0.5, 0, 255).astype(np.uint8)
        level = int(rng.integers(quality[0], quality[1] + 1))
        ok, data = cv2.imencode(".jpg", pixels[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, level])
        assert ok
        decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]
        clip.frames.append(np.ascontiguousarray(decoded))
        clip.covered.append(cover > 0)
    return clip


def write_lossless(clip: SyntheticClip, path: Path, *, ten_bit: bool = False,
                   rate: int = 24) -> Path:
    """The clip as a lossless RGB video (FFV1 in Matroska), 8-bit, or 10-bit with real values
    in the two low bits; decoding gives back exactly these frames."""
    from realscale.video import ffmpeg

    height, width = clip.frames[0].shape[:2]
    frames = np.stack(clip.frames)
    if ten_bit:
        rng = np.random.default_rng(1)
        ten = frames.astype(np.uint16) * 4 + rng.integers(0, 4, frames.shape, dtype=np.uint16)
        raw, pix_fmt, coded = (ten << 6).astype("<u2").tobytes(), "rgb48le", "gbrp10le"
    else:
        raw, pix_fmt, coded = frames.tobytes(), "rgb24", "gbrp"
    command = [*ffmpeg.base_command(), "-f", "rawvideo", "-pix_fmt", pix_fmt, "-s",
               f"{width}x{height}", "-r", str(rate), "-i", "-", "-c:v", "ffv1",
               "-pix_fmt", coded, "-y", str(path)]
    subprocess.run(command, input=raw, check=True, capture_output=True)
    return path
