"""Shared test helpers: where the real test images are, small crops of them, and a command
started as a terminal starts it (for the tests that press Ctrl-C)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# The real images the tests use travel with the repository (sources and licences in
# tests/data/SOURCES.md): a clone runs the whole suite with nothing beside it.
DATA = REPO / "tests" / "data"
INPUTS = DATA / "realesrgan-inputs"


def data_file(*parts: str) -> Path:
    """A file from tests/data; a missing one is a broken checkout, never a skip."""
    path = DATA.joinpath(*parts)
    assert path.is_file(), f"test data {path} is missing (see tests/data/SOURCES.md)"
    return path


def rgb_crop(name: str, size: int, top: int = 0, left: int = 0) -> np.ndarray:
    """An 8-bit RGB crop of a real Real-ESRGAN sample input."""
    with Image.open(data_file("realesrgan-inputs", name)) as image:
        pixels = np.asarray(image.convert("RGB"))
    crop = pixels[top : top + size, left : left + size]
    assert crop.shape[:2] == (size, size), f"{name} is smaller than the crop"
    return np.ascontiguousarray(crop)


def assert_close_u8(a: np.ndarray, b: np.ndarray, *, max_diff: int, p999: float) -> None:
    """Tolerance check in 8-bit steps: largest difference and 99.9th percentile."""
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    diff = np.abs(a.astype(np.int32) - b.astype(np.int32))
    worst, high = int(diff.max()), float(np.percentile(diff, 99.9))
    assert worst <= max_diff and high <= p999, f"max {worst}/255, 99.9th percentile {high}/255"


def like_a_terminal(command: list[str], *, signals: tuple[int, ...] = (signal.SIGINT,),
                    **options: Any) -> subprocess.Popen[str]:
    """Start ``command`` as an interactive shell starts a foreground job: ``signals`` at their
    default, whatever this test run inherited.

    A run started in the background by a script (``bash .ci/run > log &``, no job control)
    has SIGINT ignored, and under nohup SIGHUP; every child inherits that, and a program that
    respects an inherited ignore (as realscale does) never sees the signal: the command runs
    to its end and exits 0. exec resets a caught signal to its default, so each one is caught
    here while the child starts (never in the child: no code runs between fork and exec)."""
    def noted(_signum: int, _frame: Any) -> None:
        pass

    previous = {signum: signal.signal(signum, signal.default_int_handler
                                      if signum == signal.SIGINT else noted)
                for signum in signals}
    try:
        return subprocess.Popen(command, text=True, **options)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def signal_mask(pid: int, field: str) -> int:
    """A process's SigIgn or SigCgt mask from /proc (0 once it is gone): bit ``signum - 1``."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def ignores(pid: int, signum: int) -> bool:
    return bool(signal_mask(pid, "SigIgn") & (1 << (signum - 1)))
