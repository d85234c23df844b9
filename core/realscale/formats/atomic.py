"""Atomic file output: a crash, a full disk or an encoder error never leaves half an image.

The image goes to a hidden temporary file in the destination folder (same file system, so
the final rename is atomic), is flushed and fsynced, and only then replaces the destination.
On any failure the temporary file is removed and an ImageWriteError explains what to do.

Encoders only see the file through ``_CheckedOutput``, which has no descriptor to give
away: Pillow's C encoders write straight to a descriptor when they get one and ignore a
short write (a full disk, ``ulimit -f``), which would leave a cut-off image that looks
complete. Every byte goes through Python's file object instead, which retries short writes
and raises on errors, and the file's size is checked against what was written before the
rename.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import secrets
from collections.abc import Callable
from typing import BinaryIO, cast

from ..errors import ImageWriteError


def write_atomically(path: str, encode: Callable[[BinaryIO], None], what: str) -> None:
    """Run ``encode`` on a temporary file next to ``path``, then move it into place.

    ``what`` names the output kind for messages (e.g. "PNG").
    """
    target = os.path.abspath(path)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise ImageWriteError(
            f"Cannot write {path}: the folder {folder} does not exist; create it or choose "
            "another output path."
        )
    if os.path.isdir(target):
        raise ImageWriteError(
            f"Cannot write {path}: it is a folder; give a file name for the output."
        )
    temporary = os.path.join(
        folder, f".{os.path.basename(target)}.{secrets.token_hex(8)}.part"
    )
    try:
        # "x": created new (never someone else's file), 0o666 less the umask like any file.
        handle = open(temporary, "xb")  # noqa: SIM115 - closed by the with below
    except FileExistsError as exc:
        raise ImageWriteError(_os_message(path, folder, exc)) from exc
    except BaseException as exc:
        # A signal's handler (Ctrl-C, SIGTERM) runs as soon as open() returns, before the
        # name is bound: the file may exist, and it is ours.
        with contextlib.suppress(OSError):
            os.remove(temporary)
        if isinstance(exc, OSError):
            raise ImageWriteError(_os_message(path, folder, exc)) from exc
        raise
    try:
        with handle:
            output = _CheckedOutput(handle)
            encode(cast(BinaryIO, output))  # a BinaryIO in all but its base class
            handle.flush()
            os.fsync(handle.fileno())
            size = os.fstat(handle.fileno()).st_size
            if size != output.end:
                raise ImageWriteError(
                    f"Cannot write {path}: only {size:,} of {output.end:,} bytes reached the "
                    "disk; check the free space and file size limit, then try again."
                )
        os.replace(temporary, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        if isinstance(exc, ImageWriteError):
            raise
        if isinstance(exc, OSError):
            raise ImageWriteError(_os_message(path, folder, exc)) from exc
        if isinstance(exc, (ValueError, TypeError, KeyError, MemoryError)):
            raise ImageWriteError(
                f"Cannot write {path}: the image could not be encoded as {what} ({exc}); "
                "choose another output format."
            ) from exc
        raise
    _sync_folder(folder)


class _CheckedOutput(io.RawIOBase):
    """The temporary file as an encoder sees it: writes, seeks and reads through Python's
    file object, no ``fileno``, and the end of what was written, to check the size."""

    def __init__(self, handle: BinaryIO) -> None:
        super().__init__()
        self._handle = handle
        self._position = handle.tell()
        self.end = self._position

    def fileno(self) -> int:
        raise io.UnsupportedOperation("written through Python so that short writes fail")

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def write(self, data: bytes) -> int:  # type: ignore[override]
        written = self._handle.write(data)
        if written != len(memoryview(data).cast("B")):
            raise OSError(errno.EIO, "the file took fewer bytes than were written")
        self._position += written
        self.end = max(self.end, self._position)
        return written

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._position = self._handle.seek(offset, whence)
        return self._position

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        self._handle.flush()

    def close(self) -> None:
        # The encoder is done with it; the real file is closed (and checked) by the caller.
        if not self._handle.closed:
            self._handle.flush()
        super().close()


def _os_message(path: str, folder: str, exc: OSError) -> str:
    code = exc.errno
    if code in (errno.EACCES, errno.EPERM):
        return (
            f"Cannot write {path}: permission denied in {folder}; choose a folder you can "
            "write to."
        )
    if code == errno.EROFS:
        return f"Cannot write {path}: {folder} is on a read-only disk; choose another folder."
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return f"Cannot write {path}: the disk is full; free some space or choose another disk."
    if code == errno.EFBIG:
        return (
            f"Cannot write {path}: the file is larger than the file size limit (ulimit -f) "
            "or the file system allows; raise the limit or choose another disk."
        )
    reason = exc.strerror or str(exc)
    return f"Cannot write {path}: {reason}; check the output folder and try again."


def _sync_folder(folder: str) -> None:
    """Make the rename itself durable (POSIX only; best effort)."""
    if os.name != "posix":
        return
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
