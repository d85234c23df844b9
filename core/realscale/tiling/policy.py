"""Tiling policy: how big a tile is, what surrounds it, and how many go to the device at once.

The engine supplies the facts (its free memory, the peak bytes per input pixel of its model in
its precision, whether it runs on a CPU, the architecture's CPU ceiling); the numbers that turn
them into sizes are here, and nowhere else.
"""

from __future__ import annotations

from typing import Protocol

from .blend import TilePlan

BORDER = 10
"""Reflection padding at the image border, as the official realesrgan-ncnn-vulkan app uses."""
OVERLAP = 8
"""Width of the cross-faded zone between neighbouring tiles."""
MIN_AUTO_TILE = 32
"""The smallest tile ``auto`` picks (an explicit tile may go down to ``blend.MIN_TILE``)."""
GPU_TILE_CEILING = 2048
"""The largest auto tile on a GPU."""
FIXED_BYTES = 400 << 20
"""Memory a forward pass needs whatever the tile size (tail strips, workspace)."""
CPU_BUDGET_CAP = 6 << 30
"""The most a CPU tile may use: past 1024 px, bigger CPU tiles do not run faster."""
CPU_SHARE = 4
"""A CPU tile may use a quarter of the free RAM ..."""
GPU_SHARE = 0.6
"""... a GPU tile (or a GPU batch of tiles) 60% of the device's free memory."""
MAX_BATCH = 8
"""Most tiles in one forward pass, or in one call to the engine."""
HOST_SHARE = 8
"""The float outputs of the tiles of one call may take an eighth of the free RAM."""


class Engine(Protocol):
    """What the policy asks of an engine (``backends.base.TileEngine`` has it)."""

    @property
    def on_cpu(self) -> bool: ...

    @property
    def cpu_tile_ceiling(self) -> int: ...

    def free_bytes(self) -> int: ...

    def bytes_per_pixel(self, batch: int = 1) -> int: ...


def auto_tile(engine: Engine, overhead: int, batch: int = 1) -> int:
    """The largest tile core whose forward pass (``overhead`` = overlap and context around
    the core, ``batch`` images at once) fits in the free memory of the engine's device."""
    available = engine.free_bytes()
    budget = (min(available // CPU_SHARE, CPU_BUDGET_CAP) if engine.on_cpu
              else int(available * GPU_SHARE))
    budget -= FIXED_BYTES * batch
    side = int((max(budget, 0) / engine.bytes_per_pixel(batch)) ** 0.5) - overhead
    # Past the architecture's CPU ceiling, bigger CPU tiles do not run faster; they only
    # cost memory.
    ceiling = engine.cpu_tile_ceiling if engine.on_cpu else GPU_TILE_CEILING
    return max(MIN_AUTO_TILE, min(ceiling, side // 8 * 8))


def plan(engine: Engine, tile: int | str, *, context: int, multiple: int,
         overlap: int = OVERLAP, batch: int = 1) -> TilePlan:
    """The tiling of one upscale: ``tile`` ``"auto"`` (from the engine's free memory) or a
    checked size; ``context`` is the model's reach (``ModelDescriptor.tile_context``)."""
    size = (auto_tile(engine, overlap + 2 * context, batch) if tile == "auto"
            else int(tile))
    return TilePlan(size, overlap, context, multiple)


def tiles_per_pass(free_bytes: int, bytes_per_pixel: int, rows: int, cols: int,
                   count: int) -> int:
    """Tiles of rows x cols in one forward pass on a GPU: as many as its free memory takes."""
    per_tile = bytes_per_pixel * rows * cols + FIXED_BYTES
    return max(1, min(count, MAX_BATCH, int(free_bytes * GPU_SHARE) // per_tile))


def tiles_per_call(free_ram: int, out_bytes: int) -> int:
    """Tiles handed to a GPU engine in one call (one computes while the next uploads),
    bounded by what their float outputs (``out_bytes`` each) take in host memory."""
    return max(1, min(MAX_BATCH, free_ram // HOST_SHARE // max(out_bytes, 1)))
