"""realscale_setup.py run as a script (the terminal route of hosts whose scripts cannot run
the set-up: Resolve's free edition), by a host-like Python: what it says when it cannot
start. A real install through it is tested with the Lua script in
tests/hosts/resolve/test_resolve_setup.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from setup_support import HOST_PYTHON

from realscale.wire import PROTOCOL_VERSION


def _run(plugin_dir: Path, tmp_path: Path, *args: str, search: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"),
               REALSCALE_WORKER_CONFIG=str(tmp_path / "config" / "worker.json"),
               REALSCALE_SETUP_SEARCH=search)
    return subprocess.run([HOST_PYTHON, "-I", str(plugin_dir / "realscale_setup.py"), *args],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def test_no_python_is_one_sentence_and_changes_nothing(plugin_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = _run(plugin_dir, tmp_path, "install", "--extras", "video",
                search=str(tmp_path / "empty"))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("No Python 3.10 or newer was found on this computer;")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_a_backend_this_machine_lacks_is_refused(plugin_dir: Path, tmp_path: Path) -> None:
    import sys

    done = _run(plugin_dir, tmp_path, "install", "--backend", "directml",
                search=str(Path(sys.base_prefix) / "bin"))
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith("The directml backend is not offered on this machine; "
                                  "choose one of cpu"), done.stderr
    assert not (tmp_path / "config").exists() and not (tmp_path / "data").exists()


def test_info_without_an_engine(plugin_dir: Path, tmp_path: Path) -> None:
    done = _run(plugin_dir, tmp_path, "info", search="")
    assert done.returncode == 0 and done.stdout.startswith("No engine is set up"), done


def test_plan_is_one_json_line_of_what_a_dialog_shows(plugin_dir: Path, tmp_path: Path) -> None:
    """`plan`: what detect() found, for a dialog in another language (Resolve's Lua)."""
    import json
    import sys

    done = _run(plugin_dir, tmp_path, "plan", "--folder", str(tmp_path / "engine"),
                search=str(Path(sys.base_prefix) / "bin"))
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    plan = json.loads(line)
    assert plan["folder"] == str(tmp_path / "engine") and plan["problem"] == ""
    assert plan["python"].startswith("Python 3.") and sys.base_prefix in plan["python"]
    wheel = f"realscale-{plan['version']}-py3-none-any.whl"
    assert plan["version"] and plan["wheel"] == str(plugin_dir / wheel)
    assert [(b["name"], b["recommended"]) for b in plan["backends"]] == [("cpu", True)]
    assert not (tmp_path / "config").exists() and not (tmp_path / "data").exists()
    assert not (tmp_path / "engine").exists()


def test_json_progress_reports_a_refusal_as_its_result(plugin_dir: Path,
                                                       tmp_path: Path) -> None:
    """`--progress json`: even a set-up that cannot start ends with one result line."""
    import json

    (tmp_path / "empty").mkdir()
    done = _run(plugin_dir, tmp_path, "install", "--progress", "json",
                search=str(tmp_path / "empty"))
    assert done.returncode == 1 and done.stderr == ""
    [line] = done.stdout.splitlines()
    result = json.loads(line)
    assert (result["event"], result["ok"], result["cancelled"]) == ("result", False, False)
    assert result["message"].startswith("No Python 3.10 or newer was found on this computer;")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_outdated_is_one_json_line_and_starts_nothing(plugin_dir: Path, tmp_path: Path) -> None:
    """`outdated` (asked before every use by a host in another language): no engine, and an
    engine installed by hand (the Python these tests run on, which the plug-in must not
    replace), are not outdated; exit 0, one JSON line, nothing made."""
    import json
    import sys

    done = _run(plugin_dir, tmp_path, "outdated", search="")
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    none = json.loads(line)
    assert (none["outdated"], none["managed"], none["version"]) == (False, False, None)
    assert none["message"].startswith("No engine is set up"), none
    assert not (tmp_path / "config").exists() and not (tmp_path / "data").exists()

    config = tmp_path / "config" / "worker.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"version": 1, "python": sys.executable}))
    done = _run(plugin_dir, tmp_path, "outdated", search="")
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    by_hand = json.loads(line)
    assert (by_hand["outdated"], by_hand["managed"]) == (False, False), by_hand
    assert by_hand["plugin_protocol"] == PROTOCOL_VERSION
    assert not (tmp_path / "data").exists()
