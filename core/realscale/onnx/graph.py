"""Build the ONNX graph of a model straight from its weights, with numpy and ``onnx.helper``.

No torch: a torch-free install (``pip install realscale``) builds the graph of an embedded model in
about a second, and ``realscale export-onnx`` writes the same graph to a file. Tracing the
torch module instead would need torch, and would freeze Python-chosen row strips to one image
size. Each architecture writes its own network (``architectures/<name>/graph.py``) with the
``builder``; this module adds what every graph has: the precision casts, the bicubic
post-resize, the inputs, outputs and metadata.

The graph takes ``input`` (N, 3, H, W) float32 in [0, 1] and gives ``output``
(N, 3, H*scale, W*scale) float32, with N, H and W dynamic. In fp16 the weights are stored as
float16 and the input/output stay float32 (a Cast at either end).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper

from .. import architectures
from ..descriptor import ModelDescriptor
from ..errors import UnsupportedModelError
from .builder import GraphBuilder

OPSET = 17
INPUT, OUTPUT = "input", "output"
PRODUCER = "realscale"


def model_arrays(model: ModelDescriptor) -> Mapping[str, np.ndarray]:
    """The canonical float32 weights of a model, from its numpy arrays or its torch module."""
    if model.arrays is not None:
        return model.arrays
    if model.network is None:
        msg = f"{model.name} has neither a network nor weights to build a graph from"
        raise UnsupportedModelError(msg)
    return {
        key: value.detach().float().cpu().numpy()
        for key, value in model.network.state_dict().items()
    }


PARTS = ("all", "body", "tail")


def build(
    model: ModelDescriptor, *, precision: str = "fp32", opset: int = OPSET, part: str = "all"
) -> onnx.ModelProto:
    """The ONNX model of ``model`` (fp32 or fp16 weights; float32 input and output).

    ``part``: ``all``, or for an architecture whose tail runs in strips (``strip_tail``)
    ``body`` (image to features) and ``tail`` (features to image), which the engine runs in
    row strips to bound memory.
    """
    if precision not in ("fp32", "fp16"):
        msg = f"ONNX graphs are built in fp32 or fp16, got {precision!r}"
        raise ValueError(msg)
    arch = architectures.get(model.architecture)
    if part not in PARTS or (part != "all" and arch.strip_tail is None):
        msg = f"no {part!r} part for {model.architecture}; use one of {', '.join(PARTS)}"
        raise ValueError(msg)
    dtype = np.dtype(np.float16 if precision == "fp16" else np.float32)
    g = GraphBuilder(model_arrays(model), dtype)
    x = INPUT
    if precision == "fp16":
        x = g.node("Cast", [x], "to_half", to=TensorProto.FLOAT16)
    y = arch.onnx_graph(g, x, model.params, part)
    if precision == "fp16":
        y = g.node("Cast", [y], "to_float", to=TensorProto.FLOAT)
    if model.post_resize is not None and part != "body":
        # torch's bicubic (a = -0.75, half-pixel centres, no antialias), as the engine does.
        factor = float(model.post_resize)
        scales = g.const("scales", np.array([1, 1, factor, factor], dtype=np.float32))
        y = g.node("Resize", [y, "", scales], "post_resize", mode="cubic",
                   cubic_coeff_a=-0.75, coordinate_transformation_mode="half_pixel")
    g.nodes.append(helper.make_node("Identity", [y], [OUTPUT], name=OUTPUT))
    channels_in, channels_out = model.in_channels, model.out_channels
    if arch.strip_tail is not None and part == "tail":
        channels_in = arch.strip_tail.channels(model)
    if arch.strip_tail is not None and part == "body":
        channels_out = arch.strip_tail.channels(model)
    graph = helper.make_graph(
        g.nodes, f"realscale-{model.name}" + ("" if part == "all" else f"-{part}"),
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT,
                                       ["batch", channels_in, "height", "width"])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT,
                                       ["batch", channels_out, "out_height", "out_width"])],
        g.initializers,
    )
    onnx_model = helper.make_model(
        graph, producer_name=PRODUCER, opset_imports=[helper.make_opsetid("", opset)],
    )
    # IR version 8 (opset 17's): readable by onnxruntime 1.12 and later.
    onnx_model.ir_version = 8
    helper.set_model_props(onnx_model, {**metadata(model), "realscale.precision": precision})
    return onnx_model


def metadata(model: ModelDescriptor) -> dict[str, str]:
    """What the tiler needs to know about the model, stored in the ONNX file."""
    return {
        "realscale.name": model.name,
        "realscale.architecture": model.architecture,
        "realscale.scale": str(model.scale),
        "realscale.net_scale": str(model.net_scale),
        "realscale.size_multiple": str(model.size_multiple),
        "realscale.tile_context": str(model.tile_context),
        "realscale.post_resize": "" if model.post_resize is None else repr(model.post_resize),
        "realscale.params": json.dumps(model.params, sort_keys=True),
    }
