"""Backends that run a model on tiles: PyTorch (``torch.py``) and ONNX Runtime (``ort.py``).

Both give a ``TileEngine``: ``run(batch NHWC float32) -> NHWC float32``, ``precision``, and
the facts the tiling policy sizes tiles from. ``auto`` picks torch when it is installed, else
ONNX Runtime, so a worker in a torch-free environment (``pip install realscale``, without the
``torch`` extra) needs no setting.
Importing this package imports neither torch nor onnxruntime.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from .. import architectures
from ..descriptor import ModelDescriptor
from ..errors import DeviceError, RealscaleError
from .base import TileEngine

__all__ = ["BACKENDS", "TileEngine", "create_engine", "resolve"]

if sys.platform.startswith("linux"):
    # PyTorch's CPU allocator then backs tensors of 2 MB and more with transparent huge pages:
    # a forward pass of x4plus-anime at 532 px took 6.3 million page faults and 14.0 s,
    # with this 0.17 million and 9.2 s. Read once, at torch's first allocation: it only
    # takes effect where realscale imports torch first (an earlier import keeps its setting).
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

BACKENDS = ("auto", "torch", "onnxruntime")


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def resolve(backend: str) -> str:
    """``auto`` -> ``torch`` when torch is installed, else ``onnxruntime``; checks the name."""
    if backend not in BACKENDS:
        msg = f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}"
        raise DeviceError(msg)
    if backend == "auto":
        if _installed("torch"):
            return "torch"
        if _installed("onnxruntime"):
            return "onnxruntime"
        msg = (
            "neither PyTorch nor ONNX Runtime is installed; install one: "
            "pip install 'realscale[torch]', or pip install onnxruntime"
        )
        raise DeviceError(msg)
    needed = {"torch": "torch", "onnxruntime": "onnxruntime"}[backend]
    if not _installed(needed):
        hint = ("pip install 'realscale[torch]'" if backend == "torch"
                else "pip install onnxruntime")
        msg = f"the {backend} backend needs {needed}, which is not installed here: {hint}"
        raise DeviceError(msg)
    return backend


def create_engine(
    model: ModelDescriptor, backend: str = "auto", device: str = "auto",
    precision: str = "auto",
) -> TileEngine:
    """The engine that runs ``model`` on ``device`` in ``precision`` with ``backend``."""
    # A model loaded without torch (numpy weights, or an .onnx file) can only run on ONNX Runtime.
    chosen = "onnxruntime" if backend == "auto" and model.network is None else resolve(backend)
    if chosen == "torch":
        if model.network is None:
            msg = (
                f"{model.name} was loaded without PyTorch (numpy weights); "
                "use backend='onnxruntime' or load it again with torch installed"
            )
            raise RealscaleError(msg)
        from .. import devices
        from .torch import TorchEngine

        placement = devices.choose(device, precision,
                                   cpu_bf16=architectures.get(model.architecture).bf16_accurate)
        return TorchEngine(model, placement)
    from .ort import OrtEngine

    return OrtEngine(model, device=device, precision=precision)
