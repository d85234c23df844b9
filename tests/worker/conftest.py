"""Fixtures for the worker tests: a host interpreter, worker configs, the driver."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from worker_support import CORE, DRIVER, HOST_PYTHON, WORKER_PYTHON


@pytest.fixture(scope="session")
def host_python() -> str:
    if not os.path.isfile(HOST_PYTHON):
        pytest.skip(f"{HOST_PYTHON} (the stand-in for a host's Python) is not here")
    return HOST_PYTHON


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh home and XDG folders; the real ones are never touched."""
    home = tmp_path / "home"
    home.mkdir()
    for name, value in {
        "HOME": home, "XDG_CONFIG_HOME": home / ".config", "XDG_DATA_HOME": home / ".local/share",
        "XDG_CACHE_HOME": home / ".cache", "APPDATA": home / "AppData/Roaming",
        "LOCALAPPDATA": home / "AppData/Local",
    }.items():
        monkeypatch.setenv(name, str(value))
    for name in ("REALSCALE_WORKER_CONFIG", "REALSCALE_CONFIG_DIR", "GIMP3_DIRECTORY",
                 "REALSCALE_PLUGINS_DIR"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def worker_config(tmp_path: Path) -> Path:
    """A config that starts the worker from this source tree with this environment's Python."""
    path = tmp_path / "worker.json"
    path.write_text(json.dumps({"version": 1, "python": WORKER_PYTHON,
                                "pythonpath": [str(CORE)]}))
    return path


@pytest.fixture
def drive(host_python: str, tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """Run a driver scenario under the host Python; returns its JSON report."""

    def run(scenario: str, spec: dict[str, Any], env: dict[str, str] | None = None,
            timeout: float = 240) -> dict[str, Any]:
        spec_file = tmp_path / f"{scenario}-spec.json"
        spec_file.write_text(json.dumps(spec))
        base = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        done = subprocess.run(
            # -S: no site-packages (Debian's may have numpy), the standard library only.
            [host_python, "-S", str(DRIVER), scenario, str(spec_file)], capture_output=True,
            text=True, timeout=timeout, env={**base, **(env or {})}, check=False,
        )
        assert done.returncode == 0, f"driver failed:\n{done.stdout}\n{done.stderr}"
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["imported"] == [], "the client must need the standard library only"
        return report

    return run
