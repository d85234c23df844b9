"""The Upscaler: load a model once, upscale many numpy images, tile by tile."""

from __future__ import annotations

import math
import numbers
import os
import threading
from collections.abc import Callable

import numpy as np

from . import backends, channels
from .descriptor import ModelDescriptor
from .errors import OutputSizeError, OutputTooLargeError, RealscaleError
from .formats.decoded import DEFAULT_MAX_PIXELS
from .loading import load_model
from .options import check_tile
from .resize import band_halo, resize_float
from .tiling import BORDER, OVERLAP, TilePlan, policy, process

DEFAULT_MODEL = "realesrgan-x4plus"
SINK_ROWS = 64
RESIZE_ROWS = 256
"""Output rows resized at a time for scales the model does not give."""

ProgressCallback = Callable[[int, int], None]


class CancelToken:
    """Set from any thread; the upscale stops before its next tile with ``Cancelled``."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


class Upscaler:
    """A model loaded once onto a device, to upscale any number of images."""

    def __init__(
        self,
        model: str | os.PathLike[str] | ModelDescriptor = DEFAULT_MODEL,
        *,
        device: str = "auto",
        precision: str = "auto",
        tile: int | str = "auto",
        allow_download: bool = False,
        overlap: int = OVERLAP,
        context: int | None = None,
        backend: str = "auto",
    ) -> None:
        if isinstance(model, ModelDescriptor):
            self.model = model
        else:
            self.model = load_model(model, allow_download=allow_download, backend=backend)
        if self.model.in_channels != 3 or self.model.out_channels != 3:
            msg = (
                f"{self.model.name} has {self.model.in_channels} input and "
                f"{self.model.out_channels} output channels; realscale runs RGB models only"
            )
            raise RealscaleError(msg)
        self.engine = backends.create_engine(self.model, backend, device, precision)
        self.tile = check_tile(tile)
        """The default tile size of ``upscale`` (``"auto"`` or pixels)."""
        self.overlap = overlap
        self.context = self.model.tile_context if context is None else context

    @property
    def scale(self) -> int:
        """The model's own scale factor."""
        return self.model.scale

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def precision(self) -> str:
        """The precision tiles currently run in (auto fp16 may have fallen back to fp32)."""
        return self.engine.precision

    def plan(self, batch: int = 1, tile: int | str | None = None) -> TilePlan:
        """The tiling an upscale with ``tile`` (default: the constructor's) will use."""
        return policy.plan(self.engine, self.tile if tile is None else check_tile(tile),
                           context=self.context, multiple=self.model.size_multiple,
                           overlap=self.overlap, batch=batch)

    def output_size(
        self, width: int, height: int, *, scale: float | None = None,
        fit_width: int | None = None, fit_height: int | None = None,
        max_pixels: int | None = None,
    ) -> tuple[int, int]:
        """(width, height) of the result for an input of this size.

        Raises OutputSizeError for a scale or target size that is not a positive number and
        OutputTooLargeError when the result would hold more than ``max_pixels`` pixels
        (default: the readers' limit, DEFAULT_MAX_PIXELS), before anything is allocated."""
        factor = _factor(width, height, self.scale, scale, fit_width, fit_height)
        limit = _limit(max_pixels)
        exact_w, exact_h = width * factor, height * factor
        if not (math.isfinite(exact_w) and math.isfinite(exact_h)):
            msg = (f"the result would have more than {limit:,} pixels, the limit; choose a "
                   "smaller scale or size")
            raise OutputTooLargeError(msg)
        out_w, out_h = max(1, round(exact_w)), max(1, round(exact_h))
        if out_w * out_h > limit:
            msg = (f"the result would be {out_w:,}x{out_h:,} = {out_w * out_h:,} pixels, more "
                   f"than the limit of {limit:,}; choose a smaller scale or size, or raise "
                   "the limit (--max-pixels) if there is memory for it")
            raise OutputTooLargeError(msg)
        return out_w, out_h

    def upscale(
        self,
        image: np.ndarray,
        *,
        scale: float | None = None,
        width: int | None = None,
        height: int | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        max_pixels: int | None = None,
        tile: int | str | None = None,
    ) -> np.ndarray:
        """Upscale an HWC (or HW) image of uint8, uint16 or float32 with 1 to 4 channels
        (L, LA, RGB, RGBA, straight alpha); the result has the same dtype and channels.

        ``tile`` (``"auto"`` or pixels) is this call's tile size; None: the constructor's.
        The output size is checked first (see ``output_size``): a bad scale or a result
        larger than ``max_pixels`` is refused before any work or allocation."""
        pixels, squeeze = _check(image)
        plan_tile = self.tile if tile is None else check_tile(tile)
        in_h, in_w, count = pixels.shape
        out_w, out_h = self.output_size(
            in_w, in_h, scale=scale, fit_width=width, fit_height=height, max_pixels=max_pixels
        )
        model_out = self._run_model(pixels, progress, cancel, plan_tile)
        if (out_w, out_h) != (model_out.shape[1], model_out.shape[0]):
            model_out = _resize_in_bands(model_out, out_w, out_h, channels.has_alpha(count))
        return model_out[..., 0] if squeeze else model_out

    def _run_model(
        self, pixels: np.ndarray, progress: ProgressCallback | None, cancel: CancelToken | None,
        tile: int | str,
    ) -> np.ndarray:
        """The image at the model's scale, in the input's dtype and channels."""
        height, width, count = pixels.shape
        s = self.scale
        max_value = channels.MAX_VALUE.get(pixels.dtype)
        translucent = channels.translucent(pixels)
        multiple = self.model.size_multiple
        extra_h = (-(height + 2 * BORDER)) % multiple
        extra_w = (-(width + 2 * BORDER)) % multiple
        # Padded in the input's own type: tiles are turned into floats one at a time.
        padded = _reflect_pad(pixels, BORDER, extra_h, extra_w)

        result = np.empty((height * s, width * s, count), dtype=pixels.dtype)
        top, left = BORDER * s, BORDER * s

        def run_tiles(regions: list[np.ndarray]) -> list[np.ndarray]:
            colours, alphas = [], []
            for region in regions:
                colour, alpha = channels.network_input(region, translucent)
                colours.append(colour)
                if alpha is not None:
                    alphas.append(alpha)
            out = self.engine.run(np.stack(colours + alphas))
            count = len(regions)
            if not translucent:
                return list(out)
            return [np.concatenate([out[i], out[count + i]], axis=2) for i in range(count)]

        def run_tile(region: np.ndarray) -> np.ndarray:
            return run_tiles([region])[0]

        def sink(y: int, x: int, block: np.ndarray) -> None:
            y0, y1 = max(y, top), min(y + block.shape[0], top + height * s)
            x0, x1 = max(x, left), min(x + block.shape[1], left + width * s)
            if y0 >= y1 or x0 >= x1:
                return  # the block lies wholly in the reflected border
            # A few rows at a time: the float temporaries of post-processing stay small.
            for row in range(y0, y1, SINK_ROWS):
                stop = min(row + SINK_ROWS, y1)
                out = channels.network_output(block[row - y : stop - y, x0 - x : x1 - x],
                                              count, translucent)
                if max_value is not None:
                    out = np.rint(out * max_value)
                result[row - top : stop - top, x0 - left : x1 - left] = out

        batch = channels.passes(translucent)
        plan = self.plan(batch, tile)
        side = plan.extent()
        group = self.engine.tiles_per_call(side, side, channels=batch * 3)
        process(
            padded, run_tile, s, plan, sink, progress=progress,
            cancelled=(lambda: cancel.cancelled) if cancel is not None else None,
            run_many=run_tiles, group=group,
        )
        return result


