"""``realscale install``, ``uninstall`` and ``package``: host plug-ins in, out, and zipped.

An install copies the manifest's files (and the vendored client) into the host's per-user
folder, writes the worker config that points at this environment's Python, enables the
plug-in where the host needs that (Krita's kritarc), and writes an install record of
exactly what it did, so ``uninstall`` undoes exactly that and nothing else.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import RealscaleError
from .files import write_json, write_text
from .manifest import Manifest, directories, load_manifest
from .paths import GIMP_VERSION_FOLDER, host_folders, kritarc_path

RECORD_VERSION = 1
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
"""Fixed timestamps: the same sources give the same zip, byte for byte."""


# -- small file helpers -----------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


# -- the worker config ------------------------------------------------------------------


def _protocol() -> Any:
    from ..worker import protocol

    return protocol


def default_config_path() -> Path:
    return Path(_protocol().config_path())


def records_dir() -> Path:
    return Path(_protocol().config_dir()) / "installs"


def worker_config(python: str, model_dirs: list[str] | None = None) -> dict[str, Any]:
    """The config a host client needs to start this environment's worker."""
    config: dict[str, Any] = {"version": _protocol().CONFIG_VERSION, "python": python}
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
            env=_protocol().client.worker_environment(), cwd=str(Path.home()), check=False)
        found = done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        found = ""
    if found and Path(found).resolve().parent == here:
        return []
    return [str(here.parent)]


# -- kritarc ----------------------------------------------------------------------------


def set_ini_value(text: str, section: str, key: str, value: str) -> tuple[str, str | None]:
    """Set ``key=value`` in ``[section]`` of a Qt INI text, keeping every other line.

    Returns the new text and the previous value (None when the key was absent).
    """
    lines = text.splitlines()
    header = f"[{section}]"
    start = next((i for i, line in enumerate(lines) if line.strip() == header), None)
    if start is None:
        if lines and lines[-1].strip():
            lines.append("")
        lines += [header, f"{key}={value}"]
        return "\n".join(lines) + "\n", None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")),
               len(lines))
    for i in range(start + 1, end):
        name, sep, old = lines[i].partition("=")
        if sep and name.strip() == key:
            lines[i] = f"{key}={value}"
            return "\n".join(lines) + "\n", old.strip()
    insert = end
    while insert > start + 1 and not lines[insert - 1].strip():
        insert -= 1  # keep the blank line before the next section
    lines.insert(insert, f"{key}={value}")
    return "\n".join(lines) + "\n", None


def remove_ini_value(text: str, section: str, key: str) -> str:
    lines = text.splitlines()
    inside = False
    kept = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            inside = stripped == f"[{section}]"
        elif inside and line.partition("=")[0].strip() == key and "=" in line:
            continue
        kept.append(line)
    return "\n".join(kept) + ("\n" if kept else "")


# -- install / uninstall ----------------------------------------------------------------


@dataclass
class InstallReport:
    host: str
    folder: Path
    files: list[Path] = field(default_factory=list)
    config: Path | None = None
    kritarc: Path | None = None
    record: Path | None = None


def _record_path(host: str, folder: Path) -> Path:
    key = hashlib.sha1(str(folder).encode("utf-8")).hexdigest()[:12]
    return records_dir() / f"{host}-{key}.json"


def records(host: str | None = None) -> list[tuple[Path, dict[str, Any]]]:
    """Install records, optionally of one host: (record file, record)."""
    folder = records_dir()
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and (host is None or record.get("host") == host):
            found.append((path, record))
    return found


