"""Small helpers to read architecture hyperparameters from a state dict's shapes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

StateDict = Mapping[str, Any]
"""Canonical key -> ``torch.Tensor`` (or numpy array without torch): only shapes are read."""


def has_all(state: StateDict, *keys: str) -> bool:
    return all(key in state for key in keys)


def count_indexed(state: StateDict, pattern: str) -> int:
    """Number of distinct N in keys matching ``pattern`` (a regex with one ``(\\d+)`` group)."""
    regex = re.compile(pattern)
    found = {int(m.group(1)) for key in state if (m := regex.fullmatch(key))}
    return max(found) + 1 if found else 0
