"""First use of the Studio script with no engine: it sets realscale's engine up itself.

The script runs as Resolve runs it (``resolve``, ``fusion`` and ``bmd`` injected) from a
Fusion folder made by unpacking ``realscale package resolve``'s zip, so it carries the
realscale wheel and realscale_setup.py beside realscale_wire.py in Modules/realscale. Nothing
is set up for the user (their config and data folders are empty temporary folders); the
set-up is real: a venv made by the Python this test runs on (the only place the search looks),
the wheel and its dependencies (torch-free, with the video extra) from the package index this
machine's pip is configured for, then the upscale of a real clip with a catalogue model.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from resolve_user import SetupUser, User, scene

from fakes.resolve import FakeBmd, FakeResolve
from realscale.video.frames import read_frames

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = Path("Scripts") / "Edit" / "Upscale clip with Real-ESRGAN.py"
MODULES = Path("Modules") / "realscale"
MODEL = "realesr-animevideov3"
UPSCALED = "upscaled, on video track 2 at frame 86500."
INSTALL_TIMEOUT = 900


@pytest.fixture(scope="module")
def fusion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Resolve's Fusion folder with the zip `realscale package resolve` makes unpacked in it."""
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "realscale", "package", "resolve", "-o", str(dist)],
                   check=True, capture_output=True, timeout=600)
    [zipped] = dist.glob("realscale-resolve-*.zip")
    folder = tmp_path_factory.mktemp("resolve") / "Fusion"
    with zipfile.ZipFile(zipped) as archive:
        archive.extractall(folder)
    assert list((folder / MODULES).glob("realscale-*-py3-none-any.whl"))
    return folder


def world(root: Path, **more: str) -> dict[str, str]:
    """A user with nothing set up: empty data and config folders; the set-up looks for a
    Python only where the Python running these tests lives."""
    return {"XDG_DATA_HOME": str(root / "data"),
            "REALSCALE_WORKER_CONFIG": str(root / "config" / "worker.json"),
            "REALSCALE_SETUP_SEARCH": str(Path(sys.base_prefix) / "bin"), **more}


def run_script(fusion: Path, resolve: FakeResolve, user: Any) -> None:
    """Run the unpacked Studio script as Resolve does; its modules come from its own folder."""
    for name in ("realscale_wire", "realscale_client", "realscale_setup"):
        sys.modules.pop(name, None)
    runpy.run_path(str(fusion / SCRIPT), init_globals={
        "resolve": resolve, "fusion": resolve.Fusion(),
        "bmd": FakeBmd(user, timeout=INSTALL_TIMEOUT)}, run_name="__main__")


def envs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("env-*")) if folder.is_dir() else []


def upscale_user(out: Path) -> User:
    return User({"Model": MODEL, "Scale": "2", "Handles": 0, "Folder": str(out)})


def check_upscaled(resolve: FakeResolve, user: User) -> None:
    assert user.result.endswith(UPSCALED), user.statuses
    [placed] = resolve.timeline.GetItemListInTrack("video", 2)
    frames = list(read_frames(placed.GetMediaPoolItem().GetClipProperty("File Path")))
    assert len(frames) == 3 and frames[0].shape == (240, 320, 3)


