"""The hosts realscale installs into, each described once: its per-user plug-in folders on
each system and the steps that are its own. ``install``, ``uninstall``, ``package`` and
``doctor`` ask a :class:`Host`; none of them names a host.

What each host needs besides copying its manifest's files (``plugins/<host>/manifest.json``):

- GIMP 3 reads plug-ins only from its own version's folder (``GIMP/3.0``, ``GIMP/3.2``, ...)
  and copies the previous version's folder, plug-ins included, on its first start; so an
  install goes into every version folder that exists and an uninstall also takes back the
  copies GIMP made.
- Krita loads a Python plug-in only once ``enable_<name>=true`` is in the ``[python]``
  section of its kritarc, and reads ``.action`` files only from ``actions/`` beside
  ``pykrita/``.
- DaVinci Resolve lists every script in ``Fusion/Scripts/Edit`` under Workspace > Scripts
  (and every sub-folder there as a sub-menu), so a module its scripts load goes outside
  ``Scripts``: its plug-in folder is the per-user ``Fusion`` folder.

Standard library only: ``realscale install`` and ``doctor`` start fast.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RealscaleError
from . import records
from .files import read_text, sha256, write_text
from .ini import remove_ini_value, set_ini_value

GIMP_VERSION_FOLDER = re.compile(r"3\.(\d+)")
"""A GIMP 3 per-user folder's name: ``3.0``, ``3.2``, ... (the minor version)."""


def _home() -> Path:
    return Path(os.path.expanduser("~"))


def _appdata() -> Path:
    return Path(os.environ.get("APPDATA") or _home() / "AppData" / "Roaming")


def _xdg(variable: str, default: str) -> Path:
    value = os.environ.get(variable, "")
    # The XDG spec says a relative value is invalid and must be ignored.
    return Path(value) if value and os.path.isabs(value) else _home() / default


def _config_home(platform: str) -> Path:
    """The per-user application settings folder of each system."""
    if platform == "win32":
        return _appdata()
    if platform == "darwin":
        return _home() / "Library" / "Application Support"
    return _xdg("XDG_CONFIG_HOME", ".config")


def _data_home(platform: str) -> Path:
    """The per-user application data folder of each system."""
    if platform == "win32":
        return _appdata()
    if platform == "darwin":
        return _home() / "Library" / "Application Support"
    return _xdg("XDG_DATA_HOME", ".local/share")


@dataclass(frozen=True)
class Host:
    """A host application: where its per-user plug-ins live and what an install of a plug-in
    needs there besides its files. The base class is a host with no steps of its own."""

    name: str
    """As on the command line and in ``plugins/<name>/``."""
    label: str
    """As a user knows it."""

    def folders(self, platform: str) -> list[Path]:
        """The per-user plug-in folders ``realscale install`` writes to on ``platform``
        (``sys.platform``'s spelling)."""
        raise NotImplementedError

    def target(self, folder: Path, dest: str) -> Path:
        """Where a manifest file with this ``dest`` goes when installing into ``folder``."""
        return folder / dest

    def enable(self, plugin: str, record_path: Path, record: dict[str, Any]) -> Path | None:
        """Make the host load the plug-in ``plugin`` just installed; note what was done in
        ``record`` so that :meth:`disable` undoes it. Returns the settings file changed."""
        return None

    def disable(self, record: dict[str, Any]) -> None:
        """Undo :meth:`enable` (the install's record file is already gone)."""

    def remove_copies(self, record: dict[str, Any]) -> list[Path]:
        """Remove the copies the host made of an install; returns the files removed."""
        return []

    def folder_state(self, folder: Path, installed_here: bool, installed_anywhere: bool,
                     complete: bool) -> tuple[str, bool]:
        """What ``doctor`` adds about one of :meth:`folders` where realscale has no install
        record, and whether that is a problem; ``complete``: the plug-in's files are all
        there all the same."""
        return "", False

    def settings_files(self, platform: str) -> list[tuple[str, Path]]:
        """Settings files an install changes, for ``doctor``: (label, path)."""
        return []


