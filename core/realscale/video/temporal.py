"""Temporal consistency: each upscaled frame is blended with the previous output, moved along
the motion of the input, wherever that motion is known to be right.

A network upscales every frame on its own, so the detail it invents changes from frame to
frame with the compression noise: still backgrounds shimmer. This filter keeps no more than one
previous input and one previous output and, for each new frame:

1. predicts the current input from the previous one twice, without motion and along the
   optical flow (OpenCV's DIS, current -> previous, at input resolution), and keeps per pixel
   the prediction with the smaller local error (mean absolute difference over 5x5 pixels);
2. trusts a pixel when that error is below the noise of a compressed source, its local mean
   did not change (a fade or a light change), and, on the flow path, the flow agrees with the
   flow back (forward-backward check); distrust spreads two input pixels, so the edge of a
   moving object and the background it uncovers get the per-frame result;
3. warps the previous output with the same prediction (the flow scaled to the output) and
   blends: ``out = per_frame + weight * (previous - per_frame)``; ``weight`` is up to
   ``still`` on pixels that did not move and up to ``moving`` on pixels that did.

A frame where most pixels cannot be trusted is a scene cut: its output is the per-frame result,
unchanged, and the filter starts again from it. Untrusted pixels are exactly per-frame too.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from .ffmpeg import VideoError


@dataclass(frozen=True)
class TemporalSettings:
    """The filter's parameters; errors are in 8-bit levels (0-255) whatever the bit depth."""

    still: float = 0.75
    """Weight of the previous output on a pixel that did not move."""
    moving: float = 0.5
    """Weight of the previous output on a pixel that moved (warped along the flow)."""
    smooth: float = 1.5
    """Sigma of the Gaussian blur of the input frames before they are compared: compression
    noise is mostly finer than this, a change of content is not."""
    error_low: float = 5.0
    error_high: float = 10.0
    """Local mean absolute error of the (blurred) input's prediction: full weight below
    error_low, none above error_high."""
    change_low: float = 2.0
    change_high: float = 4.0
    """Change of the local mean (signed difference, Gaussian blur of sigma ``change_sigma``):
    a fade or a light change above change_high gets the per-frame result, not a lagging one."""
    change_sigma: float = 3.0
    spread: int = 2
    """Input pixels by which distrust spreads (edges of moving objects, uncovered background)."""
    cut_fraction: float = 0.5
    """A frame where more than this share of pixels cannot be trusted is a scene cut."""
    still_fraction: float = 0.995
    """A frame where this share of pixels is explained without motion skips the optical flow."""
    flow_preset: str = "fast"
    """DIS optical flow preset: ultrafast, fast or medium."""


@dataclass(frozen=True)
class StepReport:
    """What the last step did (for the bench and the tests)."""

    cut: bool
    """The frame was taken as a scene cut (or was the first): the output is the per-frame one."""
    blended: float
    """Share of input pixels that took something from the previous output."""
    flow: bool
    """The optical flow was computed (some pixels moved)."""


