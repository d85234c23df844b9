"""Keep freed CPU memory for reuse while tiles run, and give it back when an upscale ends.

glibc hands out every allocation above its mmap threshold (at most 32 MB, its dynamic
ceiling) as fresh pages from the kernel and unmaps them on free, so each large activation of
a forward pass pays a page fault per 4 KB page on first touch. On this project's 2-core VM a
channel concatenation of two 340x340 fp32 feature maps took 33 ms that way and 0.8 ms with
the memory kept; x4plus-anime's whole forward pass went from 3.0-4.1 s (varying with the
machine's load) to 2.8 s. Holding freed memory for the process's life would keep a resident
worker at its largest tile's footprint, so ``release`` trims the heap after each upscale.
"""

from __future__ import annotations

import ctypes
import sys
import threading

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
HOLD_BYTES = 1 << 30
"""Allocations below this come from the heap and are reused; above, mmap as before."""

_lock = threading.Lock()
_libc: ctypes.CDLL | None = None
_held = False


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6")
        except OSError:  # musl and others: nothing to tune
            return None
        if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim"):
            _libc = libc
    return _libc


def hold() -> bool:
    """Keep freed blocks up to ``HOLD_BYTES`` for reuse (once per process); False where the
    C library is not glibc."""
    global _held
    with _lock:
        if not _held:
            libc = _glibc()
            if libc is None:
                return False
            _held = bool(libc.mallopt(M_MMAP_THRESHOLD, HOLD_BYTES)) and bool(
                libc.mallopt(M_TRIM_THRESHOLD, HOLD_BYTES))
        return _held


def release() -> None:
    """Return the heap's free memory to the system (after an upscale, not between tiles)."""
    if _held and _libc is not None:
        _libc.malloc_trim(0)
