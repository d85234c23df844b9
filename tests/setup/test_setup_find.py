"""Finding a Python and choosing a backend: each system's folder layout laid out for real in
a temporary folder, real Pythons of this machine asked, and no Python at all."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _exe(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_windows_layout(rs: ModuleType, tmp_path: Path) -> None:
    home, local = tmp_path / "Users" / "ann", tmp_path / "Users" / "ann" / "AppData" / "Local"
    per_user = _exe(local / "Programs" / "Python" / "Python312" / "python.exe")
    all_users = _exe(tmp_path / "PF" / "Python311" / "python.exe")
    old_style = _exe(tmp_path / "C" / "Python310" / "python.exe")
    on_path = _exe(tmp_path / "tools" / "python.exe")
    _exe(tmp_path / "PF" / "Python311" / "pythonw.exe")  # not the one to run
    environ = {"LOCALAPPDATA": str(local), "ProgramFiles": str(tmp_path / "PF"),
               "ProgramFiles(x86)": str(tmp_path / "PF86"), "SystemDrive": str(tmp_path / "C"),
               "PATH": str(tmp_path / "tools")}
    found = rs.candidate_paths(system="win32", environ=environ, home=str(home))
    assert found == [(str(on_path), "PATH"), (str(per_user), "install folder"),
                     (str(all_users), "install folder"), (str(old_style), "install folder")]


def test_macos_layout_skips_apples_stub(rs: ModuleType, tmp_path: Path) -> None:
    root, home = tmp_path / "root", tmp_path / "home"
    framework = _exe(root / "Library/Frameworks/Python.framework/Versions/3.12/bin/python3")
    brew = _exe(root / "opt/homebrew/bin/python3.13")
    _exe(root / "usr/bin/python3")  # Apple's 3.9 stub: may ask to install developer tools
    pyenv = _exe(home / ".pyenv/versions/3.11.9/bin/python3")
    environ = {"PATH": os.pathsep.join([str(root / "usr/bin"), str(root / "opt/homebrew/bin")])}
    found = rs.candidate_paths(system="darwin", environ=environ, home=str(home), root=str(root))
    assert found == [(str(brew), "PATH"), (str(framework), "install folder"),
                     (str(brew), "install folder"), (str(pyenv), "install folder")]


def test_linux_layout(rs: ModuleType, tmp_path: Path) -> None:
    root, home = tmp_path / "root", tmp_path / "home"
    system = _exe(root / "usr/bin/python3.12")
    _exe(root / "usr/bin/python3.12-config")  # not an interpreter
    local = _exe(root / "usr/local/bin/python3.13")
    uv = _exe(home / ".local/share/uv/python/cpython-3.12.8-linux-x86_64-gnu/bin/python3")
    conda = _exe(home / "miniconda3/bin/python3")
    (root / "usr/bin/python3.11").write_text("")  # not executable: not a candidate
    found = rs.candidate_paths(system="linux", environ={"PATH": ""}, home=str(home),
                               root=str(root))
    assert found == [(str(system), "install folder"), (str(local), "install folder"),
                     (str(uv), "install folder"), (str(conda), "install folder")]


def test_real_pythons_are_asked_and_broken_ones_ignored(rs: ModuleType, tmp_path: Path) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "python3").symlink_to(sys.executable)
    # like a pyenv shim for a version that is not selected: it exists, runs, and fails
    _exe(folder / "python3.12", "#!/bin/sh\necho 'pyenv: python3.12: command not found' >&2\n"
         "exit 127\n")
    (folder / "python3.13").symlink_to(folder / "missing")  # a dangling link
    good, bad = rs.find_pythons([str(folder)])
    assert [p.version for p in good] == [tuple(sys.version_info[:3])] and bad == []
    assert good[0].source == "PATH" and os.path.samefile(good[0].path, sys.executable)


def test_old_python_is_named_in_the_message(rs: ModuleType, tmp_path: Path) -> None:
    # This machine's Pythons are all new enough: a program that answers the probe as
    # Python 3.9 does stands in for an old one.
    folder = tmp_path / "bin"
    answer = json.dumps({"version": [3, 9, 18], "executable": "/old/python3", "bits": 64,
                         "gil": False, "venv": True})
    _exe(folder / "python3", f"#!/bin/sh\necho '{answer}'\n")
    good, bad = rs.find_pythons([str(folder)])
    assert good == [] and bad[0].problem.startswith("Python 3.9.18 is too old")
    message = rs.no_python_message(bad)
    assert "3.9.18 is too old" in message and message.count(". ") == 0


def test_no_python_gives_one_line_and_changes_nothing(
        rs: ModuleType, user: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = user / "empty"
    empty.mkdir()
    monkeypatch.setenv(rs.SEARCH_ENV, str(empty))  # how a host test points the search away
    folder = user / "engine"
    plan = rs.detect(str(folder))
    assert plan.python is None and plan.pythons == [] and plan.uv is None
    assert plan.problem.startswith("No Python 3.10 or newer was found on this computer;")
    assert "\n" not in plan.problem and plan.problem.endswith("then try again.")
    result = rs.install(plan).run()
    assert not result.ok and result.message == plan.problem
    assert not folder.exists()
    assert not Path(os.environ["REALSCALE_WORKER_CONFIG"]).exists()
    assert Path(result.log).is_file()


@pytest.mark.parametrize(("system", "gpu", "expected"), [
    ("linux", None, ["cpu"]),
    ("linux", "NVIDIA GeForce RTX 4070", ["cuda", "cpu"]),
    ("win32", None, ["cpu", "directml"]),
    ("win32", "NVIDIA GeForce GTX 1660", ["cuda", "cpu", "directml"]),
    ("darwin", None, ["coreml", "mps", "cpu"]),
])
def test_backend_choice(rs: ModuleType, system: str, gpu: str | None,
                        expected: list[str]) -> None:
    backends = rs.choose_backends(system, gpu)
    assert [b.name for b in backends] == expected
    assert [b.recommended for b in backends] == [True] + [False] * (len(expected) - 1)
    cuda = next((b for b in backends if b.name == "cuda"), None)
    if cuda is not None:
        assert gpu in cuda.label and cuda.extras == ("torch",) and cuda.size_text == "several GB"
        assert (cuda.index is not None) == (system == "win32")  # Windows' default torch: CPU
    cpu = next(b for b in backends if b.name == "cpu")
    assert cpu.extras == () and cpu.swap is None and "MB" in cpu.size_text
    if system == "win32":
        assert next(b for b in backends if b.name == "directml").swap == (
            "onnxruntime", "onnxruntime-directml")


def test_nvidia_gpu_from_nvidia_smi_or_the_driver(rs: ModuleType, tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    no_driver = str(tmp_path / "proc-none")
    assert rs.nvidia_gpu([str(tools)], proc=no_driver) is None
    # nvidia-smi cannot run on this machine (no GPU): a program answering as it does
    _exe(tools / "nvidia-smi", "#!/bin/sh\n[ \"$1\" = -L ] && echo "
         "'GPU 0: NVIDIA GeForce RTX 4090 (UUID: GPU-1c2d3e4f-0000-1111-2222-333344445555)'\n")
    assert rs.nvidia_gpu([str(tools)], proc=no_driver) == "NVIDIA GeForce RTX 4090"
    (tmp_path / "proc" / "gpus" / "0000:01:00.0").mkdir(parents=True)
    assert rs.nvidia_gpu([str(tmp_path / "empty")], proc=str(tmp_path / "proc")) == "NVIDIA GPU"


def test_default_folders(rs: ModuleType, monkeypatch: pytest.MonkeyPatch,
                         tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert rs.default_folder() == str(tmp_path / "xdg" / "realscale" / "engine")
    assert rs.log_dir() == str(tmp_path / "xdg" / "realscale" / "logs")
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    assert rs.default_folder() == os.path.expanduser("~/.local/share/realscale/engine")


def test_bundled_wheel_is_the_newest_beside_the_module(rs: ModuleType, tmp_path: Path,
                                                        plugin_dir: Path) -> None:
    for name in ("realscale-0.9.0-py3-none-any.whl", "realscale-0.10.0-py3-none-any.whl",
                 "realscale-0.11.0-cp312-cp312-linux_x86_64.whl", "other-1.0-py3-none-any.whl"):
        (tmp_path / name).write_bytes(b"")
    assert rs.bundled_wheel(str(tmp_path)) == str(tmp_path / "realscale-0.10.0-py3-none-any.whl")
    assert rs.bundled_wheel(str(tmp_path / "none")) is None
    (ours,) = plugin_dir.glob("realscale-*.whl")
    assert rs.bundled_wheel() == str(ours)