def install(host: str, *, dest: Path | None = None, plugins_root: Path | None = None,
            config: Path | None = None, write_config: bool = True,
            python: str | None = None, model_dirs: list[str] | None = None) -> list[InstallReport]:
    """Install the host plug-in into ``dest`` (default: each of the host's folders)."""
    manifest = load_manifest(host, plugins_root)
    folders = [dest] if dest is not None else host_folders(host)
    folders = [Path(os.path.abspath(folder)) for folder in folders]
    config_file = (config or default_config_path()) if write_config else None
    config_data = worker_config(python or sys.executable, model_dirs) if write_config else None
    # A reinstall replaces the earlier installs, all of them before the first new file: undoing
    # one also takes back the copies GIMP made of it in the other folders.
    for folder in folders:
        record_path = _record_path(host, folder)
        if record_path.is_file():
            uninstall_record(record_path, quiet=True)
    return [_install_into(manifest, folder, _record_path(host, folder), config_file, config_data)
            for folder in folders]


def _install_into(manifest: Manifest, folder: Path, record_path: Path,
                  config_file: Path | None, config_data: dict[str, Any] | None) -> InstallReport:
    report = InstallReport(manifest.host, folder, record=record_path)
    record: dict[str, Any] = {
        "version": RECORD_VERSION, "host": manifest.host, "name": manifest.name,
        "folder": str(folder), "realscale": __version__,
        "installed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "files": [], "dirs": [], "kritarc": None, "config": None,
    }
    targets = [_target(manifest.host, folder, f.dest) for f in manifest.files]
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
            record["files"].append({"path": str(target), "sha256": _sha256(target)})
            report.files.append(target)
        if manifest.host == "krita":
            rc = kritarc_path()
            before = _read(rc) or ""
            key = f"enable_{manifest.name}"
            text, previous = set_ini_value(before, "python", key, "true")
            if text != before:
                write_text(rc, text)
            # Another install (--dest) enabled it already: keep the value from before both.
            earlier = _shared(record_path, "kritarc", str(rc))
            record["kritarc"] = {"path": str(rc), "section": "python", "key": key,
                                 "previous": earlier["previous"] if earlier else previous}
            report.kritarc = rc
        if config_file is not None and config_data is not None:
            earlier = _shared(record_path, "config", str(config_file))
            previous_text = earlier["previous"] if earlier else _read(config_file)
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
        write_json(record_path, record)
    return report


def _target(host: str, folder: Path, dest: str) -> Path:
    """Where a manifest file goes: Krita reads ``.action`` files (menu entries and default
    shortcuts) only from the ``actions`` folder beside ``pykrita``, as its own importer does."""
    if host == "krita" and dest.endswith(".action") and "/" not in dest:
        return folder.parent / "actions" / dest
    return folder / dest


def _shared(record_path: Path, key: str, path: str) -> dict[str, Any] | None:
    """The ``key`` entry (kritarc or config) of another install record on the same file."""
    for other_path, other in records():
        entry = other.get(key)
        if other_path != record_path and isinstance(entry, dict) and entry.get("path") == path:
            return entry
    return None


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


def uninstall_record(record_path: Path, quiet: bool = False) -> list[Path]:
    """Undo one install record (and, for GIMP, the copies GIMP made of it); returns the
    files removed."""
    record = json.loads(record_path.read_text(encoding="utf-8"))
    removed: list[Path] = []
    for entry in record.get("files", []):
        target = Path(entry["path"])
        if target.is_file() or target.is_symlink():
            if not quiet and target.is_file() and _sha256(target) != entry.get("sha256"):
                print(f"realscale: {target} was changed since it was installed; "
                      "removing it anyway", file=sys.stderr)
            target.unlink()
            removed.append(target)
    _remove_empty(map(Path, record.get("dirs", [])))
    removed += _remove_gimp_copies(record)
    record_path.unlink()  # first: the restores below look for other installs' records
    if record.get("kritarc"):
        _restore_kritarc(record["kritarc"])
    if record.get("config"):
        _restore_config(record["config"])
    for folder in (record_path.parent, record_path.parent.parent):
        with contextlib.suppress(OSError):  # left only while something else is in them
            folder.rmdir()
    return removed


