"""Host plug-in manifests: ``plugins/<host>/manifest.json`` says which files a host gets.

Schema v1 (see docs/install.md)::

    {"version": 1, "host": "gimp", "name": "realscale-upscale",
     "files": [{"src": "realscale-upscale/realscale-upscale.py",
                "dest": "realscale-upscale/realscale-upscale.py", "executable": true}],
     "client_dest": "realscale-upscale/realscale_client.py",
     "setup_dest": "realscale-upscale/realscale_setup.py",
     "supports": "GIMP 3.0 and 3.2"}

``src`` is relative to ``plugins/<host>/``; ``dest``, ``client_dest``, ``wire_dest`` and
``setup_dest`` are relative to the host's per-user plug-in folder, and to the root of the zip
``realscale package`` builds. ``client_dest`` may be null for a plug-in that does not use the
client. ``wire_dest`` (optional) is where core's ``realscale/wire.py`` goes as
``realscale_wire.py``: by default beside the client; a plug-in without the client names it
to get it. ``setup_dest`` (optional) is where ``plugins/common/realscale_setup.py`` goes.
``realscale package`` puts realscale's wheel in the folder of ``realscale_wire.py``.
``supports`` (optional) says in words which host versions the plug-in is made and tested
for; ``realscale package`` and ``doctor`` print it. Where a host's plug-in folders are and
what else an install does there is the host's own business: see ``hosts.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import RealscaleError
from .hosts import host as find_host
from .sources import CLIENT, SETUP, WIRE, common_file, plugins_root

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class PluginFile:
    source: Path
    """Absolute path of the file to copy."""
    dest: str
    """POSIX path relative to the host folder (and the zip root)."""
    executable: bool = False


@dataclass(frozen=True)
class Manifest:
    host: str
    name: str
    """The plug-in's name (Krita: the pykrita module, enabled as ``enable_NAME`` in kritarc)."""
    files: tuple[PluginFile, ...]
    """The host's own files, then the vendored modules (realscale_wire.py first)."""
    path: Path
    supports: str | None = None
    """Which host versions the plug-in supports, in words ("GIMP 3.0 and 3.2")."""
    vendor_dir: str | None = None
    """The folder (relative, "" for the top) holding realscale_wire.py, where the zip
    carries realscale's wheel; None when the plug-in vendors nothing."""


def _relative(value: object, where: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        msg = f"{where}: {field!r} must be a non-empty relative path"
        raise RealscaleError(msg)
    path = PurePosixPath(value.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or ":" in path.parts[0]:
        msg = f"{where}: {field!r} must stay inside the folder, got {value!r}"
        raise RealscaleError(msg)
    return str(path)


def load_manifest(host: str, root: Path | None = None) -> Manifest:
    """Read and check ``plugins/<host>/manifest.json``."""
    find_host(host)  # an unknown name is refused with the known ones
    root = root or plugins_root()
    folder = root / host
    path = folder / "manifest.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"the {host} plug-in is not part of this realscale (no {path})"
        raise RealscaleError(msg) from None
    except (OSError, ValueError) as exc:
        msg = f"{path} cannot be read ({exc}); reinstall realscale"
        raise RealscaleError(msg) from None
    where = str(path)
    if not isinstance(raw, dict) or raw.get("version") != MANIFEST_VERSION:
        msg = f"{where}: expected an object with version {MANIFEST_VERSION}"
        raise RealscaleError(msg)
    if raw.get("host") != host:
        msg = f"{where}: 'host' must be {host!r}, got {raw.get('host')!r}"
        raise RealscaleError(msg)
    name = raw.get("name")
    if not isinstance(name, str) or not name or "/" in name or "\\" in name:
        msg = f"{where}: 'name' must be a plain plug-in name, got {name!r}"
        raise RealscaleError(msg)
    entries = raw.get("files")
    if not isinstance(entries, list) or not entries:
        msg = f"{where}: 'files' must be a non-empty list"
        raise RealscaleError(msg)
    files: list[PluginFile] = []
    for index, entry in enumerate(entries):
        label = f"{where} files[{index}]"
        if not isinstance(entry, dict):
            msg = f"{label}: expected an object with 'src' and 'dest'"
            raise RealscaleError(msg)
        src = folder / _relative(entry.get("src"), label, "src")
        if not src.is_file():
            msg = f"{label}: {src} does not exist"
            raise RealscaleError(msg)
        executable = entry.get("executable", False)
        if not isinstance(executable, bool):
            msg = f"{label}: 'executable' must be true or false"
            raise RealscaleError(msg)
        files.append(PluginFile(src, _relative(entry.get("dest"), label, "dest"), executable))
    vendored = _vendored(raw, where, root)
    files += vendored
    supports = raw.get("supports")
    if supports is not None and (not isinstance(supports, str) or not supports.strip()):
        msg = f"{where}: 'supports' must be a non-empty string, got {supports!r}"
        raise RealscaleError(msg)
    dests = [f.dest for f in files]
    if len(set(dests)) != len(dests):
        msg = f"{where}: two files go to the same place ({sorted(dests)})"
        raise RealscaleError(msg)
    vendor_dir = str(PurePosixPath(vendored[0].dest).parent) if vendored else None
    return Manifest(host, name, tuple(files), path, supports.strip() if supports else None,
                    "" if vendor_dir == "." else vendor_dir)


def _vendored(raw: dict[str, Any], where: str, root: Path) -> list[PluginFile]:
    """The modules a plug-in vendors: realscale_wire.py (beside the client unless
    ``wire_dest`` says where), the client, and the set-up library once it exists."""
    dests: dict[str, str] = {}
    if raw.get("client_dest") is not None:  # null: the plug-in does not use the client
        dests[CLIENT] = _relative(raw.get("client_dest"), where, "client_dest")
    if raw.get("wire_dest") is not None:
        dests[WIRE] = _relative(raw.get("wire_dest"), where, "wire_dest")
    elif CLIENT in dests:
        dests[WIRE] = str(PurePosixPath(dests[CLIENT]).with_name(WIRE))
    if raw.get("setup_dest") is not None:
        dests[SETUP] = _relative(raw.get("setup_dest"), where, "setup_dest")
    if dests and WIRE not in dests:
        msg = f"{where}: 'wire_dest' is needed with 'setup_dest' and no 'client_dest'"
        raise RealscaleError(msg)
    files = []
    for name in (WIRE, CLIENT, SETUP):
        if name not in dests:
            continue
        source = common_file(name, root)
        if not source.is_file():
            if name == SETUP:
                continue  # not written yet in this checkout: the zip goes without it
            msg = f"{source} is missing; reinstall realscale"
            raise RealscaleError(msg)
        files.append(PluginFile(source, dests[name]))
    return files


def directories(dests: list[str]) -> list[str]:
    """Every folder the given relative paths need, parents first (``a/``, ``a/b/``)."""
    found: set[str] = set()
    for dest in dests:
        for parent in PurePosixPath(dest).parents:
            if str(parent) != ".":
                found.add(str(parent))
    return sorted(found, key=lambda d: (d.count("/"), d))
