"""Tiling: how an image is cut into tiles and put together again (``blend``), and how big
the tiles are and what surrounds them (``policy``). Changing how realscale tiles is a change
in this package only.
"""

from __future__ import annotations

from .blend import (
    MIN_TILE,
    Progress,
    RunTile,
    RunTiles,
    Sink,
    Span,
    TileOutOfMemory,
    TilePlan,
    process,
    spans,
)
from .policy import (
    BORDER,
    CPU_BUDGET_CAP,
    FIXED_BYTES,
    MAX_BATCH,
    OVERLAP,
    auto_tile,
    plan,
    tiles_per_call,
    tiles_per_pass,
)

__all__ = [
    "BORDER",
    "CPU_BUDGET_CAP",
    "FIXED_BYTES",
    "MAX_BATCH",
    "MIN_TILE",
    "OVERLAP",
    "Progress",
    "RunTile",
    "RunTiles",
    "Sink",
    "Span",
    "TileOutOfMemory",
    "TilePlan",
    "auto_tile",
    "plan",
    "process",
    "spans",
    "tiles_per_call",
    "tiles_per_pass",
]
