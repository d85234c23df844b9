"""Read an ``.onnx`` file written by ``realscale export-onnx``: its metadata is the model's
descriptor (no torch; the engine runs the file's graph as it is). Every other model loads
through ``realscale.loading``.
"""

from __future__ import annotations

from pathlib import Path

from ..descriptor import ModelDescriptor
from ..errors import ModelError


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
