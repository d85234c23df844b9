"""Update and remove: a real engine of an older (fake) realscale version is installed,
then made to speak another protocol; the plug-in offers the update, the update replaces it
(the old engine serving until the new one answers), and remove takes it all away."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from types import ModuleType

import pytest
from setup_support import REPO, build_wheel

OLD = "0.0.1"


def _old_wheel(into: Path) -> Path:
    """realscale's wheel built from a copy of this tree that calls itself version OLD."""
    source = into / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for folder in ("core", "models", "plugins"):
        shutil.copytree(REPO / folder, source / folder, ignore=ignore)
    shutil.copy(REPO / "README.md", source / "README.md")
    project = (REPO / "pyproject.toml").read_text()
    (source / "pyproject.toml").write_text(
        re.sub(r'(?m)^version = "[^"]+"', f'version = "{OLD}"', project, count=1))
    init = source / "core" / "realscale" / "__init__.py"
    init.write_text(re.sub(r'__version__ = "[^"]+"', f'__version__ = "{OLD}"', init.read_text()))
    return build_wheel(source, into / "wheel")


def _speak_protocol(env: Path, version: int) -> None:
    """Make an installed engine speak another protocol (as a future realscale would)."""
    files = [p for p in env.glob("lib/python3*/site-packages/realscale/**/*.py")
             if re.search(r"(?m)^PROTOCOL_VERSION = 1$", p.read_text())]
    assert files, "no PROTOCOL_VERSION in the installed realscale"
    for path in files:
        path.write_text(re.sub(r"(?m)^PROTOCOL_VERSION = 1$", f"PROTOCOL_VERSION = {version}",
                               path.read_text()))


def test_update_from_an_older_engine_then_remove(rs: ModuleType, user: Path,
                                                 tmp_path: Path) -> None:
    current = rs.wheel_version(rs.bundled_wheel())
    assert current != OLD
    folder = user / "engine"
    config = Path(os.environ["REALSCALE_WORKER_CONFIG"])
    old = rs.install(rs.detect(str(folder), wheel=str(_old_wheel(tmp_path / "old")))).run()
    assert old.ok, old.message
    (old_env,) = folder.glob("env-*")
    assert old_env.name.startswith(f"env-{OLD}-")

    info = rs.engine_info()
    assert info.managed and info.version == OLD and info.update_offered
    assert info.message.endswith(f"An update to {current} is offered.")
    assert rs.outdated() is None  # older, but of this protocol: usable, nothing forced

    _speak_protocol(old_env, 2)
    info = rs.engine_info()
    assert info.protocol == 2 and info.update_offered and info.device is None
    assert info.message == (
        f"The engine (realscale {OLD} in {folder}) speaks protocol 2 and this plug-in speaks "
        f"{rs._client.PROTOCOL_VERSION}: update it to realscale {current}.")
    offered = rs.outdated()  # what a host asks before each use (Resolve's script does)
    assert offered is not None and offered.message == info.message
    client = rs._client.WorkerClient(config=str(config))
    with pytest.raises(rs._client.WorkerError):
        client.status()  # why the update is offered: this plug-in cannot use that engine
    client.close()

    phases: list[str] = []
    job = rs.update(on_progress=lambda p: phases.append(p.phase))
    result = job.run()
    assert result.ok, result.message
    assert phases[0] == "python" and phases[-1] == "done" and "check" in phases
    assert not old_env.exists(), "the old environment stays after the update"
    (new_env,) = folder.glob("env-*")
    assert new_env.name.startswith(f"env-{current}-")
    assert json.loads(config.read_text())["python"] == str(new_env / "bin" / "python")
    record = json.loads((folder / "engine.json").read_text())
    assert (record["backend"], record["extras"]) == ("cpu", [])
    assert rs.outdated() is None
    info = rs.engine_info()
    assert (info.version, info.protocol, info.update_offered) == (
        current, rs._client.PROTOCOL_VERSION, False)
    assert result.engine is not None and result.engine.version == current

    removed = rs.remove().run()
    assert removed.ok and removed.message == f"The engine in {folder} was removed."
    assert not folder.exists() and not config.exists()
    again = rs.remove().run()
    assert not again.ok and "nothing was removed" in again.message


def test_remove_leaves_an_engine_installed_by_hand(rs: ModuleType, user: Path) -> None:
    import sys

    config = Path(os.environ["REALSCALE_WORKER_CONFIG"])
    config.parent.mkdir(parents=True)
    text = json.dumps({"version": 1, "python": sys.executable})
    config.write_text(text)
    info = rs.engine_info(ask=False)
    assert not info.managed and info.python == sys.executable
    assert rs.outdated() is None  # never replaced: the user installed it
    result = rs.remove().run()
    assert not result.ok and sys.executable in result.message
    assert config.read_text() == text
    updated = rs.update().run()
    assert not updated.ok and updated.message.startswith("There is no engine set up by")
