"""The Resolve script against Resolve's documented API, statically.

- mypy checks the script against fusionscript-stubs (Resolve 21's scripting README as
  types): every Resolve call it makes exists, with that signature;
- the fake Resolve offers only documented methods, with the documented parameter names;
- the script is Python 3.6 code (Resolve runs it with the user's Python, 3.6 or later);
- the manifest installs the two menu entries, and realscale_wire.py outside the menus.
"""

from __future__ import annotations

import ast
import glob
import importlib.util
import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fakes import resolve as fake

ROOT = Path(__file__).resolve().parents[3]
PLUGIN = ROOT / "plugins" / "resolve"
SCRIPT = PLUGIN / "realscale_resolve.py"


def stubs() -> Path:
    """fusionscript-stubs' file (a stub-only package: found on the path, not importable)."""
    for folder in sys.path:
        candidate = Path(folder) / "fusionscript-stubs" / "fusionscript.pyi"
        if candidate.is_file():
            return candidate
    pytest.skip("fusionscript-stubs is not installed (pip install fusionscript-stubs)")


def test_mypy_checks_the_script_against_fusionscript_stubs(tmp_path) -> None:
    stubs()
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install mypy)")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--python-version", "3.10",
         "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", str(SCRIPT)],
        capture_output=True, text=True, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_would_catch_a_wrong_resolve_call(tmp_path) -> None:
    """The check has teeth: a call the stubs do not allow fails it."""
    stubs()
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed")
    text = SCRIPT.read_text()
    wrong = text.replace("item.AddTake(clip, job.left, end)", "item.AddTake(clip, job.left)")
    assert wrong != text
    broken = tmp_path / "broken.py"
    broken.write_text(wrong)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--python-version", "3.10",
         "--cache-dir", str(tmp_path / "cache"), str(broken)],
        capture_output=True, text=True, check=False)
    assert done.returncode == 1 and '"AddTake" of "TimelineItem"' in done.stdout


FAKES = {
    fake.FakeResolve: "Resolve", fake.FakeProjectManager: "ProjectManager",
    fake.FakeProject: "Project", fake.FakeMediaPool: "MediaPool", fake.FakeFolder: "Folder",
    fake.FakeMediaPoolItem: "MediaPoolItem", fake.FakeTimeline: "Timeline",
    fake.FakeTimelineItem: "TimelineItem",
}


def documented_methods() -> dict[str, dict[str, list[list[str]]]]:
    """Class -> method -> parameter names of each documented form (overloads)."""
    tree = ast.parse(stubs().read_text())
    found: dict[str, dict[str, list[list[str]]]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            methods = found.setdefault(node.name, {})
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    names = [a.arg for a in item.args.args[1:]]
                    methods.setdefault(item.name, []).append(names)
    return found


@pytest.mark.parametrize("fake_class", list(FAKES), ids=lambda c: c.__name__)
def test_the_fake_offers_only_documented_methods(fake_class) -> None:
    documented = documented_methods()[FAKES[fake_class]]
    for name, member in vars(fake_class).items():
        if not name[:1].isupper() or not callable(member):
            continue
        assert name in documented, f"{FAKES[fake_class]}.{name} is not documented"
        params = [p for p in inspect.signature(member).parameters if p != "self"]
        forms = documented[name]
        assert params in forms, f"{FAKES[fake_class]}.{name}{tuple(params)} is none of {forms}"


def python36() -> str | None:
    """A Python 3.6 that runs (pyenv's shims exist even when they cannot)."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.6*/bin/python3.6")))
    candidates.append(shutil.which("python3.6") or "")
    for candidate in filter(None, candidates):
        works = subprocess.run([candidate, "-c", "import sys; assert sys.version_info[:2] == "
                                "(3, 6)"], capture_output=True, check=False)
        if works.returncode == 0:
            return candidate
    return None


def test_the_script_is_python_36() -> None:
    ast.parse(SCRIPT.read_text(), feature_version=(3, 6))
    interpreter = python36()
    if interpreter is None:
        pytest.skip("no Python 3.6 here to import the script with")
    done = subprocess.run(
        [interpreter, "-c", "import runpy, sys; g = runpy.run_path(sys.argv[1], "
         "run_name='realscale_resolve'); print(sorted(k for k in g if k[0].isupper())[:3])",
         str(SCRIPT)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_the_script_imports_nothing_heavy() -> None:
    tree = ast.parse(SCRIPT.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= set(sys.stdlib_module_names) | {"fusionscript", "DaVinciResolveScript",
                                                       "realscale_setup"}
    # The set-up library it imports (from Modules/realscale) is standard library only too.
    setup = ast.parse((ROOT / "plugins" / "common" / "realscale_setup.py").read_text())
    used = {alias.name.split(".")[0] for node in ast.walk(setup)
            if isinstance(node, ast.Import) for alias in node.names}
    used |= {node.module.split(".")[0] for node in ast.walk(setup)
             if isinstance(node, ast.ImportFrom) and node.module}
    assert used <= set(sys.stdlib_module_names) | {"realscale_client"}, used


def test_manifest_installs_two_menu_entries() -> None:
    """The Python script (Studio) and the Lua script (every edition) go into Scripts/Edit of
    Resolve's Fusion folder: each file there is a menu entry and each sub-folder a sub-menu,
    so nothing else goes there; realscale_wire.py, and the client and realscale_setup.py
    that set the engine up (beside the wheel in the zip), go into Modules/realscale, outside
    Scripts, which no menu lists."""
    manifest = json.loads((PLUGIN / "manifest.json").read_text())
    assert manifest["version"] == 1 and manifest["host"] == "resolve"
    assert manifest["wire_dest"] == "Modules/realscale/realscale_wire.py"
    assert manifest["client_dest"] == "Modules/realscale/realscale_client.py"
    assert manifest["setup_dest"] == "Modules/realscale/realscale_setup.py"
    entries = manifest["files"]
    assert [(e["src"], e["dest"]) for e in entries] == [
        ("realscale_resolve.py", "Scripts/Edit/Upscale clip with Real-ESRGAN.py"),
        ("realscale_resolve.lua", "Scripts/Edit/Upscale clip with Real-ESRGAN (Lua).lua")]
    for entry in entries:
        assert (PLUGIN / entry["src"]).is_file() and entry["executable"] is False
