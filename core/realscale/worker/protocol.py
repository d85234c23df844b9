"""The worker's wire protocol, taken from the host client so there is one source of it.

The framing lives in ``plugins/common/realscale_client.py``: hosts vendor that file, and
this module loads the very same file (from the source tree, or from the copy shipped inside
the installed package), so the worker and every host speak identical bytes.
See ``docs/worker-protocol.md``.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from ..errors import RealscaleError
from ..install.paths import client_file

_MODULE_NAME = "realscale.worker._client"


def _load() -> ModuleType:
    loaded = sys.modules.get(_MODULE_NAME)
    if loaded is not None:
        return loaded
    path = client_file()
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, path)
    if spec is None or spec.loader is None:
        msg = f"cannot load the worker protocol from {path}; reinstall realscale"
        raise RealscaleError(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_MODULE_NAME]
        raise
    return module


client = _load()
"""The host client module itself (``realscale_client``), for tools and tests."""

PROTOCOL_VERSION: int = client.PROTOCOL_VERSION
MAGIC: bytes = client.MAGIC
HEADER = client.HEADER
KIND_JSON: bytes = client.KIND_JSON
KIND_DATA: bytes = client.KIND_DATA
MAX_JSON: int = client.MAX_JSON
MAX_DATA: int = client.MAX_DATA
MAX_NESTING: int = client.MAX_NESTING
CHUNK: int = client.CHUNK
DEPTHS: dict[str, int] = client.DEPTHS
ORDERS: tuple[str, ...] = client.ORDERS
FrameError: type[Exception] = client.FrameError
FrameReader = client.FrameReader
pack_json = client.pack_json
data_header = client.data_header
write_data = client.write_data
decode_json = client.decode_json
config_dir = client.config_dir
config_path = client.config_path
read_config = client.read_config
CONFIG_VERSION: int = client.CONFIG_VERSION

__all__ = [
    "CHUNK",
    "CONFIG_VERSION",
    "DEPTHS",
    "HEADER",
    "KIND_DATA",
    "KIND_JSON",
    "MAGIC",
    "MAX_DATA",
    "MAX_NESTING",
    "MAX_JSON",
    "ORDERS",
    "PROTOCOL_VERSION",
    "FrameError",
    "FrameReader",
    "client",
    "config_dir",
    "config_path",
    "data_header",
    "decode_json",
    "pack_json",
    "read_config",
    "write_data",
]