def _factor(
    width: int, height: int, model_scale: int, scale: float | None,
    fit_width: int | None, fit_height: int | None,
) -> float:
    if scale is not None and (fit_width is not None or fit_height is not None):
        msg = "give either a scale or a target width/height, not both"
        raise OutputSizeError(msg)
    if scale is not None:
        if not _is_number(scale) or not (scale > 0 and math.isfinite(scale)):
            msg = f"scale must be a number greater than 0, got {scale!r}"
            raise OutputSizeError(msg)
        return float(scale)
    factors = []
    for target, size, label in ((fit_width, width, "width"), (fit_height, height, "height")):
        if target is not None:
            if not _is_whole(target) or target < 1:
                msg = f"target {label} must be a whole number of at least 1 pixel, got {target!r}"
                raise OutputSizeError(msg)
            factors.append(int(target) / size)
    return min(factors) if factors else float(model_scale)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_whole(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _limit(max_pixels: int | None) -> int:
    if max_pixels is None:
        return DEFAULT_MAX_PIXELS
    if not _is_whole(max_pixels) or max_pixels < 1:
        msg = f"the pixel limit must be a whole number of at least 1, got {max_pixels!r}"
        raise OutputSizeError(msg)
    return int(max_pixels)


def _check(image: np.ndarray) -> tuple[np.ndarray, bool]:
    if not isinstance(image, np.ndarray):
        msg = f"expected a numpy array, got {type(image).__name__}"
        raise RealscaleError(msg)
    squeeze = image.ndim == 2
    pixels = image[..., None] if squeeze else image
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        msg = f"expected an HxW or HxWxC image with 1 to 4 channels, got shape {image.shape}"
        raise RealscaleError(msg)
    if pixels.shape[0] < 1 or pixels.shape[1] < 1:
        msg = f"the image is empty ({image.shape[1] if image.ndim > 1 else 0}x{image.shape[0]})"
        raise RealscaleError(msg)
    if pixels.dtype == np.float64:
        pixels = pixels.astype(np.float32)
    if pixels.dtype not in (np.uint8, np.uint16, np.float32):
        msg = f"expected uint8, uint16 or float32 pixels, got {pixels.dtype}"
        raise RealscaleError(msg)
    if pixels.dtype == np.float32 and not np.isfinite(pixels).all():
        msg = "the image contains NaN or infinite values; replace them before upscaling"
        raise RealscaleError(msg)
    return pixels, squeeze


def _resize_in_bands(image: np.ndarray, width: int, height: int, has_alpha: bool) -> np.ndarray:
    """Resize to any size a band of rows at a time: float copies of a band only, not of the
    whole model-scale image (4 bytes per channel of, say, 16000x12000 before shrinking)."""
    in_rows = image.shape[0]
    step = in_rows / height
    halo = band_halo(in_rows, height)
    out = np.empty((height, width, image.shape[2]), dtype=image.dtype)
    for top in range(0, height, RESIZE_ROWS):
        bottom = min(height, top + RESIZE_ROWS)
        first, last = top * step, bottom * step
        start = max(0, int(first) - halo)
        stop = min(in_rows, int(np.ceil(last)) + halo)
        band = resize_float(channels.to_float(image[start:stop]), width, bottom - top,
                            has_alpha=has_alpha, rows=(first - start, last - start))
        out[top:bottom] = channels.from_float(band, image.dtype)
    return out


def _reflect_pad(image: np.ndarray, border: int, extra_h: int, extra_w: int) -> np.ndarray:
    pad = ((border, border + extra_h), (border, border + extra_w), (0, 0))
    # A single row or column cannot be reflected; repeating it is the only sensible border.
    if min(image.shape[:2]) > 1:
        return np.pad(image, pad, mode="reflect")
    return np.pad(image, pad, mode="edge")