def _remove_empty(folders: Iterable[Path]) -> None:
    """Remove the folders that are empty, deepest first (a ``__pycache__`` of ours too)."""
    for folder in sorted(folders, key=lambda p: -len(p.parts)):
        cache = folder / "__pycache__"
        if cache.is_dir() and all(p.suffix == ".pyc" for p in cache.iterdir()):
            shutil.rmtree(cache)  # the host compiled our modules there
        with contextlib.suppress(OSError):  # not empty: something else lives there now
            folder.rmdir()


def _remove_gimp_copies(record: dict[str, Any]) -> list[Path]:
    """Remove the copies of a GIMP install that GIMP itself made: on its first start a newer
    GIMP 3 copies the older version's whole folder (``GIMP/3.0`` to ``GIMP/3.2``), plug-ins
    included, and then reads only its own. Only files identical to what was installed go,
    and only from a version folder that has no install record of its own."""
    folder = Path(record.get("folder", ""))
    if (record.get("host") != "gimp" or folder.name != "plug-ins"
            or not GIMP_VERSION_FOLDER.fullmatch(folder.parent.name)
            or not folder.parent.parent.is_dir()):
        return []
    removed: list[Path] = []
    inside = [Path(d).relative_to(folder) for d in record.get("dirs", [])
              if Path(d) != folder and Path(d).is_relative_to(folder)]
    for version in sorted(folder.parent.parent.iterdir()):
        copy_root = version / "plug-ins"
        if (version == folder.parent or not GIMP_VERSION_FOLDER.fullmatch(version.name)
                or not copy_root.is_dir() or _record_path("gimp", copy_root).is_file()):
            continue
        for entry in record.get("files", []):
            original = Path(entry["path"])
            if not original.is_relative_to(folder):
                continue
            copy = copy_root / original.relative_to(folder)
            if copy.is_file() and not copy.is_symlink() and _sha256(copy) == entry.get("sha256"):
                copy.unlink()
                removed.append(copy)
        _remove_empty(copy_root / relative for relative in inside)
    return removed


def _restore_kritarc(rc: dict[str, Any]) -> None:
    path = Path(rc["path"])
    if any((r.get("kritarc") or {}).get("path") == str(path) for _p, r in records()):
        return  # another install still needs the plug-in enabled
    text = _read(path)
    if text is None:
        return
    if rc.get("previous") is None:
        new = remove_ini_value(text, rc["section"], rc["key"])
    else:
        new, _ = set_ini_value(text, rc["section"], rc["key"], rc["previous"])
    if new != text:
        write_text(path, new)


def _restore_config(config: dict[str, Any]) -> None:
    path = Path(config["path"])
    if any((r.get("config") or {}).get("path") == str(path) for _p, r in records()):
        return  # another installed host still uses it
    current = _read(path)
    if current != config.get("text"):
        return  # changed since: the user's now
    previous = config.get("previous")
    if previous is not None and previous != current:
        write_text(path, previous, private=True)
    else:
        path.unlink()


# -- package ----------------------------------------------------------------------------


def package(host: str, output: Path, *, plugins_root: Path | None = None) -> Path:
    """Build ``realscale-HOST-VERSION.zip`` in ``output``: the files at their ``dest`` paths,
    with an entry for every folder (Krita's importer finds nothing without them)."""
    manifest = load_manifest(host, plugins_root)
    output.mkdir(parents=True, exist_ok=True)
    target = output / f"realscale-{host}-{__version__}.zip"
    temp = target.with_name(target.name + ".tmp")
    with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for folder in directories([f.dest for f in manifest.files]):
            info = zipfile.ZipInfo(folder + "/", ZIP_DATE)
            info.create_system = 3  # unix: keep the mode bits below
            info.external_attr = (0o40755 << 16) | 0x10
            archive.writestr(info, b"")
        for item in manifest.files:
            info = zipfile.ZipInfo(item.dest, ZIP_DATE)
            info.create_system = 3
            info.external_attr = (0o100755 if item.executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, item.source.read_bytes())
    os.replace(temp, target)
    return target
