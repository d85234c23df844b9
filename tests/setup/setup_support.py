"""What the engine setup tests share besides fixtures: where things are, building a wheel."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMMON = REPO / "plugins" / "common"
HOST_PYTHON = "/usr/bin/python3"
"""A Python like a host's: no numpy, no torch, no realscale (run with -I)."""


def build_wheel(source: Path, into: Path) -> Path:
    """realscale's wheel, built the way the packager builds it."""
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(into), str(source)], check=True, capture_output=True)
    (wheel,) = into.glob("realscale-*-py3-none-any.whl")
    return wheel
