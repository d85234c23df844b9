"""Putting the host plug-ins in place: ``realscale install``, ``uninstall``, ``package``,
``doctor``. Standard library only (``doctor`` imports torch to report on it)."""

from __future__ import annotations

from .paths import HOSTS, client_file, host_folders, kritarc_path, plugins_root

__all__ = ["HOSTS", "client_file", "host_folders", "kritarc_path", "plugins_root"]
