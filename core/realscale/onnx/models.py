"""Load a model as numpy weights, without torch, for the ONNX Runtime backend.

Torch-free: the embedded catalogue models and ncnn ``.param/.bin`` files (read by the same
ncnn reader the torch path uses, stopping before the conversion to tensors), and ``.onnx``
files written by ``realscale export-onnx`` (the model facts are in their metadata). PyTorch
checkpoints (``.pth``, ``.safetensors``) go through torch when it is installed; without it they
are refused with the way out (export the model to ONNX on a machine that has torch).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .. import architectures, catalogue
from ..descriptor import ModelDescriptor
from ..download import ensure_weights
from ..errors import ModelError
from ..weights import ncnn

NCNN_SUFFIXES = (".param", ".bin")


def load_arrays(spec: str | os.PathLike[str], *, allow_download: bool = False) -> ModelDescriptor:
    """A catalogue model or a weights file, with ``arrays`` set (``network`` stays None)."""
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.suffix.lower() in NCNN_SUFFIXES and path.is_file():
        param = path.with_suffix(".param") if path.suffix.lower() == ".bin" else path
        model = _from_ncnn(param, param.with_suffix(".bin"), param.name)
        model.source = str(param)
        return model
    if path.suffix.lower() == ".onnx":
        return read_onnx_file(path)
    if path.is_file() or os.sep in text or (os.altsep is not None and os.altsep in text):
        return _through_torch(text, allow_download)
    entry = catalogue.get(text)
    weights = ensure_weights(entry, allow_download=allow_download)
    if not isinstance(weights, tuple):
        return _through_torch(text, allow_download)
    param, bin_path = weights
    model = _from_ncnn(param, bin_path, entry.name)
    model.source = f"embedded: {param.name}"
    if model.scale != entry.scale:
        msg = f"the weights of {entry.name} give x{model.scale}, the catalogue says x{entry.scale}"
        raise ModelError(msg + "; reinstall realscale")
    return model


def _from_ncnn(param: Path, bin_path: Path, name: str) -> ModelDescriptor:
    if not ncnn.accept(param.read_bytes()[:64]):
        msg = f"{param.name} is not an ncnn .param file (it should start with {ncnn.MAGIC})"
        raise ModelError(msg)
    try:
        read = ncnn.read_ncnn_arrays(param, bin_path)
    except (ValueError, IndexError):
        msg = f"{param.name} starts like an ncnn .param file but its layer list is malformed"
        raise ModelError(msg + "; export the model again") from None
    model = architectures.describe(read.state, name)
    model.arrays = read.state
    if read.post_resize is not None:
        model.post_resize = read.post_resize
        model.scale = round(model.net_scale * read.post_resize)
    return model


def _through_torch(spec: str, allow_download: bool) -> ModelDescriptor:
    """PyTorch weights files need torch to be read (they are pickles of tensors)."""
    if importlib.util.find_spec("torch") is None:
        msg = (
            f"{spec}: PyTorch weights (.pth, .safetensors) need torch to be read, and this "
            "installation has none; use an embedded model or ncnn .param/.bin files, or run "
            "`realscale export-onnx MODEL -o model.onnx` where torch is installed and use "
            "model.onnx here"
        )
        raise ModelError(msg)
    from ..loading import load_model

    return load_model(spec, allow_download=allow_download)


def read_onnx_file(path: Path) -> ModelDescriptor:
    """The descriptor of an ``.onnx`` file from ``realscale export-onnx`` (its metadata); the
    engine runs the file's graph as it is (``source`` is the file)."""
    import json

    import onnx

    if not path.is_file():
        msg = f"model file {path} does not exist; check the path"
        raise ModelError(msg)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError...
        msg = f"{path.name} is not a readable ONNX file ({exc})"
        raise ModelError(msg) from None
    meta = {prop.key: prop.value for prop in proto.metadata_props}
    if "realscale.architecture" not in meta:
        msg = (
            f"{path.name} was not written by `realscale export-onnx`, so its scale and tiling "
            "needs are unknown; export the model with realscale"
        )
        raise ModelError(msg)
    post_resize = meta.get("realscale.post_resize") or None
    return ModelDescriptor(
        name=path.name, architecture=meta["realscale.architecture"], network=None,
        scale=int(meta["realscale.scale"]), net_scale=int(meta["realscale.net_scale"]),
        size_multiple=int(meta["realscale.size_multiple"]),
        tile_context=int(meta["realscale.tile_context"]),
        post_resize=float(post_resize) if post_resize else None,
        params=json.loads(meta.get("realscale.params", "{}")), source=str(path),
    )
