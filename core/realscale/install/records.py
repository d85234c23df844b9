"""Install records: what each ``realscale install`` did, so ``uninstall`` undoes exactly
that. One JSON file per (host, folder) in ``installs/`` of realscale's config folder."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .. import wire

RECORD_VERSION = 1


def records_dir() -> Path:
    return Path(wire.config_dir()) / "installs"


def record_path(host: str, folder: Path) -> Path:
    """The record of an install of ``host`` into ``folder``."""
    key = hashlib.sha1(str(folder).encode("utf-8")).hexdigest()[:12]
    return records_dir() / f"{host}-{key}.json"


def records(host: str | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """Install records, optionally of one host: (record file, record)."""
    folder = records_dir()
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and (host is None or record.get("host") == host):
            found.append((path, record))
    return found


def shared(path: Path, key: str, target: str) -> dict[str, Any] | None:
    """The ``key`` entry (kritarc or config) of another install record on the same file."""
    for other_path, other in records():
        entry = other.get(key)
        if other_path != path and isinstance(entry, dict) and entry.get("path") == target:
            return entry
    return None


def remove_empty(folders: Iterable[Path]) -> None:
    """Remove the folders that are empty, deepest first (a ``__pycache__`` of ours too)."""
    for folder in sorted(folders, key=lambda p: -len(p.parts)):
        cache = folder / "__pycache__"
        if cache.is_dir() and all(p.suffix == ".pyc" for p in cache.iterdir()):
            shutil.rmtree(cache)  # the host compiled our modules there
        with contextlib.suppress(OSError):  # not empty: something else lives there now
            folder.rmdir()
