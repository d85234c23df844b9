"""Load user weights files: PyTorch .pth/.pt/.ckpt, .safetensors, and ncnn .param/.bin pairs.

Files are told apart by their first bytes, not by their extension (users rename files, and a
``.pth`` may be a zip or a legacy pickle): each reader has an ``accept(prefix)`` check, and
the first reader that accepts a file reads it. Nothing in a file is ever executed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..descriptor import ModelDescriptor
from ..errors import ModelError, UnsupportedModelError
from . import ncnn, torch_files

if TYPE_CHECKING:
    import torch

# Importing this package does not import torch (the ncnn reader serves the torch-free ONNX
# Runtime backend); the readers that need it import it when they run.

__all__ = ["READERS", "Reader", "load_model_file", "load_state_dict"]

PREFIX_SIZE = 64
"""Bytes read to identify a file; every accept() check looks at no more than this."""


@dataclass
class _Loaded:
    state: dict[str, torch.Tensor]
    ncnn_model: ncnn.NcnnModel | None = None


@dataclass(frozen=True)
class Reader:
    """One file format: how to recognise its first bytes and how to read it."""

    kind: str
    accept: Callable[[bytes], bool]
    read: Callable[[Path], _Loaded]


def _read_torch(path: Path) -> _Loaded:
    from .canonicalize import unwrap

    return _Loaded(unwrap(torch_files.read_torch(path), path.name))


def _read_safetensors(path: Path) -> _Loaded:
    from .canonicalize import unwrap

    return _Loaded(unwrap(torch_files.read_safetensors(path), path.name))


def _read_ncnn(path: Path) -> _Loaded:
    try:
        model = ncnn.read_ncnn(path, path.with_suffix(".bin"))
    except (ValueError, IndexError):
        msg = f"{path.name} starts like an ncnn .param file but its layer list is malformed"
        raise ModelError(msg + "; export the model again") from None
    return _Loaded(model.state, model)


READERS: list[Reader] = [
    Reader("PyTorch checkpoint (zip)", torch_files.accept_zip, _read_torch),
    Reader("PyTorch checkpoint (legacy pickle)", torch_files.accept_pickle, _read_torch),
    Reader("safetensors", torch_files.accept_safetensors, _read_safetensors),
    Reader("ncnn .param", ncnn.accept, _read_ncnn),
]
"""Tried in order; the first whose accept() claims the file's first bytes reads it."""


def _prefix(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(PREFIX_SIZE)
    except IsADirectoryError:
        msg = f"{path} is a folder, not a weights file; choose the .pth, .safetensors or .param"
        raise ModelError(msg) from None
    except OSError as exc:
        msg = f"cannot open the weights file {path} ({exc.strerror or exc}); check the path"
        raise ModelError(msg) from None


def _ncnn_param_for_bin(path: Path) -> Path | None:
    """The ``.param`` beside an ncnn ``.bin`` the user picked, so either file of a pair works."""
    if path.suffix.lower() != ".bin":
        return None
    for suffix in (".param", ".PARAM"):
        param = path.with_suffix(suffix)
        if param.is_file() and ncnn.accept(_prefix(param)):
            return param
    return None


def _load(path: Path) -> tuple[Path, _Loaded]:
    if path.is_dir():
        msg = f"{path} is a folder, not a weights file; choose the .pth, .safetensors or .param"
        raise ModelError(msg)
    prefix = _prefix(path)
    if not prefix:
        msg = f"{path.name} is empty; download or export the weights again"
        raise ModelError(msg)
    if (param := _ncnn_param_for_bin(path)) is not None:
        path, prefix = param, _prefix(param)
    for reader in READERS:
        if reader.accept(prefix):
            return path, reader.read(path)
    msg = (
        f"{path.name} is not a weights file realscale can read (it is no PyTorch .pth/.pt/.ckpt, "
        ".safetensors or ncnn .param file); choose a Real-ESRGAN or ESRGAN weights file"
    )
    raise ModelError(msg)


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, unwrapped from ``params_ema``/``params`` but with the
    file's own key names; tensors of zip checkpoints may be memory-mapped (copy-on-write)."""
    return _load(Path(path))[1].state


def load_model_file(path: str | os.PathLike[str]) -> ModelDescriptor:
    """Read a user's weights file and build the network its tensors describe."""
    from .. import architectures
    from .canonicalize import LAYOUTS, canonicalize

    path, loaded = _load(Path(path))
    name = path.name
    state = canonicalize(loaded.state, name)
    if architectures.detect(state) is None:
        layouts = ", ".join(layout for layout, _claims, _convert in LAYOUTS)
        archs = ", ".join(arch.name for arch in architectures.ARCHITECTURES)
        sample = ", ".join(list(state)[:3])
        msg = (
            f"{name}: the weights match no supported model (tried the {layouts} key layouts "
            f"for {archs}; found keys such as {sample}); use a Real-ESRGAN or ESRGAN model"
        )
        raise UnsupportedModelError(msg)
    try:
        descriptor = architectures.load(state, name)
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        # Keys of a known network with tensors of impossible shapes.
        msg = f"{name}: the tensors have shapes no supported model has ({exc}); it may be damaged"
        raise UnsupportedModelError(msg) from None
    descriptor.source = str(path)
    if loaded.ncnn_model is not None and loaded.ncnn_model.post_resize is not None:
        post_resize = loaded.ncnn_model.post_resize
        descriptor.post_resize = post_resize
        descriptor.scale = round(descriptor.net_scale * post_resize)
    return descriptor
