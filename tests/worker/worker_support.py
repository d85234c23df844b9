"""Shared constants and helpers of the worker tests (fixtures are in conftest.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "core"
DRIVER = Path(__file__).resolve().parent / "driver.py"
HOST_PYTHON = "/usr/bin/python3"
"""Debian's Python, without torch: what a host's embedded Python looks like."""
WORKER_PYTHON = sys.executable


def worker_env(**extra: str) -> dict[str, str]:
    """The environment to run ``python -m realscale`` from the source tree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(CORE)
    env.update(extra)
    return env
