"""Writing the small text files realscale keeps for the user (worker config, kritarc, install
records): whole or not at all, never through a file or link someone else put in the way.

A file is written to a temporary file beside it, which is created exclusively
(``O_CREAT | O_EXCL``, and ``O_NOFOLLOW`` where the system has it) under an unpredictable name,
with its final mode from the start (600 for a private file such as a token), and then renamed
over the target. A file or symbolic link that is already there under any name is never opened,
so it can neither keep its own mode around the text nor redirect it elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from ..errors import RealscaleError

_ATTEMPTS = 16
"""Fresh random names tried before giving up (a clash is astronomically unlikely)."""


class FileWriteError(RealscaleError):
    """A realscale file (worker config, kritarc, install record) could not be written; the
    file is as it was before."""


def write_json(path: Path, data: dict[str, Any], *, private: bool = False) -> str:
    """Write ``data`` atomically (mode 600 when ``private``); returns the text written."""
    text = json.dumps(data, indent=2) + "\n"
    write_text(path, text, private=private)
    return text


def write_text(path: Path, text: str, *, private: bool = False) -> None:
    """Replace ``path`` with ``text`` in one step (mode 600 when ``private``, else 644 less
    the umask). Raises FileWriteError, with the reason and what to do, when it cannot."""
    path = Path(path)
    try:
        _make_folder(path.parent)
        fd, temp = _create_temp(path, 0o600 if private else 0o644)
    except OSError as exc:
        raise FileWriteError(_message(path, exc)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(temp, path)  # a link at ``path`` itself is replaced, never followed
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise FileWriteError(_message(path, exc)) from None


def _make_folder(folder: Path) -> None:
    for parent in [folder, *folder.parents]:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise NotADirectoryError(20, "not a folder", str(parent))
            break
    folder.mkdir(parents=True, exist_ok=True)


def _create_temp(path: Path, mode: int) -> tuple[int, Path]:
    flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    for _ in range(_ATTEMPTS):
        temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            return os.open(temp, flags, mode), temp
        except FileExistsError:
            continue
    raise FileExistsError(17, "no free temporary name", str(path.parent))


def _message(path: Path, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    where = exc.filename if isinstance(exc, NotADirectoryError) and exc.filename else None
    if where and Path(where) != path:
        reason = f"{where} is not a folder"
    return (f"cannot write {path} ({reason}); choose a file in a folder you can write to, "
            "or make that folder writable")
