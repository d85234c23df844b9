"""Writing the small text files realscale keeps for the user (worker config, kritarc, install
records): whole or not at all, never through a file or link someone else put in the way
(:func:`realscale.wire.write_text` says how), with a one-sentence error when it cannot."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from .. import wire
from ..errors import RealscaleError


class FileWriteError(RealscaleError):
    """A realscale file (worker config, kritarc, install record) could not be written; the
    file is as it was before."""


def write_json(path: Path, data: dict[str, Any], *, private: bool = False) -> str:
    """Write ``data`` atomically (mode 600 when ``private``); returns the text written."""
    try:
        return wire.write_json(str(path), data, private=private)
    except OSError as exc:
        raise FileWriteError(_message(Path(path), exc)) from None


def write_text(path: Path, text: str, *, private: bool = False) -> None:
    """Replace ``path`` with ``text`` in one step (mode 600 when ``private``, else 644 less
    the umask). Raises FileWriteError, with the reason and what to do, when it cannot."""
    try:
        wire.write_text(str(path), text, private=private)
    except OSError as exc:
        raise FileWriteError(_message(Path(path), exc)) from None


def read_text(path: Path) -> str | None:
    """The file's text, or None when there is no such file."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _message(path: Path, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    where = exc.filename if isinstance(exc, NotADirectoryError) and exc.filename else None
    if where and Path(where) != path:
        reason = f"{where} is not a folder"
    return (f"cannot write {path} ({reason}); choose a file in a folder you can write to, "
            "or make that folder writable")
