"""Load user weights files: PyTorch .pth/.pt/.ckpt, .safetensors, and ncnn .param/.bin pairs.

Files are told apart by their first bytes, not by their extension (users rename files, and a
``.pth`` may be a zip or a legacy pickle): each reader has an ``accept(prefix)`` check, and
the first reader that accepts a file reads it. Nothing in a file is ever executed.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ModelError, UnsupportedModelError
from . import ncnn, torch_files

if TYPE_CHECKING:
    import torch

# Importing this package does not import torch (the ncnn reader serves the torch-free ONNX
# Runtime backend); the readers that need it import it when they run.

__all__ = ["READERS", "Reader", "WeightsFile", "load_state_dict", "ncnn_companion", "read_file",
           "read_ncnn_pair"]

PREFIX_SIZE = 64
"""Bytes read to identify a file; every accept() check looks at no more than this."""


@dataclass
class WeightsFile:
    """A weights file read into canonical tensors: torch tensors from PyTorch checkpoints and
    safetensors, float32 numpy arrays from ncnn files (read without torch)."""

    path: Path
    """The file read (the ``.param`` of an ncnn pair chosen by its ``.bin``)."""
    state: dict[str, Any]
    post_resize: float | None = None
    """The bicubic resize an ncnn file applies to the network output."""
    raw: bool = False
    """The file's own key names (PyTorch files), not yet canonical."""


@dataclass(frozen=True)
class Reader:
    """One file format: how to recognise its first bytes and how to read it."""

    kind: str
    accept: Callable[[bytes], bool]
    read: Callable[[Path], WeightsFile]


def _need_torch(path: Path) -> None:
    """PyTorch weights files are pickles of tensors: only torch reads them."""
    if importlib.util.find_spec("torch") is None:
        msg = (
            f"{path}: PyTorch weights (.pth, .safetensors) need torch to be read, and this "
            "installation has none; use an embedded model or ncnn .param/.bin files, or run "
            "`realscale export-onnx MODEL -o model.onnx` where torch is installed and use "
            "model.onnx here"
        )
        raise ModelError(msg)


def _read_torch(path: Path) -> WeightsFile:
    _need_torch(path)
    from .canonicalize import unwrap

    return WeightsFile(path, unwrap(torch_files.read_torch(path), path.name), raw=True)


def _read_safetensors(path: Path) -> WeightsFile:
    _need_torch(path)
    from .canonicalize import unwrap

    return WeightsFile(path, unwrap(torch_files.read_safetensors(path), path.name), raw=True)


def read_ncnn_pair(param: Path, bin_path: Path) -> WeightsFile:
    """An ncnn ``.param``/``.bin`` pair as canonical numpy arrays (no torch)."""
    try:
        model = ncnn.read_ncnn_arrays(param, bin_path)
    except (ValueError, IndexError):
        msg = f"{param.name} starts like an ncnn .param file but its layer list is malformed"
        raise ModelError(msg + "; export the model again") from None
    return WeightsFile(param, model.state, model.post_resize)


def _read_ncnn(path: Path) -> WeightsFile:
    return read_ncnn_pair(path, path.with_suffix(".bin"))


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


def ncnn_companion(path: Path) -> Path | None:
    """The other file of the ncnn pair ``path`` belongs to, where the loader looks for it
    (the ``.bin`` beside a ``.param``, the ``.param`` beside a ``.bin``), or None: for
    whoever must carry the pair whole (the Ray driver sends both files to its workers)."""
    if path.suffix.lower() == ".param":
        companion = path.with_suffix(".bin")
        return companion if companion.is_file() else None
    return _ncnn_param_for_bin(path)


def _load(path: Path) -> WeightsFile:
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
            return reader.read(path)
    msg = (
        f"{path.name} is not a weights file realscale can read (it is no PyTorch .pth/.pt/.ckpt, "
        ".safetensors or ncnn .param file); choose a Real-ESRGAN or ESRGAN weights file"
    )
    raise ModelError(msg)


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, unwrapped from ``params_ema``/``params`` but with the
    file's own key names; tensors of zip checkpoints may be memory-mapped (copy-on-write)."""
    import torch

    return {key: torch.from_numpy(value) if isinstance(value, np.ndarray) else value
            for key, value in _load(Path(path)).state.items()}


def read_file(path: str | os.PathLike[str]) -> WeightsFile:
    """A user's weights file as canonical tensors, told apart by its first bytes; refused
    with the layouts tried when they match no architecture."""
    from .. import architectures

    read = _load(Path(path))
    if read.raw:
        from .canonicalize import LAYOUTS, canonicalize

        read.state, read.raw = canonicalize(read.state, read.path.name), False
        if architectures.detect(read.state) is None:
            layouts = ", ".join(layout for layout, _claims, _convert in LAYOUTS)
            archs = ", ".join(arch.name for arch in architectures.ARCHITECTURES)
            sample = ", ".join(list(read.state)[:3])
            msg = (
                f"{read.path.name}: the weights match no supported model (tried the {layouts} "
                f"key layouts for {archs}; found keys such as {sample}); use a Real-ESRGAN or "
                "ESRGAN model"
            )
            raise UnsupportedModelError(msg)
    return read
