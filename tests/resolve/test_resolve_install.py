"""`realscale install resolve` puts both scripts where Resolve lists them, and takes them
back: run as a user runs it, in a fresh home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "resolve"


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """The environment of a user with an empty home (the real one is never touched)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REALSCALE_", "XDG_", "PYTHON"))}
    env["HOME"] = str(home)
    return env


def realscale(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "realscale", *args], env=env,
                          capture_output=True, text=True, check=False, timeout=300)


def test_install_puts_both_scripts_in_fusion_scripts_edit(home, tmp_path) -> None:
    scripts = Path(home["HOME"]) / ".local/share/DaVinciResolve/Fusion/Scripts/Edit"
    done = realscale(home, "install", "resolve")
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(scripts)) == ["Upscale clip with Real-ESRGAN (Lua).lua",
                                           "Upscale clip with Real-ESRGAN.py"]
    assert (scripts / "Upscale clip with Real-ESRGAN (Lua).lua").read_bytes() == \
        (PLUGIN / "realscale_resolve.lua").read_bytes()
    assert (scripts / "Upscale clip with Real-ESRGAN.py").read_bytes() == \
        (PLUGIN / "realscale_resolve.py").read_bytes()
    # The config both scripts read names this environment's Python.
    config = json.loads((Path(home["HOME"]) / ".config/realscale/worker.json").read_text())
    assert config["python"] == sys.executable

    done = realscale(home, "uninstall", "resolve")
    assert done.returncode == 0, done.stderr
    assert not scripts.exists()


def test_install_into_a_chosen_folder(home, tmp_path) -> None:
    dest = tmp_path / "Scripts" / "Edit"
    done = realscale(home, "install", "resolve", "--dest", str(dest), "--config",
                     str(tmp_path / "worker.json"))
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(dest)) == ["Upscale clip with Real-ESRGAN (Lua).lua",
                                        "Upscale clip with Real-ESRGAN.py"]
