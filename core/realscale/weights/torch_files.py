"""Read PyTorch checkpoints (.pth/.pt/.ckpt) and .safetensors files without running their code.

A ``.pth`` file is a pickle, and an ordinary ``torch.load`` of a pickle can call any Python
function the file names. User weights come from anywhere, so every checkpoint goes through
``torch.load(..., weights_only=True)``, whose restricted unpickler only rebuilds tensors and
plain containers and refuses everything else before it can run.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelError

if TYPE_CHECKING:
    import torch

ZIP_MAGIC = b"PK\x03\x04"
"""Every ``torch.save`` file since PyTorch 1.6 is a zip archive."""
PICKLE_PROTOCOL_OPCODE = 0x80
"""Pickle protocol 2 and later begin with the PROTO opcode (legacy ``torch.save`` files)."""
SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024
"""The safetensors format caps its JSON header at 100 MB."""

_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def accept_zip(prefix: bytes) -> bool:
    """True when a file starts like a zip-format PyTorch checkpoint."""
    return prefix.startswith(ZIP_MAGIC)


def accept_pickle(prefix: bytes) -> bool:
    """True when a file starts like a legacy (pre-zip) PyTorch checkpoint or a raw pickle."""
    return len(prefix) > 0 and prefix[0] == PICKLE_PROTOCOL_OPCODE


def accept_safetensors(prefix: bytes) -> bool:
    """True when a file starts with a safetensors header: a little-endian length, then JSON."""
    if len(prefix) < 9:
        return False
    header_size = int.from_bytes(prefix[:8], "little")
    return 2 <= header_size <= SAFETENSORS_MAX_HEADER and prefix[8:9] == b"{"


def _first_sentence(exc: BaseException) -> str:
    """A short, one-line excerpt of a library error, for our own one-sentence messages."""
    text = _ANSI.sub("", str(exc)).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    text = text.split(". ")[0].rstrip(".")
    return text[:160]


def _refusal(path: Path, exc: pickle.UnpicklingError) -> ModelError:
    found = _REFUSED_GLOBAL.search(str(exc))
    what = f"it needs the Python object {found.group(1)}" if found else "it holds more than tensors"
    msg = (
        f"Refused to load {path.name}: {what}, and realscale loads only plain weight tensors "
        "because unpickling anything else can run code; use a state-dict .pth or a "
        ".safetensors file of the model"
    )
    return ModelError(msg)


def read_torch(path: Path) -> object:
    """Load a checkpoint with the weights-only unpickler; the result still needs unwrapping.

    Zip checkpoints are memory-mapped, so that a large file is not held in memory twice (if
    mapping fails, the file is read normally); legacy pickles cannot be mapped.
    """
    import torch

    try:
        with path.open("rb") as handle:
            is_zip = accept_zip(handle.read(len(ZIP_MAGIC)))
    except OSError as exc:
        msg = f"cannot open the weights file {path} ({exc.strerror or exc}); check the path"
        raise ModelError(msg) from None
    if is_zip:
        _check_zip_directory(path)
    attempts = (True, False) if is_zip else (False,)
    error: BaseException | None = None
    for use_mmap in attempts:
        try:
            with warnings.catch_warnings():
                # PyTorch warns about pickle protocols it did not write; the load is safe anyway.
                warnings.simplefilter("ignore", UserWarning)
                return torch.load(path, map_location="cpu", weights_only=True, mmap=use_mmap)
        except pickle.UnpicklingError as exc:
            raise _refusal(path, exc) from None
        except MemoryError:
            msg = f"{path.name} is too large to load into memory; close other programs and retry"
            raise ModelError(msg) from None
        except Exception as exc:  # torch raises RuntimeError, EOFError, ValueError, KeyError...
            error = exc
    assert error is not None
    msg = (
        f"{path.name} could not be read as a PyTorch checkpoint ({_first_sentence(error)}); "
        "the file is damaged or incomplete, so download or export it again"
    )
    raise ModelError(msg)


def _check_zip_directory(path: Path) -> None:
    """Clear messages for a cut-off download and for a zip that is no checkpoint, which
    torch.load would only report as an internal error."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        msg = (
            f"{path.name} is a damaged or incomplete zip file (its end is missing); "
            "download or export the weights again"
        )
        raise ModelError(msg) from None
    if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
        msg = (
            f"{path.name} is a zip archive but not a PyTorch checkpoint; "
            "choose the .pth file of the model itself"
        )
        raise ModelError(msg)


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Load every tensor of a .safetensors file onto the CPU (the format cannot hold code)."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        msg = f"{path.name} is a .safetensors file, which needs the safetensors package; install it"
        raise ModelError(msg) from None
    try:
        return load_file(str(path), device="cpu")
    except MemoryError:
        msg = f"{path.name} is too large to load into memory; close other programs and retry"
        raise ModelError(msg) from None
    except Exception as exc:  # safetensors raises SafetensorError (an Exception) or OSError
        msg = (
            f"{path.name} could not be read as a .safetensors file ({_first_sentence(exc)}); "
            "the file is damaged or incomplete, so download or export it again"
        )
        raise ModelError(msg) from None