# -- GIMP -------------------------------------------------------------------------------


def _gimp_folders(config: Path) -> list[Path]:
    """``plug-ins`` of every GIMP 3 version folder (``GIMP/3.0``, ``GIMP/3.2``, ...) under
    ``config`` that exists, oldest version first."""
    try:
        entries = list((config / "GIMP").iterdir())
    except OSError:
        return []
    found = []
    for entry in entries:
        match = GIMP_VERSION_FOLDER.fullmatch(entry.name)
        if match and entry.is_dir():
            found.append((int(match[1]), entry / "plug-ins"))
    return [folder for _minor, folder in sorted(found)]


class Gimp(Host):
    def folders(self, platform: str) -> list[Path]:
        """GIMP 3 reads only its own version's folder, so every one that exists, natively and
        in the Flatpak's sandbox (once the Flatpak has run); ``GIMP/3.0`` when none exists
        yet, which a newer GIMP copies on its first start. $GIMP3_DIRECTORY replaces them."""
        if os.environ.get("GIMP3_DIRECTORY"):
            return [Path(os.environ["GIMP3_DIRECTORY"]) / "plug-ins"]
        config = _config_home(platform)
        native = _gimp_folders(config)
        flatpak_app = _home() / ".var" / "app" / "org.gimp.GIMP"
        flatpak: list[Path] = []
        if platform not in ("win32", "darwin") and flatpak_app.is_dir():
            flatpak = (_gimp_folders(flatpak_app / "config")
                       or [flatpak_app / "config" / "GIMP" / "3.0" / "plug-ins"])
        if not native and not flatpak:
            native = [config / "GIMP" / "3.0" / "plug-ins"]
        return native + flatpak

    def remove_copies(self, record: dict[str, Any]) -> list[Path]:
        """On its first start a newer GIMP 3 copies the older version's whole folder
        (``GIMP/3.0`` to ``GIMP/3.2``), plug-ins included, and then reads only its own. Only
        files identical to what was installed go, and only from a version folder that has no
        install record of its own."""
        folder = Path(record.get("folder", ""))
        if (folder.name != "plug-ins" or not GIMP_VERSION_FOLDER.fullmatch(folder.parent.name)
                or not folder.parent.parent.is_dir()):
            return []
        removed: list[Path] = []
        inside = [Path(d).relative_to(folder) for d in record.get("dirs", [])
                  if Path(d) != folder and Path(d).is_relative_to(folder)]
        for version in sorted(folder.parent.parent.iterdir()):
            copy_root = version / "plug-ins"
            if (version == folder.parent or not GIMP_VERSION_FOLDER.fullmatch(version.name)
                    or not copy_root.is_dir()
                    or records.record_path(self.name, copy_root).is_file()):
                continue
            for entry in record.get("files", []):
                original = Path(entry["path"])
                if not original.is_relative_to(folder):
                    continue
                copy = copy_root / original.relative_to(folder)
                if (copy.is_file() and not copy.is_symlink()
                        and sha256(copy) == entry.get("sha256")):
                    copy.unlink()
                    removed.append(copy)
            records.remove_empty(copy_root / relative for relative in inside)
        return removed

    def folder_state(self, folder: Path, installed_here: bool, installed_anywhere: bool,
                     complete: bool) -> tuple[str, bool]:
        if installed_here or not installed_anywhere or not folder.parent.is_dir():
            return "", False
        # Each GIMP 3 version reads only its own folder: one the user runs lacks it.
        if complete:
            return ("holds a copy GIMP made of another version's plug-ins; "
                    "`realscale install gimp` takes it over"), False
        return ("PROBLEM: the plug-in is not installed for this GIMP version; run "
                "`realscale install gimp` again"), True