@pytest.fixture(scope="module")
def first_use(fusion: Path, small_sample: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The real first use: the set-up offered, accepted as offered, the engine installed,
    then the upscale dialog and a real upscale through the new engine."""
    root = tmp_path_factory.mktemp("first-use")
    env = world(root)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        resolve = scene(small_sample, source_start=5, length=3)[0]
        user = SetupUser(upscale_user(root / "out"))
        run_script(fusion, resolve, user)
    yield {"root": root, "env": env, "resolve": resolve, "user": user,
           "folder": root / "data" / "realscale" / "engine",
           "config": Path(env["REALSCALE_WORKER_CONFIG"])}


def cancelled_with_nothing_left(user: SetupUser, how: str, tmp_path: Path) -> Path:
    """A set-up cancelled while pip downloaded left no config, engine or folder it made;
    returns its log."""
    assert user.cancelled_during.startswith("Downloading"), user.progress
    if how == "Cancel":
        assert user.ended["Progress"] == ("Cancelled: nothing was installed and nothing "
                                          "changed."), user.ended
    assert not (tmp_path / "config").exists()
    assert not (tmp_path / "my engines").exists(), "a folder the set-up made is left"
    assert not (tmp_path / "data" / "realscale" / "engine").exists()
    [log] = (tmp_path / "data" / "realscale" / "logs").glob("engine-install-*.log")
    return log


def missing_package_reported(user: SetupUser, tmp_path: Path) -> None:
    """A set-up pip could not find a package for: the one-sentence reason with its log, and
    nothing set up."""
    problem = user.ended["Problem"]
    match = re.fullmatch(r"The package (\S+) is not available for this Python and system; .*"
                         r"The full log is in (\S+\.log)\.", problem)
    assert match, problem
    assert "No matching distribution found" in Path(match[2]).read_text()
    assert Path(match[2]).parent == tmp_path / "data" / "realscale" / "logs"
    assert not (tmp_path / "config").exists()
    assert not (tmp_path / "data" / "realscale" / "engine").exists()


def test_first_use_sets_up_the_engine_then_upscales(first_use: dict[str, Any]) -> None:
    user: SetupUser = first_use["user"]
    offered = user.offered
    assert "The realscale worker is not set up" in offered["Intro"], offered
    assert re.search(r"realscale \d+\.\d+\.\d+ \(the version this script came with\)",
                     offered["Intro"]), offered
    assert offered["Python"].startswith("Python 3.") and sys.base_prefix in offered["Python"]
    assert user.backends == ["CPU (ONNX Runtime) (recommended)"]  # no NVIDIA GPU here
    assert offered["Size"].startswith("about 610 MB"), offered
    assert offered["Folder"] == str(first_use["folder"]) and offered["Problem"] == ""
    phases = [text.split(":")[0].split(" (")[0] for text in user.progress]
    for phase in ("Making the environment", "Downloading", "Checking the engine"):
        assert phase in phases, user.progress
    assert any(re.search(r"\(\d+%\)$", text) for text in user.progress), user.progress

    folder: Path = first_use["folder"]
    [env] = envs(folder)
    config = json.loads(first_use["config"].read_text())
    assert config["python"] == str(folder / env / "bin" / "python")
    record = json.loads((folder / "engine.json").read_text())
    assert (record["env"], record["backend"], record["extras"]) == (env, "cpu", ["video"])
    check_upscaled(first_use["resolve"], user.then)


@pytest.mark.parametrize("how", ["Cancel", "closing the window"])
def test_cancel_during_pip_leaves_no_environment_and_no_config(
        fusion: Path, small_sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        how: str) -> None:
    """Into a folder the user typed (the offer's folder is changeable): cancelled while pip
    runs, by Cancel or by closing the window, nothing is left and nothing is configured."""
    for key, value in world(tmp_path).items():
        monkeypatch.setenv(key, value)
    resolve = scene(small_sample, source_start=5, length=3)[0]
    chosen = tmp_path / "my engines" / "realscale"
    user = SetupUser(None, cancel_at="Downloading", folder=str(chosen),
                     close=how != "Cancel")  # no upscale dialog may follow
    run_script(fusion, resolve, user)
    log = cancelled_with_nothing_left(user, how, tmp_path)
    assert "pip" in log.read_text()
    assert resolve.timeline.GetTrackCount("video") == 2


def test_no_python_found_says_what_to_do_and_changes_nothing(
        fusion: Path, small_sample: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A forced failure: the Python search looks in an empty folder only."""
    (tmp_path / "empty").mkdir()
    for key, value in world(tmp_path, REALSCALE_SETUP_SEARCH=str(tmp_path / "empty")).items():
        monkeypatch.setenv(key, value)
    resolve = scene(small_sample, source_start=5, length=3)[0]
    user = SetupUser(None)
    run_script(fusion, resolve, user)
    assert user.install_enabled is False
    assert user.offered["Problem"].startswith(
        "No Python 3.10 or newer was found on this computer; install Python 3.12"), user.offered
    assert user.offered["Python"] == "none found"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no data, no config


def test_a_failed_install_names_its_log_and_changes_nothing(
        fusion: Path, small_sample: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A forced failure in pip itself: no package index and no wheel folder."""
    (tmp_path / "no-wheels").mkdir()
    for key, value in world(tmp_path, PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1",
                            PIP_FIND_LINKS=str(tmp_path / "no-wheels")).items():
        monkeypatch.setenv(key, value)
    resolve = scene(small_sample, source_start=5, length=3)[0]
    user = SetupUser(None)
    run_script(fusion, resolve, user)
    missing_package_reported(user, tmp_path)


OTHER_PROTOCOL = 2


def speak_another_protocol(folder: Path) -> str:
    """Make the engine in ``folder`` speak OTHER_PROTOCOL (as a future realscale would);
    returns its environment's name."""
    [old] = envs(folder)
    patched = []
    for path in (folder / old).glob("lib/python3*/site-packages/realscale/**/*.py"):
        text = path.read_text()
        changed = re.sub(r"(?m)^PROTOCOL_VERSION = 1$", f"PROTOCOL_VERSION = {OTHER_PROTOCOL}",
                         text)
        if changed != text:
            path.write_text(changed)
            for cached in path.parent.glob(f"__pycache__/{path.stem}.*.pyc"):
                cached.unlink()
            patched.append(path)
    assert patched, "no PROTOCOL_VERSION = 1 in the installed engine"
    return old


def check_updated(first_use: dict[str, Any], old: str, offered: dict[str, Any],
                  progress: list[str]) -> None:
    """The update was offered for the engine's folder, saying why; it installed the plug-in's
    version beside the old one with the same backend and extras, switched the config to it
    and removed the old environment."""
    folder: Path = first_use["folder"]
    assert offered["Install"] == "Update the engine", offered
    assert f"speaks protocol {OTHER_PROTOCOL} and this plug-in speaks 1" in offered["Intro"]
    assert str(folder) in offered["Intro"] and offered["Folder"] == str(folder)
    assert any(text.startswith("Downloading") for text in progress), progress
    [new] = envs(folder)
    assert new != old
    config = json.loads(first_use["config"].read_text())
    assert config["python"] == str(folder / new / "bin" / "python")
    record = json.loads((folder / "engine.json").read_text())
    assert (record["env"], record["backend"], record["extras"]) == (new, "cpu", ["video"])


def test_an_engine_of_another_protocol_is_offered_the_update(
        first_use: dict[str, Any], fusion: Path, small_sample: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine the first use set up is made to speak another protocol: the script offers
    "Update the engine" (pressed), the update installs the plug-in's version beside it with
    the same backend and extras, switches the config, removes the old environment, and the
    upscale dialog then works through the new engine."""
    for key, value in first_use["env"].items():
        monkeypatch.setenv(key, value)
    old = speak_another_protocol(first_use["folder"])
    resolve = scene(small_sample, source_start=5, length=3)[0]
    user = SetupUser(upscale_user(first_use["root"] / "out-after-update"))
    run_script(fusion, resolve, user)
    check_updated(first_use, old, user.offered, user.progress)
    check_upscaled(resolve, user.then)


def test_the_script_and_its_setup_library_load_without_numpy_or_torch(fusion: Path) -> None:
    """Resolve's Python gets no numpy or torch from the script and realscale_setup (run here
    by a Python like Resolve's, isolated, with no realscale)."""
    code = ("import runpy, sys; g = runpy.run_path(sys.argv[1], run_name='realscale_resolve');"
            " s = g['setup_module'](); assert s is not None; s.detect();"
            " print(sorted(m for m in sys.modules if m.split('.')[0] in"
            " ('numpy', 'torch', 'realscale')))")
    done = subprocess.run(["/usr/bin/python3", "-I", "-c", code, str(fusion / SCRIPT)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


LUA = Path("Scripts") / "Edit" / "Upscale clip with Real-ESRGAN (Lua).lua"
NO_PYTHON = ("No Python was found on this computer: install Python 3.10 or newer from "
             "python.org (on Windows tick \"Add python.exe to PATH\"), then run this script "
             "again.")


def lua_world(fusion: Path, root: Path, monkeypatch: pytest.MonkeyPatch, **more: str) -> Path:
    """The free edition's user: the zip unpacked into Resolve's per-user Fusion folder of an
    empty home, nothing set up; the shell finds the Python these tests run on (only to run
    realscale_setup.py, which looks for the engine's Python where ``world`` says).
    Returns the installed Lua script."""
    home = root / "home"
    installed = home / ".local/share/DaVinciResolve/Fusion"
    installed.parent.mkdir(parents=True)
    shutil.copytree(fusion, installed)
    (root / "tmp").mkdir()
    env = world(root, HOME=str(home), TMPDIR=str(root / "tmp"),
                **{"PATH": f"{Path(sys.base_prefix) / 'bin'}:/usr/bin:/bin", **more})
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # the Lua script's children inherit it
    return installed / LUA


def test_the_free_edition_sets_the_engine_up_then_upscales(
        fusion: Path, small_sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Lua script (Resolve's free edition runs only Lua) with no engine: its set-up
    window offers what the Studio script's does, the set-up runs for real in the background
    (realscale_setup.py through the job runner, its JSON progress shown), and the upscale
    dialog then upscales through the new engine. LuaJIT, as Resolve embeds."""
    from resolve_lua import run_lua_script

    lua = lua_world(fusion, tmp_path, monkeypatch)
    resolve = scene(small_sample, source_start=5, length=3)[0]
    user = SetupUser(upscale_user(tmp_path / "out"))
    run_lua_script(resolve, user, runtime="luajit", script=lua, timeout=INSTALL_TIMEOUT)
    offered = user.offered
    config = tmp_path / "config" / "worker.json"
    assert offered["Intro"].startswith(
        f"realscale's engine is not set up ({config} is missing)."), offered
    assert re.search(r"realscale \d+\.\d+\.\d+ \(the version this script came with\)",
                     offered["Intro"]), offered
    assert offered["Python"].startswith("Python 3.") and sys.base_prefix in offered["Python"]
    assert user.backends == ["CPU (ONNX Runtime) (recommended)"]  # no NVIDIA GPU here
    assert offered["Size"].startswith("about 610 MB"), offered
    folder = tmp_path / "data" / "realscale" / "engine"
    assert offered["Folder"] == str(folder) and offered["Problem"] == ""
    phases = [text.split(":")[0].split(" (")[0] for text in user.progress]
    for phase in ("Making the environment", "Downloading", "Checking the engine"):
        assert phase in phases, user.progress
    assert any(re.search(r"\(\d+%\)$", text) for text in user.progress), user.progress
    [env] = envs(folder)
    assert json.loads(config.read_text())["python"] == str(folder / env / "bin" / "python")
    record = json.loads((folder / "engine.json").read_text())
    assert (record["env"], record["backend"], record["extras"]) == (env, "cpu", ["video"])
    check_upscaled(resolve, user.then)
    assert not list((tmp_path / "tmp").glob("realscale-*")), "job files left"


def test_the_free_edition_offers_the_update_of_an_engine_of_another_protocol(
        first_use: dict[str, Any], fusion: Path, small_sample: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The Lua script with the engine the first use set up made to speak another protocol:
    before the upscale dialog it asks realscale_setup.py whether the engine is outdated,
    offers "Update the engine" (pressed) in its set-up window, runs realscale_setup.py update
    through the job runner, and the upscale dialog then works through the new engine.
    LuaJIT, as Resolve embeds."""
    from resolve_lua import run_lua_script

    lua = lua_world(fusion, tmp_path, monkeypatch,
                    XDG_DATA_HOME=first_use["env"]["XDG_DATA_HOME"],
                    REALSCALE_WORKER_CONFIG=first_use["env"]["REALSCALE_WORKER_CONFIG"])
    old = speak_another_protocol(first_use["folder"])
    resolve = scene(small_sample, source_start=5, length=3)[0]
    user = SetupUser(upscale_user(tmp_path / "out"))
    run_lua_script(resolve, user, runtime="luajit", script=lua, timeout=INSTALL_TIMEOUT)
    assert set(user.offered) == {"Intro", "Folder", "Problem", "Progress", "Install",
                                 "Cancel"}, user.offered  # no Python, backend, size to choose
    assert user.offered["Intro"].endswith("the engine in use keeps working until the new one "
                                          "answers."), user.offered
    check_updated(first_use, old, user.offered, user.progress)
    check_upscaled(resolve, user.then)
    assert not list((tmp_path / "tmp").glob("realscale-*")), "job files left"


@pytest.mark.parametrize(("runtime", "how"), [("lua51", "Cancel"),
                                              ("luajit", "closing the window")])
def test_the_free_edition_cancelled_during_pip_leaves_nothing(
        fusion: Path, small_sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        runtime: str, how: str) -> None:
    """Cancelled while pip runs (Cancel, or the window's X), into a folder the user typed:
    pip is stopped, no environment, no config, no folder the set-up made, no job files."""
    from resolve_lua import run_lua_script

    lua = lua_world(fusion, tmp_path, monkeypatch)
    resolve = scene(small_sample, source_start=5, length=3)[0]
    chosen = tmp_path / "my engines" / "realscale"
    # "... MB so far": pip is downloading (the phase itself starts before pip does)
    user = SetupUser(None, cancel_at="MB so far", folder=str(chosen),
                     close=how != "Cancel")  # no upscale dialog may follow
    run_lua_script(resolve, user, runtime=runtime, script=lua, timeout=INSTALL_TIMEOUT)
    log = cancelled_with_nothing_left(user, how, tmp_path)
    assert "-m pip install" in log.read_text()
    assert not list((tmp_path / "tmp").glob("realscale-*")), "job files left"
    done = subprocess.run(["pgrep", "-f", str(chosen)], capture_output=True, text=True,
                          check=False)
    assert done.stdout == "", "pip still runs"
    assert resolve.timeline.GetTrackCount("video") == 2


def test_the_free_edition_shows_a_failure_and_its_log_and_changes_nothing(
        fusion: Path, small_sample: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A forced failure in pip itself (no package index, no wheel folder), in Lua 5.1: the
    window shows realscale_setup's sentence and names its log; nothing is configured."""
    from resolve_lua import run_lua_script

    (tmp_path / "no-wheels").mkdir()
    lua = lua_world(fusion, tmp_path, monkeypatch, PIP_CONFIG_FILE=os.devnull,
                    PIP_NO_INDEX="1", PIP_FIND_LINKS=str(tmp_path / "no-wheels"))
    resolve = scene(small_sample, source_start=5, length=3)[0]
    user = SetupUser(None)
    run_lua_script(resolve, user, runtime="lua51", script=lua, timeout=INSTALL_TIMEOUT)
    missing_package_reported(user, tmp_path)
    assert not list((tmp_path / "tmp").glob("realscale-*")), "job files left"


@pytest.mark.parametrize("runtime", ["lua51", "luajit"])
def test_the_free_edition_with_no_python_says_so_and_changes_nothing(
        fusion: Path, small_sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        runtime: str) -> None:
    """No Python on the shell's PATH (an empty folder): one sentence, nothing made."""
    from resolve_lua import run_lua_script

    (tmp_path / "empty").mkdir()
    lua = lua_world(fusion, tmp_path, monkeypatch, PATH=str(tmp_path / "empty"))
    resolve = scene(small_sample, source_start=5, length=3)[0]
    user = User({})
    run_lua_script(resolve, user, runtime=runtime, script=lua)
    assert user.result == NO_PYTHON
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "home", "tmp"]
    assert not list((tmp_path / "tmp").iterdir())


OLD_PYTHON = Path.home() / ".pyenv/versions/3.9.18/bin/python3.9"
"""A Python older than realscale_setup's 3.10, as Resolve Studio may run scripts with."""


def test_studio_on_an_older_python_names_the_command(fusion: Path, tmp_path: Path) -> None:
    """Resolve Studio running its scripts with Python 3.9: realscale_setup cannot run there,
    so the script names the terminal command (as the Lua script does) and opens nothing
    else. Run by that very Python, with the fake Resolve, in a process of its own."""
    if not OLD_PYTHON.is_file():
        pytest.fail(f"{OLD_PYTHON} is missing: install Python 3.9 with pyenv for this test")
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import json, runpy, sys\n"
        f"sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
        "from fakes.resolve import FakeBmd, FakeResolve\n"
        "seen = []\n"
        "def user(window, dispatcher):\n"
        "    if window.id == 'RealscaleMessage':\n"
        "        seen.append(window.widgets['Message'].Text)\n"
        "        window.click('OK')\n"
        "    else:\n"
        "        seen.append('window ' + window.id)\n"
        "        dispatcher.ExitLoop()\n"
        "resolve = FakeResolve()\n"
        "runpy.run_path(sys.argv[1], init_globals={'resolve': resolve, 'fusion': "
        "resolve.Fusion(), 'bmd': FakeBmd(user, timeout=60)}, run_name='__main__')\n"
        "print(json.dumps(seen))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(world(tmp_path))
    done = subprocess.run([str(OLD_PYTHON), "-I", str(driver), str(fusion / SCRIPT)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    [message] = json.loads(done.stdout.splitlines()[-1])
    setup = fusion / MODULES / "realscale_setup.py"
    assert message == (
        f"The realscale worker is not set up (no {tmp_path / 'config' / 'worker.json'}). "
        "Setting it up from here needs Python 3.10 or newer, and Resolve runs this script with "
        f'Python 3.9: in a terminal run python3 "{setup}" install --extras video (Windows: '
        "py -3 instead of python3), then run this script again."), message
    assert not (tmp_path / "config").exists() and not (tmp_path / "data").exists()
