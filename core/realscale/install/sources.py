"""Where the plug-in sources are: the ``plugins/`` folder (the source tree's, or the copy
inside the installed package) and the modules every plug-in vendors from it and from core.

Only the standard library, and no torch: ``realscale install`` and ``doctor`` start fast.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .. import wire
from ..errors import RealscaleError

_PLUGINS_PACKAGE = "realscale.plugins_data"
"""The installed copy of the repository's plugins/ folder (package data of the wheel)."""
CLIENT = "realscale_client.py"
"""The host client, in ``plugins/common``."""
WIRE = "realscale_wire.py"
"""The name core's ``realscale/wire.py`` has inside a plug-in."""
SETUP = "realscale_setup.py"
"""The engine set-up library (issue 14), in ``plugins/common``."""


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
        if (candidate / "common" / CLIENT).is_file():
            return candidate
    msg = (
        f"the host plug-in files are missing (looked in {', '.join(map(str, candidates))}); "
        "reinstall realscale"
    )
    raise RealscaleError(msg)


def common_file(name: str, root: Path | None = None) -> Path:
    """A module every plug-in vendors: ``realscale_wire.py`` is core's own
    ``realscale/wire.py``; the others lie in ``plugins/common``."""
    if name == WIRE:
        return wire_file()
    return (root or plugins_root()) / "common" / name


def client_file(root: Path | None = None) -> Path:
    """The host client module every plug-in vendors."""
    return common_file(CLIENT, root)


def wire_file() -> Path:
    """Core's protocol and config module, vendored as ``realscale_wire.py``."""
    path = wire.__file__
    if not path:
        raise RealscaleError("realscale/wire.py is missing; reinstall realscale")
    return Path(path)
