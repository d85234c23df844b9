"""Putting the host plug-ins in place: ``realscale install``, ``uninstall``, ``package``,
``doctor``. Standard library only (``doctor`` imports torch to report on it).

``hosts`` describes each host (folders per system, its own install steps), ``manifest``
reads a plug-in's file list, ``sources`` finds the plug-in sources and the vendored modules,
``installer`` installs and uninstalls, ``records`` keeps what each install did, ``package``
builds the zips (with realscale's wheel), ``doctor`` reports, ``files`` and ``ini`` write
the user's files, ``commands`` holds the sub-commands.
"""

from __future__ import annotations

from .hosts import HOSTS, host, host_folders, kritarc_path
from .sources import client_file, plugins_root, wire_file

__all__ = ["HOSTS", "client_file", "host", "host_folders", "kritarc_path", "plugins_root",
           "wire_file"]
