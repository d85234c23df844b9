"""The one model loader: what a user typed (a catalogue name or a weights file) to canonical
tensors, to a descriptor (from the tensors' shapes, by the architecture that claims them), and
only at the end, when the backend is torch, to a torch network.

The CLI, the API, the worker and ``export-onnx`` all load through ``load_model``, and tell a
weights file from a catalogue name with ``names_a_file``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DeviceError, ModelError, UnsupportedModelError

if TYPE_CHECKING:
    import numpy as np

    from .catalogue import CatalogueEntry
    from .descriptor import ModelDescriptor

# Light to import (the worker asks names_a_file before anything is loaded): numpy, the
# catalogue and the architectures are imported when a model is.

MODEL_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors", ".param", ".onnx")
"""Files that are a model by themselves (what a model folder lists)."""
COMPANION_SUFFIXES = (".bin",)
"""The second file of an ncnn pair: it names the model too (its ``.param`` is read with it)."""


def is_weights_file(name: str | os.PathLike[str]) -> bool:
    """Whether a file name has the suffix of a weights file realscale reads."""
    return Path(name).suffix.lower() in MODEL_SUFFIXES + COMPANION_SUFFIXES


def names_a_file(spec: str | os.PathLike[str]) -> bool:
    """Whether a model as given names a file (a path, or a weights file's name) rather than
    a catalogue model."""
    text = os.fspath(spec)
    return is_weights_file(text) or any(sep in text for sep in ("/", "\\", os.sep))


def load_model(
    spec: str | os.PathLike[str], *, allow_download: bool = False, backend: str = "auto"
) -> ModelDescriptor:
    """Load a catalogue model by name, or user weights from a file path.

    ``backend`` ``torch`` (``auto`` where torch is installed) gives the descriptor its torch
    network; ``onnxruntime`` gives it the weights as numpy arrays (``arrays``) and needs torch
    only to read PyTorch files. An ``.onnx`` file from ``realscale export-onnx`` is described
    by its metadata and runs as it is, on ONNX Runtime."""
    from . import backends, catalogue, weights
    from .download import ensure_weights

    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.suffix.lower() == ".onnx":
        if backend == "torch":
            msg = f"{spec} is an ONNX file: run it with backend 'onnxruntime' (or auto)"
            raise DeviceError(msg)
        from .onnx.models import read_onnx_file

        return read_onnx_file(path)
    with_torch = backend != "onnxruntime" and backends.resolve(backend) == "torch"

    entry: CatalogueEntry | None = None
    if names_a_file(text):
        if not path.is_file():
            msg = (
                f"model file {path} does not exist; check the path or use a name from "
                "`realscale models`"
            )
            raise ModelError(msg)
        read = weights.read_file(path)
        name, source = read.path.name, str(read.path)
    else:
        entry = catalogue.get(text)
        found = ensure_weights(entry, allow_download=allow_download)
        if isinstance(found, tuple):
            read = weights.read_ncnn_pair(*found)
            source = f"embedded: {found[0].name}"
        else:
            read = weights.read_file(found)
            source = str(found)
        name = entry.name

    model = _describe(read.state, name)
    model.source = source
    if read.post_resize is not None:
        model.post_resize = read.post_resize
        model.scale = round(model.net_scale * read.post_resize)
    if entry is not None and model.scale != entry.scale:
        fix = ("reinstall realscale" if source.startswith("embedded:")
               else f"delete {source} and download it again")
        msg = (f"the weights of {entry.name} give x{model.scale}, the catalogue says "
               f"x{entry.scale}; {fix}")
        raise ModelError(msg)
    if with_torch:
        return _build(model, read.state)
    model.arrays = _as_arrays(read.state)
    return model


def _describe(state: Mapping[str, Any], name: str) -> ModelDescriptor:
    from . import architectures

    try:
        return architectures.describe(state, name)
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise _damaged(name, exc) from None


def _build(model: ModelDescriptor, state: Mapping[str, Any]) -> ModelDescriptor:
    """The torch network, made last: numpy arrays become tensors sharing their memory."""
    import numpy as np
    import torch

    from . import architectures

    tensors = {key: torch.from_numpy(value) if isinstance(value, np.ndarray) else value
               for key, value in state.items()}
    try:
        return architectures.build(model, tensors)
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise _damaged(model.name, exc) from None


def _damaged(name: str, exc: Exception) -> UnsupportedModelError:
    """Keys of a known network with tensors of impossible shapes."""
    msg = f"{name}: the tensors have shapes no supported model has ({exc}); it may be damaged"
    return UnsupportedModelError(msg)


def _as_arrays(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
    import numpy as np

    return {key: value if isinstance(value, np.ndarray) else value.detach().float().numpy()
            for key, value in state.items()}
