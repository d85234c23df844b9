"""Where things are: the host plug-in sources, and each host's per-user folders.

Only the standard library, and no torch: ``realscale install`` and ``doctor`` start fast.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

from ..errors import RealscaleError

HOSTS = ("gimp", "krita", "resolve")
GIMP_VERSION_FOLDER = re.compile(r"3\.(\d+)")
"""A GIMP 3 per-user folder's name: ``3.0``, ``3.2``, ... (the minor version)."""
_PLUGINS_PACKAGE = "realscale.plugins_data"
"""The installed copy of the repository's plugins/ folder (package data of the wheel)."""


def plugins_root() -> Path:
    """The ``plugins/`` folder: $REALSCALE_PLUGINS_DIR, else the installed package data,
    else the source tree's ``plugins/`` beside ``core/``."""
    override = os.environ.get("REALSCALE_PLUGINS_DIR")
    if override:
        return Path(override)
    candidates = []
    try:
        spec = importlib.util.find_spec(_PLUGINS_PACKAGE)
    except (ImportError, ValueError):
        spec = None  # not installed as a wheel: the source tree
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(location) for location in spec.submodule_search_locations]
    candidates.append(Path(__file__).resolve().parents[3] / "plugins")
    for candidate in candidates:
        if (candidate / "common" / "realscale_client.py").is_file():
            return candidate
    msg = (
        f"the host plug-in files are missing (looked in {', '.join(map(str, candidates))}); "
        "reinstall realscale"
    )
    raise RealscaleError(msg)


def client_file(root: Path | None = None) -> Path:
    """The host client module every plug-in vendors (and the worker loads its framing from)."""
    return (root or plugins_root()) / "common" / "realscale_client.py"


def _home() -> Path:
    return Path(os.path.expanduser("~"))


def _appdata() -> Path:
    return Path(os.environ.get("APPDATA") or _home() / "AppData" / "Roaming")


def _xdg(variable: str, default: str) -> Path:
    value = os.environ.get(variable, "")
    # The XDG spec says a relative value is invalid and must be ignored.
    return Path(value) if value and os.path.isabs(value) else _home() / default


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


def host_folders(host: str, platform: str | None = None) -> list[Path]:
    """The per-user plug-in folders ``realscale install HOST`` writes to.

    GIMP: each GIMP 3 version reads only its own folder (``GIMP/3.0``, ``GIMP/3.2``, ...),
    so every one that exists, natively and in the Flatpak's sandbox (once the Flatpak has
    run); ``GIMP/3.0`` when none exists yet, which a newer GIMP copies on its first start.
    """
    platform = platform or sys.platform
    if host == "gimp":
        if os.environ.get("GIMP3_DIRECTORY"):
            return [Path(os.environ["GIMP3_DIRECTORY"]) / "plug-ins"]
        if platform == "win32":
            config = _appdata()
        elif platform == "darwin":
            config = _home() / "Library" / "Application Support"
        else:
            config = _xdg("XDG_CONFIG_HOME", ".config")
        native = _gimp_folders(config)
        flatpak_app = _home() / ".var" / "app" / "org.gimp.GIMP"
        flatpak: list[Path] = []
        if platform not in ("win32", "darwin") and flatpak_app.is_dir():
            flatpak = (_gimp_folders(flatpak_app / "config")
                       or [flatpak_app / "config" / "GIMP" / "3.0" / "plug-ins"])
        if not native and not flatpak:
            native = [config / "GIMP" / "3.0" / "plug-ins"]
        return native + flatpak
    if host == "krita":
        if platform == "win32":
            return [_appdata() / "krita" / "pykrita"]
        if platform == "darwin":
            return [_home() / "Library" / "Application Support" / "krita" / "pykrita"]
        return [_xdg("XDG_DATA_HOME", ".local/share") / "krita" / "pykrita"]
    if host == "resolve":
        if platform == "win32":
            base = _appdata() / "Blackmagic Design" / "DaVinci Resolve" / "Support"
        elif platform == "darwin":
            base = (_home() / "Library" / "Application Support" / "Blackmagic Design"
                    / "DaVinci Resolve")
        else:
            base = _home() / ".local" / "share" / "DaVinciResolve"
        return [base / "Fusion" / "Scripts" / "Edit"]
    msg = f"unknown host {host!r}; choose one of {', '.join(HOSTS)}"
    raise RealscaleError(msg)


def kritarc_path(platform: str | None = None) -> Path:
    """Krita's per-user settings file (Qt's generic config location)."""
    platform = platform or sys.platform
    if platform == "win32":
        local = os.environ.get("LOCALAPPDATA") or str(_home() / "AppData" / "Local")
        return Path(local) / "kritarc"
    if platform == "darwin":
        return _home() / "Library" / "Preferences" / "kritarc"
    return _xdg("XDG_CONFIG_HOME", ".config") / "kritarc"
