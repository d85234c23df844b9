"""Turn what a user typed (a catalogue name or a weights file) into a loaded model."""

from __future__ import annotations

import os
from pathlib import Path

from . import architectures, catalogue
from .descriptor import ModelDescriptor
from .download import ensure_weights
from .errors import ModelError
from .weights.ncnn import read_ncnn


def load_model(spec: str | os.PathLike[str], *, allow_download: bool = False) -> ModelDescriptor:
    """Load a catalogue model by name, or user weights from a file path."""
    text = os.fspath(spec)
    path = Path(text).expanduser()
    looks_like_path = path.suffix.lower() in (
        ".pth", ".pt", ".ckpt", ".safetensors", ".param", ".bin"
    ) or os.sep in text or (os.altsep is not None and os.altsep in text)
    if looks_like_path:
        if not path.is_file():
            msg = (
                f"model file {path} does not exist; check the path or use a name from "
                "`realscale models`"
            )
            raise ModelError(msg)
        from .weights import load_model_file

        return load_model_file(path)
    entry = catalogue.get(text)
    weights = ensure_weights(entry, allow_download=allow_download)
    from .weights import load_model_file

    if isinstance(weights, tuple):
        param, bin_path = weights
        ncnn = read_ncnn(param, bin_path)
        model = architectures.load(ncnn.state, entry.name)
        _apply_post_resize(model, ncnn.post_resize)
        model.source = f"embedded: {param.name}"
    else:
        model = load_model_file(weights)
        model.name = entry.name
    if model.scale != entry.scale:
        msg = (
            f"the weights of {entry.name} give x{model.scale}, the catalogue says "
            f"x{entry.scale}; reinstall realscale or delete {weights} and download it again"
        )
        raise ModelError(msg)
    return model


def _apply_post_resize(model: ModelDescriptor, factor: float | None) -> None:
    if factor is None:
        return
    model.post_resize = factor
    model.scale = round(model.net_scale * factor)
