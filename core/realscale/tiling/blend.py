"""Seam-free tiling: cut an image into overlapping tiles with context, blend the results.

Each tile is run on its *core* plus ``overlap/2`` (the blend zone shared with each neighbour)
plus ``context`` pixels of real image around that, which the network needs to see so that its
output near the tile's edge matches what it would have produced on the whole image. The
context is thrown away; the blend zones are cross-faded with linear ramps that sum to one, so
the result is the untiled result up to a small, bounded error. At the image's own edges nothing
is added: the network sees the same border as it would untiled.

Finished pixels go to ``sink`` block by block, as soon as no later tile can touch them; only
the blend zones still waiting for a neighbour are kept (one strip to the right of the current
tile, one under the current row of tiles), so the float working memory is about one tile,
never the whole output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import Cancelled, OutOfMemoryError

RunTile = Callable[[np.ndarray], np.ndarray]
"""(h, w, C) float32 input -> (h*scale, w*scale, C') float32 output."""
RunTiles = Callable[[list[np.ndarray]], list[np.ndarray]]
"""Several regions of one shape at once (one forward pass on a GPU): outputs in order."""
Sink = Callable[[int, int, np.ndarray], None]
"""(output row, output column, block) for each finished block, row of tiles by row of tiles."""
Progress = Callable[[int, int], None]

MIN_TILE = 16


class TileOutOfMemory(Exception):
    """Raised by a RunTile when the tile did not fit; the tiler splits it and goes on."""


@dataclass(frozen=True)
class TilePlan:
    """How to cut an image: all sizes in input pixels."""

    tile: int
    """Core size of a tile; tiles are balanced so none is much smaller than the rest."""
    overlap: int = 8
    """Width of the cross-faded zone between neighbouring tiles (even)."""
    context: int = 16
    """Extra pixels each tile sees beyond its blend zone, discarded afterwards."""
    multiple: int = 1
    """Tile edges fall on multiples of this (models that fold pixels into channels)."""

    def extent(self) -> int:
        """The largest input a tile of this plan sends to the network, per side."""
        return self.tile + self.overlap + 2 * self.context


@dataclass(frozen=True)
class Span:
    """One tile's interval along one axis."""

    blend_start: int
    blend_end: int
    input_start: int
    input_end: int
    fade_in: bool
    fade_out: bool


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def spans(length: int, plan: TilePlan) -> list[Span]:
    """Tile intervals along an axis of ``length`` input pixels."""
    m = plan.multiple
    half = _round_up(plan.overlap // 2, m)
    context = _round_up(plan.context, m)
    count = max(1, -(-length // max(plan.tile, 2 * half + m)))
    # Balanced cores on the multiple grid, the larger ones first: sizes differ by at most one
    # multiple, and tiles of one size follow each other, so that neighbours have the same
    # shape (one batch on a GPU, one compiled graph).
    units, extra = divmod(-(-length // m), count)
    bounds = [0]
    for k in range(count):
        bounds.append(bounds[-1] + (units + (1 if k < extra else 0)) * m)
    bounds[-1] = length
    bounds = sorted(set(bounds))
    result = []
    for k in range(len(bounds) - 1):
        first, last = k == 0, k == len(bounds) - 2
        blend_start = bounds[k] if first else bounds[k] - half
        blend_end = bounds[k + 1] if last else bounds[k + 1] + half
        result.append(
            Span(
                blend_start=blend_start,
                blend_end=blend_end,
                input_start=max(0, blend_start - context),
                input_end=min(length, blend_end + context),
                fade_in=not first,
                fade_out=not last,
            )
        )
    return result


def _ramp(span: Span, half: int, scale: int) -> np.ndarray:
    """Blend weights over the span's blend zone, in output pixels."""
    size = (span.blend_end - span.blend_start) * scale
    weights = np.ones(size, dtype=np.float32)
    fade = 2 * half * scale
    if fade:
        up = (np.arange(fade, dtype=np.float32) + 0.5) / fade
        if span.fade_in:
            weights[:fade] = up
        if span.fade_out:
            weights[size - fade :] = up[::-1]
    return weights


class _Runner:
    """Runs regions; after an out-of-memory error, splits every region above the size that
    failed into half-size tiles from then on (and halves again if those fail too)."""

    def __init__(self, run: RunTile, scale: int, plan: TilePlan) -> None:
        self.run = run
        self.scale = scale
        self.plan = plan
        self.limit: int | None = None
        """Largest region side to send to the network; None until something failed."""
        self.tile = plan.tile
        self.halvings = 0
        self.run_many: RunTiles | None = None

    def many(self, regions: list[np.ndarray]) -> list[np.ndarray]:
        """Outputs of several same-shape regions; one at a time once memory ran short."""
        if self.run_many is not None and len(regions) > 1 and self.limit is None:
            try:
                return self.run_many(regions)
            except TileOutOfMemory:
                self.run_many = None  # from now on tile by tile, halving as needed
        return [self(region) for region in regions]

    def __call__(self, region: np.ndarray) -> np.ndarray:
        side = max(region.shape[0], region.shape[1])
        if self.limit is None or side <= self.limit:
            try:
                return self.run(region)
            except TileOutOfMemory:
                self.limit = side - 1
        overhead = self.plan.overlap + 2 * self.plan.context
        while self.tile + overhead > self.limit and self.tile > MIN_TILE:
            self.tile = max(self.tile // 2, MIN_TILE)
            self.halvings += 1
        if self.tile + overhead > self.limit or side <= MIN_TILE:
            msg = ("not even the smallest tile fits into the device's memory; choose the CPU as "
                   "device")
            raise OutOfMemoryError(msg)
        # Split this region as a small image of its own: its edges are the tile's edges,
        # exactly what the network would have seen had the region fitted.
        sub_plan = TilePlan(self.tile, self.plan.overlap, self.plan.context, self.plan.multiple)
        out: np.ndarray | None = None

        def collect(y: int, x: int, block: np.ndarray) -> None:
            nonlocal out
            if out is None:
                shape = (region.shape[0] * self.scale, region.shape[1] * self.scale)
                out = np.empty(shape + block.shape[2:], dtype=np.float32)
            out[y : y + block.shape[0], x : x + block.shape[1]] = block

        process(region, self, self.scale, sub_plan, collect)
        assert out is not None
        return out


def process(
    image: np.ndarray,
    run: RunTile,
    scale: int,
    plan: TilePlan,
    sink: Sink,
    *,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    run_many: RunTiles | None = None,
    group: int = 1,
) -> int:
    """Run ``image`` (H, W, C) tile by tile; returns how many tiles ran.

    With ``run_many`` and ``group`` > 1, up to ``group`` neighbouring tiles of one row that
    have the same shape go to ``run_many`` together (a GPU runs them as one batch, uploading
    the next while it computes); the blending and the sink see them one by one as before.
    """
    height, width = image.shape[:2]
    runner = run if isinstance(run, _Runner) else _Runner(run, scale, plan)
    if group > 1 and run_many is not None and not isinstance(run, _Runner):
        runner.run_many = run_many
    zone = 2 * _round_up(plan.overlap // 2, plan.multiple) * scale
    """Width in output pixels of the blend zone two neighbours share."""
    rows, cols = spans(height, plan), spans(width, plan)
    total = len(rows) * len(cols)
    done = 0
    above: np.ndarray | None = None  # the previous row's bottom zone, full width
    for ys in rows:
        wy = _ramp(ys, zone // 2 // scale, scale)
        below: np.ndarray | None = None
        left: np.ndarray | None = None  # the previous tile's right zone, this row's height
        regions = [image[ys.input_start : ys.input_end, xs.input_start : xs.input_end]
                   for xs in cols]
        ready: dict[int, np.ndarray] = {}
        for index, xs in enumerate(cols):
            if cancelled is not None and cancelled():
                raise Cancelled("the upscale was cancelled")
            if index not in ready:
                members = [index]
                while (len(members) < group and members[-1] + 1 < len(cols)
                       and regions[members[-1] + 1].shape == regions[index].shape):
                    members.append(members[-1] + 1)
                outputs = runner.many([regions[i] for i in members])
                ready.update(zip(members, outputs, strict=True))
            out = ready.pop(index)
            top = (ys.blend_start - ys.input_start) * scale
            x0 = (xs.blend_start - xs.input_start) * scale
            part = out[top : top + wy.size, x0 : x0 + (xs.blend_end - xs.blend_start) * scale]
            part = part * (wy[:, None, None] * _ramp(xs, zone // 2 // scale, scale)[None, :, None])
            ox = xs.blend_start * scale
            left_zone = zone if xs.fade_in else 0
            right_zone = zone if xs.fade_out else 0
            bottom_zone = zone if ys.fade_out else 0
            if left is not None:
                part[:, :left_zone] += left
            if above is not None:
                # The left zone already received the row above through ``left``.
                part[:zone, left_zone:] += above[:, ox + left_zone : ox + part.shape[1]]
            keep_w = part.shape[1] - right_zone
            left = part[:, keep_w:].copy() if right_zone else None
            if bottom_zone:
                if below is None:
                    below = np.zeros((zone, width * scale, part.shape[2]), dtype=np.float32)
                below[:, ox : ox + keep_w] = part[part.shape[0] - zone :, :keep_w]
            sink(ys.blend_start * scale, ox, part[: part.shape[0] - bottom_zone, :keep_w])
            done += 1
            if progress is not None:
                progress(done, total)
        above = below
    return total
