"""The model a worker loads: the driver sends what the workers' machines may not have.

A weights file given by path, or a catalogue model whose weights are downloaded rather than
embedded, exists on the driver's machine only; its bytes travel once through Ray's object
store and each worker writes them to a private folder before loading. Embedded models load
from the package every worker has installed. Either way the worker goes through the same
loading code as ``realscale`` on one machine, so the model is the same.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import catalogue
from ..download import ensure_weights
from ..loading import names_a_file
from ..weights import ncnn_companion


@dataclass(frozen=True)
class ModelFiles:
    spec: str
    """What the worker loads: the catalogue name, or the file's name in its private folder."""
    files: dict[str, bytes] = field(default_factory=dict)
    """File name -> bytes, written into the worker's private folder."""
    as_cache: bool = False
    """The files are a catalogue model's downloaded weights: the private folder stands in
    for realscale's download cache (REALSCALE_CACHE_DIR) while the worker loads."""


def model_files(spec: str, *, allow_download: bool) -> ModelFiles:
    """What to send the workers for the model ``spec`` (a catalogue name or a file, told
    apart as a local run tells them: ``loading.names_a_file``). Raises the same one-line
    ModelError as a local run for an unknown name or missing weights, before any worker
    starts; downloads (with ``allow_download``) happen here, once."""
    if names_a_file(spec):
        path = Path(spec).expanduser()
        if not path.is_file():
            # The worker reports it (a missing file, a folder) as a local run would.
            return ModelFiles(spec)
        files = {path.name: path.read_bytes()}
        # An ncnn pair is read as two files, whichever of them was named.
        companion = ncnn_companion(path)
        if companion is not None:
            files[companion.name] = companion.read_bytes()
        return ModelFiles(path.name, files)
    entry = catalogue.get(spec)
    if entry.embedded:
        return ModelFiles(spec)
    weights = ensure_weights(entry, allow_download=allow_download)
    assert isinstance(weights, Path)  # downloaded weights are one file
    return ModelFiles(spec, {weights.name: weights.read_bytes()}, as_cache=True)


def install(model: ModelFiles, folder: Path) -> str:
    """Write the model's files into ``folder`` (on the worker) and return what to load."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in model.files.items():
        (folder / name).write_bytes(data)
    if model.as_cache:
        os.environ["REALSCALE_CACHE_DIR"] = str(folder)
        return model.spec
    return str(folder / model.spec)
