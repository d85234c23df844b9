"""Fixtures of the engine setup tests: a plug-in folder laid out like a release zip (the
client, realscale_setup and realscale's wheel side by side) and one real install of the
torch-free engine from that wheel, shared by the tests of a session.

pip fetches the engine's dependencies from the package index it is configured for and keeps
them in its cache, so only the first run on a machine downloads them (about 100 MB).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from setup_support import COMMON, HOST_PYTHON, REPO, build_wheel


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(REPO, tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """realscale_client.py, realscale_wire.py, realscale_setup.py and the wheel in one
    folder, as every plug-in zip carries them."""
    folder = tmp_path_factory.mktemp("plugin")
    for name in ("realscale_client.py", "realscale_setup.py"):
        shutil.copy(COMMON / name, folder / name)
    wire = REPO / "core" / "realscale" / "wire.py"
    if wire.exists():  # older clients hold the framing themselves
        shutil.copy(wire, folder / "realscale_wire.py")
    shutil.copy(wheel, folder / wheel.name)
    return folder


_PLUGIN_MODULES = ("realscale_setup", "realscale_client", "realscale_wire")


@pytest.fixture(scope="module")
def rs(plugin_dir: Path) -> Iterator[ModuleType]:
    """realscale_setup, imported from the plug-in folder (its wheel is the bundled one); the
    folder and its modules leave this process afterwards, so later tests import their own."""
    sys.path.insert(0, str(plugin_dir))
    for name in _PLUGIN_MODULES:
        sys.modules.pop(name, None)
    yield importlib.import_module("realscale_setup")
    sys.path.remove(str(plugin_dir))
    for name in _PLUGIN_MODULES:
        sys.modules.pop(name, None)


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh per-user world: data folder (logs, default engine folder) and worker config."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("REALSCALE_WORKER_CONFIG", str(tmp_path / "config" / "worker.json"))
    return tmp_path


def _run_driver(plugin_dir: Path, env: dict[str, str], *args: str) -> dict:
    done = subprocess.run([HOST_PYTHON, "-I", str(Path(__file__).with_name("driver.py")),
                           str(plugin_dir), *args], capture_output=True, text=True, env=env,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def driver(plugin_dir: Path) -> Callable[..., dict]:
    """Runs tests/setup/driver.py (a host-like Python using realscale_setup): driver(env, ACTION,
    ...) -> its JSON report."""
    return lambda env, *args: _run_driver(plugin_dir, env, *args)


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory, plugin_dir: Path) -> dict:
    """One real install of the torch-free engine, run by a host-like Python through the
    driver: {"result", "progress", "modules", "config", "folder", "env"}."""
    root = tmp_path_factory.mktemp("engine")
    env = dict(os.environ, XDG_DATA_HOME=str(root / "data"),
               REALSCALE_WORKER_CONFIG=str(root / "config" / "worker.json"))
    report = _run_driver(plugin_dir, env, "install", str(root / "engine"))
    report.update(config=env["REALSCALE_WORKER_CONFIG"], folder=str(root / "engine"), env=env)
    return report
