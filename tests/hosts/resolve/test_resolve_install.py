"""`realscale install resolve` puts both scripts where Resolve lists them, and takes them
back: run as a user runs it, in a fresh home."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from resolve_lua import run_lua_script
from resolve_user import User, scene

from fakes.resolve import FakeBmd

PLUGIN = Path(__file__).resolve().parents[3] / "plugins" / "resolve"


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
                                           "Upscale clip with Real-ESRGAN.py",
                                           "realscale_wire.py"]
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
                                        "Upscale clip with Real-ESRGAN.py", "realscale_wire.py"]


@pytest.mark.parametrize("script", ["python", "lua"])
@pytest.mark.parametrize("where", ["REALSCALE_CONFIG_DIR", "relative XDG_CONFIG_HOME"])
def test_installed_scripts_find_the_config_install_wrote(home, tmp_path, small_sample,
                                                         monkeypatch, where, script) -> None:
    """`realscale install resolve` with $REALSCALE_CONFIG_DIR set, or with a relative
    $XDG_CONFIG_HOME (which the XDG rules say to ignore): the installed scripts read the
    config it wrote (they get past it to the next check, the missing clip) and keep their
    remembered choices beside it."""
    monkeypatch.chdir(tmp_path)
    if where == "REALSCALE_CONFIG_DIR":
        home["REALSCALE_CONFIG_DIR"] = str(tmp_path / "settings")
        folder = tmp_path / "settings"
    else:
        home["XDG_CONFIG_HOME"] = "relative-xdg"
        folder = Path(home["HOME"]) / ".config" / "realscale"
    dest = tmp_path / "Edit"
    done = subprocess.run([sys.executable, "-m", "realscale", "install", "resolve", "--dest",
                           str(dest)], env=home, cwd=tmp_path, capture_output=True, text=True,
                          check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((folder / "worker.json").read_text())["python"] == sys.executable
    assert not (tmp_path / "relative-xdg").exists()

    for key in ("REALSCALE_WORKER_CONFIG", "REALSCALE_CONFIG_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(key, raising=False)
    for key in ("HOME", "REALSCALE_CONFIG_DIR", "XDG_CONFIG_HOME"):
        if key in home:
            monkeypatch.setenv(key, home[key])
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delitem(sys.modules, "realscale_wire", raising=False)
    resolve = scene(small_sample)[0]
    resolve.timeline.current_item = None  # so the job stops at the next check
    user = User({"Folder": str(tmp_path / "out")})
    if script == "python":
        runpy.run_path(str(dest / "Upscale clip with Real-ESRGAN.py"), init_globals={
            "resolve": resolve, "fusion": resolve.Fusion(), "bmd": FakeBmd(user, timeout=240)},
            run_name="__main__")
        assert sys.modules["realscale_wire"].__file__ == str(dest / "realscale_wire.py")
    else:
        run_lua_script(resolve, user, script=dest / "Upscale clip with Real-ESRGAN (Lua).lua")
    assert "no video clip under the playhead" in user.result, user.statuses
    remembered = "resolve-dialog.json" if script == "python" else "resolve-dialog-lua.json"
    assert json.loads((folder / remembered).read_text())["folder"] == str(tmp_path / "out")