# -- Krita ------------------------------------------------------------------------------


def kritarc_path(platform: str | None = None) -> Path:
    """Krita's per-user settings file (Qt's generic config location)."""
    platform = platform or sys.platform
    if platform == "win32":
        local = os.environ.get("LOCALAPPDATA") or str(_home() / "AppData" / "Local")
        return Path(local) / "kritarc"
    if platform == "darwin":
        return _home() / "Library" / "Preferences" / "kritarc"
    return _xdg("XDG_CONFIG_HOME", ".config") / "kritarc"


class Krita(Host):
    def folders(self, platform: str) -> list[Path]:
        return [_data_home(platform) / "krita" / "pykrita"]

    def target(self, folder: Path, dest: str) -> Path:
        """Krita reads ``.action`` files (menu entries and default shortcuts) only from the
        ``actions`` folder beside ``pykrita``, as its own importer does."""
        if dest.endswith(".action") and "/" not in dest:
            return folder.parent / "actions" / dest
        return folder / dest

    def enable(self, plugin: str, record_path: Path, record: dict[str, Any]) -> Path | None:
        """``enable_<plugin>=true`` in kritarc's ``[python]``; the value from before is kept
        in the record (from before every install, when another install enabled it too)."""
        rc = kritarc_path()
        before = read_text(rc) or ""
        key = f"enable_{plugin}"
        text, previous = set_ini_value(before, "python", key, "true")
        if text != before:
            write_text(rc, text)
        earlier = records.shared(record_path, "kritarc", str(rc))
        record["kritarc"] = {"path": str(rc), "section": "python", "key": key,
                             "previous": earlier["previous"] if earlier else previous}
        return rc

    def disable(self, record: dict[str, Any]) -> None:
        rc = record.get("kritarc")
        if not rc:
            return
        path = Path(rc["path"])
        if any((r.get("kritarc") or {}).get("path") == str(path) for _p, r in records.records()):
            return  # another install still needs the plug-in enabled
        text = read_text(path)
        if text is None:
            return
        if rc.get("previous") is None:
            new = remove_ini_value(text, rc["section"], rc["key"])
        else:
            new, _ = set_ini_value(text, rc["section"], rc["key"], rc["previous"])
        if new != text:
            write_text(path, new)

    def settings_files(self, platform: str) -> list[tuple[str, Path]]:
        return [("kritarc", kritarc_path(platform))]


# -- DaVinci Resolve --------------------------------------------------------------------


class Resolve(Host):
    def folders(self, platform: str) -> list[Path]:
        """The per-user Fusion folder: the manifest puts the scripts into its Scripts/Edit,
        listed under Workspace > Scripts on the Edit page, and realscale_wire.py into
        Modules/realscale, which no menu lists."""
        if platform == "win32":
            base = _appdata() / "Blackmagic Design" / "DaVinci Resolve" / "Support"
        elif platform == "darwin":
            base = (_home() / "Library" / "Application Support" / "Blackmagic Design"
                    / "DaVinci Resolve")
        else:
            base = _home() / ".local" / "share" / "DaVinciResolve"
        return [base / "Fusion"]


HOST_LIST: tuple[Host, ...] = (Gimp("gimp", "GIMP"), Krita("krita", "Krita"),
                               Resolve("resolve", "DaVinci Resolve"))
HOSTS = tuple(host.name for host in HOST_LIST)
"""The host names, as the command line takes them."""


def host(name: str) -> Host:
    """The host called ``name``; RealscaleError naming the others when there is none."""
    for candidate in HOST_LIST:
        if candidate.name == name:
            return candidate
    msg = f"unknown host {name!r}; choose one of {', '.join(HOSTS)}"
    raise RealscaleError(msg)


def host_folders(name: str, platform: str | None = None) -> list[Path]:
    """The per-user plug-in folders ``realscale install NAME`` writes to."""
    return host(name).folders(platform or sys.platform)
