"""`realscale install resolve` puts both scripts where Resolve lists them, and
realscale_wire.py where no menu lists it, and takes them back; `realscale package resolve`
lays the zip out the same way: run as a user runs it, in a fresh home."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import runpy
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from resolve_lua import run_lua_script
from resolve_user import User, scene

from fakes.resolve import FakeBmd
from realscale.install.package import wheel_name

ROOT = Path(__file__).resolve().parents[3]
PLUGIN = ROOT / "plugins" / "resolve"
WIRE = ROOT / "core" / "realscale" / "wire.py"
PYTHON_SCRIPT = "Upscale clip with Real-ESRGAN.py"
LUA_SCRIPT = "Upscale clip with Real-ESRGAN (Lua).lua"
SCRIPTS = [LUA_SCRIPT, PYTHON_SCRIPT]
"""What Fusion/Scripts/Edit holds after an install: the two menu entries, nothing else."""
WIRE_FOLDER = Path("Modules") / "realscale"
"""Where realscale_wire.py goes in the Fusion folder: outside Scripts, in no menu."""
MODULES = ["realscale_client.py", "realscale_setup.py", "realscale_wire.py"]
"""What WIRE_FOLDER holds after an install: the wire, and the client and the set-up library
that set the engine up from the script (the zip adds realscale's wheel)."""


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """The environment of a user with an empty home (the real one is never touched)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REALSCALE_", "XDG_", "PYTHON"))}
    env["HOME"] = str(home)
    return env


def realscale(env: dict[str, str], *args: str, cwd: Path | None = None,
              ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "realscale", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stderr
    return done


def tree(folder: Path) -> list[str]:
    """Every file under ``folder``, relative, in POSIX spelling."""
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*")
                  if path.is_file())


def run_studio_script(script: Path, resolve: object, user: User,
                      monkeypatch: pytest.MonkeyPatch) -> str:
    """Run an installed Studio script as Resolve does (``resolve``, ``fusion`` and ``bmd``
    given); returns the file realscale_wire was loaded from."""
    monkeypatch.delitem(sys.modules, "realscale_wire", raising=False)
    runpy.run_path(str(script), init_globals={
        "resolve": resolve, "fusion": resolve.Fusion(), "bmd": FakeBmd(user, timeout=240)},
        run_name="__main__")
    return sys.modules["realscale_wire"].__file__


def use_home(home: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """This process as the user of ``home`` (the scripts run in it, as in Resolve)."""
    for key in ("REALSCALE_WORKER_CONFIG", "REALSCALE_CONFIG_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(key, raising=False)
    for key in ("HOME", "REALSCALE_CONFIG_DIR", "XDG_CONFIG_HOME"):
        if key in home:
            monkeypatch.setenv(key, home[key])
    monkeypatch.setenv("TMPDIR", str(tmp_path))


def test_install_lists_two_scripts_and_keeps_the_wire_out_of_the_menus(
        home, tmp_path, small_sample, monkeypatch) -> None:
    """In Resolve's per-user Fusion folder: Scripts/Edit holds exactly the two scripts (each
    file there is a menu item, each sub-folder a sub-menu), realscale_wire.py lies in
    Modules/realscale, and the installed Studio script finds the worker config through that
    copy. Uninstall removes all five files and every folder the install made."""
    user_home = Path(home["HOME"])
    fusion = user_home / ".local/share/DaVinciResolve/Fusion"
    realscale(home, "install", "resolve")
    assert sorted(os.listdir(fusion)) == ["Modules", "Scripts"]
    assert os.listdir(fusion / "Scripts") == ["Edit"]
    assert sorted(os.listdir(fusion / "Scripts/Edit")) == SCRIPTS
    assert os.listdir(fusion / "Modules") == ["realscale"]
    assert sorted(os.listdir(fusion / WIRE_FOLDER)) == MODULES
    assert (fusion / "Scripts/Edit" / LUA_SCRIPT).read_bytes() == \
        (PLUGIN / "realscale_resolve.lua").read_bytes()
    assert (fusion / "Scripts/Edit" / PYTHON_SCRIPT).read_bytes() == \
        (PLUGIN / "realscale_resolve.py").read_bytes()
    assert (fusion / WIRE_FOLDER / "realscale_wire.py").read_bytes() == WIRE.read_bytes()
    for name in MODULES[:2]:
        assert (fusion / WIRE_FOLDER / name).read_bytes() == (
            ROOT / "plugins" / "common" / name).read_bytes()
    config = user_home / ".config/realscale/worker.json"
    assert json.loads(config.read_text())["python"] == sys.executable

    use_home(home, monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    resolve = scene(small_sample)[0]
    resolve.timeline.current_item = None  # so the job stops at the next check
    user = User({"Folder": str(tmp_path / "out")})
    loaded = run_studio_script(fusion / "Scripts/Edit" / PYTHON_SCRIPT, resolve, user,
                               monkeypatch)
    assert loaded == str(fusion / WIRE_FOLDER / "realscale_wire.py")
    assert "no video clip under the playhead" in user.result, user.statuses
    # Importing it left Python's cache beside it; the menu folder is still just the two.
    assert sorted(os.listdir(fusion / "Scripts/Edit")) == SCRIPTS

    done = realscale(home, "uninstall", "resolve")
    assert "(5 files)" in done.stdout
    for path in (fusion / "Scripts/Edit" / LUA_SCRIPT, fusion / "Scripts/Edit" / PYTHON_SCRIPT,
                 *(fusion / WIRE_FOLDER / name for name in MODULES)):
        assert not path.exists()
    assert not (user_home / ".local").exists(), "every folder the install made is gone"
    assert not config.exists()


def test_uninstall_keeps_what_resolve_and_others_put_in_the_fusion_folder(home) -> None:
    """Into a Fusion folder Resolve already made (other scripts, Fusion's own modules):
    uninstall takes back the five files and the folders the install made, nothing else."""
    fusion = Path(home["HOME"]) / ".local/share/DaVinciResolve/Fusion"
    theirs = {"Scripts/Edit/Someone else's.lua": "print('theirs')\n",
              "Scripts/Comp/A comp script.py": "print('comp')\n",
              "Modules/Lua/their_module.lua": "return {}\n"}
    for name, text in theirs.items():
        (fusion / name).parent.mkdir(parents=True, exist_ok=True)
        (fusion / name).write_text(text)
    before = tree(fusion)
    realscale(home, "install", "resolve")
    assert sorted(os.listdir(fusion / "Scripts/Edit")) == sorted(
        [*SCRIPTS, "Someone else's.lua"])
    assert tree(fusion) == sorted([*before, *(f"Scripts/Edit/{s}" for s in SCRIPTS),
                                   *(f"Modules/realscale/{m}" for m in MODULES)])
    realscale(home, "uninstall", "resolve")
    assert tree(fusion) == before
    assert sorted(os.listdir(fusion / "Modules")) == ["Lua"], "Modules/realscale is gone"


def test_install_into_a_chosen_fusion_folder(home, tmp_path) -> None:
    dest = tmp_path / "Fusion"
    realscale(home, "install", "resolve", "--dest", str(dest), "--config",
              str(tmp_path / "worker.json"))
    assert tree(dest) == sorted([*(f"Scripts/Edit/{s}" for s in SCRIPTS),
                                 *(f"Modules/realscale/{m}" for m in MODULES)])
    realscale(home, "uninstall", "resolve", "--dest", str(dest))
    assert not dest.exists()


def test_package_lays_the_zip_out_as_the_install(home, tmp_path, small_sample,
                                                 monkeypatch) -> None:
    """`realscale package resolve`: the zip holds the files at the very paths an install puts
    them in the Fusion folder, with realscale's wheel beside realscale_wire.py (outside the
    menus too), and unpacked into a Fusion folder the Studio script finds its wire there."""
    fusion = tmp_path / "installed"
    realscale(home, "install", "resolve", "--dest", str(fusion), "--config",
              str(tmp_path / "worker.json"))
    realscale(home, "package", "resolve", "-o", str(tmp_path / "dist"))
    [zipped] = (tmp_path / "dist").iterdir()
    wheel = f"Modules/realscale/{wheel_name()}"
    with zipfile.ZipFile(zipped) as archive:
        names = archive.namelist()
        files = sorted(name for name in names if not name.endswith("/"))
        assert files == sorted([*tree(fusion), wheel])
        assert sorted(name for name in names if name.endswith("/")) == [
            "Modules/", "Modules/realscale/", "Scripts/", "Scripts/Edit/"]
        for name in tree(fusion):
            assert archive.read(name) == (fusion / name).read_bytes(), name
        assert zipfile.is_zipfile(io.BytesIO(archive.read(wheel)))
        unpacked = tmp_path / "unpacked" / "Fusion"
        archive.extractall(unpacked)

    use_home(home, monkeypatch, tmp_path)
    monkeypatch.setenv("REALSCALE_WORKER_CONFIG", str(tmp_path / "worker.json"))
    monkeypatch.chdir(tmp_path)
    resolve = scene(small_sample)[0]
    resolve.timeline.current_item = None
    user = User({"Folder": str(tmp_path / "out")})
    loaded = run_studio_script(unpacked / "Scripts/Edit" / PYTHON_SCRIPT, resolve, user,
                               monkeypatch)
    assert loaded == str(unpacked / WIRE_FOLDER / "realscale_wire.py")
    assert "no video clip under the playhead" in user.result, user.statuses


def test_the_studio_script_looks_in_modules_first_then_beside_itself_then_core(
        tmp_path, monkeypatch) -> None:
    """The order the Studio script looks for realscale_wire.py: Modules/realscale of the
    Fusion folder it lies in, Resolve's per-user one, beside itself (an install from before
    the module moved), the checkout's core/ (a development run)."""
    spec = importlib.util.spec_from_file_location("resolve_script_lookup",
                                                  PLUGIN / "realscale_resolve.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    fusion = tmp_path / "Fusion"
    per_user = tmp_path / "home/.local/share/DaVinciResolve/Fusion"
    installed = fusion / "Scripts/Edit" / PYTHON_SCRIPT
    assert script.wire_candidates(str(installed)) == [
        str(fusion / WIRE_FOLDER / "realscale_wire.py"),
        str(per_user / WIRE_FOLDER / "realscale_wire.py"),
        str(fusion / "Scripts/Edit/realscale_wire.py"),
        str(fusion / "core/realscale/wire.py")]
    assert script.wire_candidates(None) == [str(per_user / WIRE_FOLDER / "realscale_wire.py")]
    # From the checkout, with nothing installed: core's own module.
    checkout = script.wire_candidates(str(PLUGIN / "realscale_resolve.py"))
    assert [path for path in checkout if os.path.isfile(path)] == [str(WIRE)]


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
    dest = tmp_path / "Fusion"
    realscale(home, "install", "resolve", "--dest", str(dest), cwd=tmp_path)
    assert json.loads((folder / "worker.json").read_text())["python"] == sys.executable
    assert not (tmp_path / "relative-xdg").exists()

    use_home(home, monkeypatch, tmp_path)
    resolve = scene(small_sample)[0]
    resolve.timeline.current_item = None  # so the job stops at the next check
    user = User({"Folder": str(tmp_path / "out")})
    if script == "python":
        loaded = run_studio_script(dest / "Scripts/Edit" / PYTHON_SCRIPT, resolve, user,
                                   monkeypatch)
        assert loaded == str(dest / WIRE_FOLDER / "realscale_wire.py")
    else:
        run_lua_script(resolve, user, script=dest / "Scripts/Edit" / LUA_SCRIPT)
    assert "no video clip under the playhead" in user.result, user.statuses
    remembered = "resolve-dialog.json" if script == "python" else "resolve-dialog-lua.json"
    assert json.loads((folder / remembered).read_text())["folder"] == str(tmp_path / "out")