class TemporalFilter:
    """Blends each upscaled frame with the motion-compensated previous output; feed it the
    frames in order with ``step``. Holds one input and one output frame."""

    def __init__(self, settings: TemporalSettings | None = None) -> None:
        self.settings = settings or TemporalSettings()
        self._cv2 = require_opencv()
        self._dis: Any = None
        self._prev: np.ndarray | None = None
        self._prev_gray: np.ndarray | None = None
        self._prev_out: np.ndarray | None = None
        self.last = StepReport(cut=True, blended=0.0, flow=False)

    def reset(self) -> None:
        """Forget the previous frame (the next one is taken as a cut)."""
        self._prev = self._prev_gray = self._prev_out = None

    def step(self, frame: np.ndarray, upscaled: np.ndarray) -> np.ndarray:
        """The output for ``frame`` (HxWxC input) given its per-frame upscale."""
        current = _levels(frame)
        if self.settings.smooth > 0:
            current = self._cv2.GaussianBlur(current, (0, 0), self.settings.smooth)
            if current.ndim == 2:
                current = current[..., None]
        gray = self._gray(current)
        prev, prev_gray, prev_out = self._prev, self._prev_gray, self._prev_out
        self._prev, self._prev_gray = current, gray
        if (prev is None or prev_gray is None or prev_out is None
                or prev.shape != current.shape or prev_out.shape != upscaled.shape
                or prev_out.dtype != upscaled.dtype):
            return self._restart(upscaled)
        weight, flow, cut = self._trust(prev, current, prev_gray, gray)
        if cut or not self._cv2.countNonZero(weight):
            return self._restart(upscaled, cut=cut)
        predicted = prev_out if flow is None else self._warp(prev_out, flow)
        out = _blend(self._cv2, upscaled, predicted, weight)
        self._prev_out = out
        self.last = StepReport(cut=False, blended=float(np.count_nonzero(weight)) / weight.size,
                               flow=flow is not None)
        return out

    def _restart(self, upscaled: np.ndarray, *, cut: bool = True) -> np.ndarray:
        self._prev_out = upscaled
        self.last = StepReport(cut=cut, blended=0.0, flow=False)
        return upscaled

    def _gray(self, levels: np.ndarray) -> np.ndarray:
        cv2 = self._cv2
        colour = levels[..., :3]
        if colour.shape[2] < 3:
            gray = colour[..., 0]
        else:
            gray = cv2.cvtColor(np.ascontiguousarray(colour), cv2.COLOR_RGB2GRAY)
        return np.clip(gray + 0.5, 0, 255).astype(np.uint8)

    def _trust(self, prev: np.ndarray, current: np.ndarray, prev_gray: np.ndarray,
               gray: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, bool]:
        """(weight per input pixel, flow where it is used (zero elsewhere) or None where no
        pixel moved, scene cut)."""
        cv2, s = self._cv2, self.settings
        still_error = _local_error(cv2, current, prev)
        delta = current - prev
        flow = None
        usable = moving = None
        height, width = gray.shape
        if (min(height, width) >= 16
                and np.count_nonzero(still_error <= s.error_low) < s.still_fraction * gray.size):
            backward = self._flow(gray, prev_gray)
            forward = self._flow(prev_gray, gray)
            grid_x, grid_y = _grid(width, height)
            map_x, map_y = grid_x + backward[..., 0], grid_y + backward[..., 1]
            moved_prev = cv2.remap(prev, map_x, map_y, cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
            if moved_prev.ndim == 2:
                moved_prev = moved_prev[..., None]
            flow_error = _local_error(cv2, current, moved_prev)
            use_flow = flow_error + 0.5 < still_error
            if np.any(use_flow):
                back = cv2.remap(forward, map_x, map_y, cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
                consistent = (_square(backward + back)
                              <= 0.01 * (_square(backward) + _square(back)) + 0.5)
                moving = use_flow
                usable = ~moving | consistent
                still_error = np.where(moving, flow_error, still_error)
                delta = np.where(moving[..., None], current - moved_prev, delta)
                flow = backward * moving[..., None]
        error = still_error
        change = _channel_max(cv2, np.abs(cv2.GaussianBlur(delta, (0, 0), s.change_sigma)))
        weight = _ramp(error, s.error_low, s.error_high) * _ramp(change, s.change_low,
                                                                 s.change_high)
        trusted = error < s.error_high
        if usable is not None:
            weight *= usable
            trusted &= usable
        if moving is not None:
            weight *= np.where(moving, np.float32(s.moving), np.float32(s.still))
        else:
            weight *= np.float32(s.still)
        if np.count_nonzero(trusted) < (1 - s.cut_fraction) * trusted.size:
            return weight, None, True
        if s.spread > 0:
            kernel = np.ones((2 * s.spread + 1, 2 * s.spread + 1), np.uint8)
            weight = cv2.erode(weight, kernel, borderType=cv2.BORDER_REPLICATE)
        return weight.astype(np.float32), flow, False

    def _flow(self, frame: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Per pixel of ``frame``, where it came from in ``reference`` (pixels, x and y)."""
        if self._dis is None:
            name = f"DISOPTICAL_FLOW_PRESET_{self.settings.flow_preset.upper()}"
            self._dis = self._cv2.DISOpticalFlow_create(getattr(self._cv2, name))
        return self._dis.calc(frame, reference, None)

    def _warp(self, image: np.ndarray, flow: np.ndarray) -> np.ndarray:
        """The previous output moved along the input's flow, scaled to the output. Only the
        rows and columns where something moved are resampled; the rest is copied."""
        cv2 = self._cv2
        out_h, out_w = image.shape[:2]
        in_h, in_w = flow.shape[:2]
        rows = np.flatnonzero(np.any(flow, axis=(1, 2)))
        columns = np.flatnonzero(np.any(flow, axis=(0, 2)))
        if rows.size == 0:
            return image
        scale_y, scale_x = out_h / in_h, out_w / in_w
        # Every output pixel whose bilinear flow reads a moved input pixel, at any scale.
        top = max(0, int(np.floor((rows[0] - 1) * scale_y - 1)))
        bottom = min(out_h, int(np.ceil((rows[-1] + 2) * scale_y + 1)))
        left = max(0, int(np.floor((columns[0] - 1) * scale_x - 1)))
        right = min(out_w, int(np.ceil((columns[-1] + 2) * scale_x + 1)))
        # The flow at every output pixel (bilinear, pixel centres), in output pixels, plus
        # the pixel's own position: where to read the previous output.
        flow_out = cv2.resize(flow, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        where = flow_out[top:bottom, left:right]
        where[..., 0] *= np.float32(scale_x)
        where[..., 0] += np.arange(left, right, dtype=np.float32)[None, :]
        where[..., 1] *= np.float32(scale_y)
        where[..., 1] += np.arange(top, bottom, dtype=np.float32)[:, None]
        moved = cv2.remap(image, where, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out = image.copy()
        out[top:bottom, left:right] = moved.reshape(out[top:bottom, left:right].shape)
        return out


def require_opencv() -> Any:
    """The cv2 module, or a VideoError that says how to install it."""
    try:
        import cv2
    except ImportError:
        msg = ("--temporal needs OpenCV: pip install 'realscale[video]' (or "
               "opencv-python-headless) in realscale's environment")
        raise VideoError(msg) from None
    return cv2


_MAX_LEVEL = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def _levels(frame: np.ndarray) -> np.ndarray:
    """The frame as float32 in 8-bit levels, HxWxC."""
    pixels = frame if frame.ndim == 3 else frame[..., None]
    top = _MAX_LEVEL.get(pixels.dtype)
    if top is None:
        return np.clip(pixels, 0.0, 1.0).astype(np.float32) * np.float32(255.0)
    return pixels.astype(np.float32) * np.float32(255.0 / top)


def _local_error(cv2: Any, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean over 5x5 pixels of the largest absolute difference of the channels."""
    diff = _channel_max(cv2, cv2.absdiff(a, b))
    return cv2.blur(diff, (5, 5), borderType=cv2.BORDER_REPLICATE)


def _channel_max(cv2: Any, image: np.ndarray) -> np.ndarray:
    """The largest of the channels, per pixel (cv2: numpy reduces a last axis of 3 slowly)."""
    if image.ndim == 2:
        return image
    return functools.reduce(cv2.max, cv2.split(image))


def _square(flow: np.ndarray) -> np.ndarray:
    """Squared length of each flow vector."""
    return flow[..., 0] * flow[..., 0] + flow[..., 1] * flow[..., 1]


def _ramp(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """1 at or below ``low``, 0 at or above ``high``, linear between."""
    return np.clip((high - values) / np.float32(high - low), 0.0, 1.0).astype(np.float32)


def _grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    return (np.broadcast_to(np.arange(width, dtype=np.float32)[None, :], (height, width)),
            np.broadcast_to(np.arange(height, dtype=np.float32)[:, None], (height, width)))


def _blend(cv2: Any, fresh: np.ndarray, previous: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """fresh + weight * (previous - fresh), with the weight map resized to the output; exactly
    ``fresh`` where the weight is 0."""
    out_h, out_w = fresh.shape[:2]
    w = cv2.resize(weight, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    if fresh.dtype == np.uint8 and fresh.ndim == 3 and fresh.shape[2] <= 4:
        # One pass; (w * p + (1 - w) * f) / (1 + 1e-5) rounds back to f where w is 0.
        return cv2.blendLinear(previous, fresh, w, 1.0 - w).reshape(fresh.shape)
    if fresh.ndim == 3:
        w = w[..., None]
    base = fresh.astype(np.float32)
    out = previous.astype(np.float32)
    out -= base
    out *= w
    out += base
    if fresh.dtype.kind == "f":
        return out
    out += np.float32(0.5)
    return out.astype(fresh.dtype)
