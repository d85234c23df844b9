"""``realscale install`` and ``uninstall``: host plug-ins in and out.

An install copies the manifest's files (and the vendored modules) into each of the host's
per-user folders, writes the worker config that points at this environment's Python, lets
the host take its own steps (:mod:`.hosts`: Krita's kritarc), and writes an install record
of exactly what it did, so ``uninstall`` undoes exactly that and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__, wire
from ..errors import RealscaleError
from .files import read_text, sha256, write_json, write_text
from .hosts import host as find_host
from .ini import remove_ini_value, set_ini_value
from .manifest import Manifest, load_manifest
from .records import RECORD_VERSION, record_path, records, remove_empty, shared

__all__ = ["InstallReport", "default_config_path", "install", "records", "remove_ini_value",
           "set_ini_value", "uninstall", "uninstall_record", "worker_config"]


# -- the worker config ------------------------------------------------------------------


def default_config_path() -> Path:
    return Path(wire.config_path())


def worker_config(python: str, model_dirs: list[str] | None = None) -> dict[str, Any]:
    """The config a host client needs to start this environment's worker."""
    config: dict[str, Any] = {"version": wire.CONFIG_VERSION, "python": python}
    extra = _pythonpath_needed(python)
    if extra:
        config["pythonpath"] = extra
    if model_dirs:
        config["model_dirs"] = [str(Path(d).expanduser().resolve()) for d in model_dirs]
    return config


def _pythonpath_needed(python: str) -> list[str]:
    """The folder holding this realscale when ``python -m realscale`` would not find it by
    itself (a source checkout that was not pip-installed), else nothing."""
    here = Path(__file__).resolve().parents[1]
    probe = ("import importlib.util as u; s = u.find_spec('realscale'); "
             "print(s.origin if s and s.origin else '')")
    try:
        done = subprocess.run(
            [python, "-c", probe], capture_output=True, text=True, timeout=60,
            env=wire.worker_environment(), cwd=str(Path.home()), check=False)
        found = done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        found = ""
    if found and Path(found).resolve().parent == here:
        return []
    return [str(here.parent)]


# -- install / uninstall ----------------------------------------------------------------


@dataclass
class InstallReport:
    host: str
    folder: Path
    files: list[Path] = field(default_factory=list)
    config: Path | None = None
    settings: Path | None = None
    """The host's settings file the install changed to enable the plug-in (Krita's kritarc)."""
    record: Path | None = None


def install(host: str, *, dest: Path | None = None, plugins_root: Path | None = None,
            config: Path | None = None, write_config: bool = True,
            python: str | None = None, model_dirs: list[str] | None = None) -> list[InstallReport]:
    """Install the host plug-in into ``dest`` (default: each of the host's folders)."""
    manifest = load_manifest(host, plugins_root)
    folders = [dest] if dest is not None else find_host(host).folders(sys.platform)
    folders = [Path(os.path.abspath(folder)) for folder in folders]
    config_file = (config or default_config_path()) if write_config else None
    config_data = worker_config(python or sys.executable, model_dirs) if write_config else None
    # A reinstall replaces the earlier installs, all of them before the first new file: undoing
    # one also takes back the copies the host made of it in its other folders (GIMP).
    for folder in folders:
        earlier = record_path(host, folder)
        if earlier.is_file():
            uninstall_record(earlier, quiet=True)
    return [_install_into(manifest, folder, record_path(host, folder), config_file, config_data)
            for folder in folders]


def _install_into(manifest: Manifest, folder: Path, record_file: Path,
                  config_file: Path | None, config_data: dict[str, Any] | None) -> InstallReport:
    report = InstallReport(manifest.host, folder, record=record_file)
    record: dict[str, Any] = {
        "version": RECORD_VERSION, "host": manifest.host, "name": manifest.name,
        "folder": str(folder), "realscale": __version__,
        "installed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "files": [], "dirs": [], "kritarc": None, "config": None,
    }
    host = find_host(manifest.host)
    targets = [host.target(folder, f.dest) for f in manifest.files]
    try:
        for target in [folder] + sorted({t.parent for t in targets}, key=lambda p: len(p.parts)):
            missing = []
            while not target.exists():
                missing.append(target)
                target = target.parent
            for path in reversed(missing):
                path.mkdir()
                record["dirs"].append(str(path))
        for item, target in zip(manifest.files, targets, strict=True):
            if target.is_dir():
                msg = f"{target} is a folder; remove it or install elsewhere with --dest"
                raise RealscaleError(msg)
            shutil.copyfile(item.source, target)
            mode = 0o755 if item.executable else 0o644
            os.chmod(target, mode)
            record["files"].append({"path": str(target), "sha256": sha256(target)})
            report.files.append(target)
        report.settings = host.enable(manifest.name, record_file, record)
        if config_file is not None and config_data is not None:
            earlier = shared(record_file, "config", str(config_file))
            previous_text = earlier["previous"] if earlier else read_text(config_file)
            text = write_json(config_file, config_data, private=True)
            record["config"] = {"path": str(config_file), "text": text,
                                "previous": previous_text}
            report.config = config_file
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.filename and Path(exc.filename) != folder:
            reason += f": {exc.filename}"
        msg = (f"cannot install the {manifest.host} plug-in into {folder} ({reason}); make "
               "that folder writable or choose another with --dest")
        raise RealscaleError(msg) from None
    finally:
        # Written even when a step failed: uninstall can always take back what was done.
        write_json(record_file, record)
    return report


def uninstall(host: str, *, dest: Path | None = None) -> list[Path]:
    """Remove what ``install`` put in place for ``host`` (only in ``dest`` when given)."""
    found = records(host)
    if dest is not None:
        wanted = str(Path(os.path.abspath(dest)))
        found = [(path, record) for path, record in found if record.get("folder") == wanted]
    if not found:
        where = f" in {dest}" if dest is not None else ""
        msg = f"realscale has not installed the {host} plug-in{where} (no install record)"
        raise RealscaleError(msg)
    removed: list[Path] = []
    for path, _record in found:
        removed += uninstall_record(path)
    return removed


def uninstall_record(record_file: Path, quiet: bool = False) -> list[Path]:
    """Undo one install record (and the copies the host made of it); returns the
    files removed."""
    record = json.loads(record_file.read_text(encoding="utf-8"))
    removed: list[Path] = []
    for entry in record.get("files", []):
        target = Path(entry["path"])
        if target.is_file() or target.is_symlink():
            if not quiet and target.is_file() and sha256(target) != entry.get("sha256"):
                print(f"realscale: {target} was changed since it was installed; "
                      "removing it anyway", file=sys.stderr)
            target.unlink()
            removed.append(target)
    remove_empty(map(Path, record.get("dirs", [])))
    host = find_host(str(record.get("host")))
    removed += host.remove_copies(record)
    record_file.unlink()  # first: the restores below look for other installs' records
    host.disable(record)
    if record.get("config"):
        _restore_config(record["config"])
    for folder in (record_file.parent, record_file.parent.parent):
        with contextlib.suppress(OSError):  # left only while something else is in them
            folder.rmdir()
    return removed


def _restore_config(config: dict[str, Any]) -> None:
    path = Path(config["path"])
    if any((r.get("config") or {}).get("path") == str(path) for _p, r in records()):
        return  # another installed host still uses it
    current = read_text(path)
    if current != config.get("text"):
        return  # changed since: the user's now
    previous = config.get("previous")
    if previous is not None and previous != current:
        write_text(path, previous, private=True)
    else:
        path.unlink()
