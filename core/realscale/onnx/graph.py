"""Build the ONNX graph of a model straight from its weights, with numpy and ``onnx.helper``.

No torch: a torch-free install (``pip install realscale``) builds the graph of an embedded model in
about a second, and ``realscale export-onnx`` writes the same graph to a file. Tracing the
torch module instead would need torch, and RRDBNet's forward runs its tail in Python-chosen
row strips that a trace would freeze to one image size. Both networks are plain enough to
write down: 3x3 convolutions, LeakyReLU/PReLU, concatenations, nearest upsampling and a
pixel-(un)shuffle.

The graph takes ``input`` (N, 3, H, W) float32 in [0, 1] and gives ``output``
(N, 3, H*scale, W*scale) float32, with N, H and W dynamic. In fp16 the weights are stored as
float16 and the input/output stay float32 (a Cast at either end).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..descriptor import ModelDescriptor
from ..errors import UnsupportedModelError

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


class _Graph:
    """Collects nodes and initializers with unique names."""

    def __init__(self, weights: Mapping[str, np.ndarray], dtype: np.dtype) -> None:
        self.weights = weights
        self.dtype = dtype
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], hint: str, **attrs: object) -> str:
        out = self.name(hint)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, key: str, *, gain: float = 1.0,
             weight: np.ndarray | None = None) -> str:
        """3x3 convolution with padding 1; ``gain`` folds a following constant scale in."""
        w = self.weights[f"{key}.weight"] if weight is None else weight
        b = self.weights[f"{key}.bias"]
        if gain != 1.0:
            w, b = w * np.float32(gain), b * np.float32(gain)
        kernel = int(w.shape[2])
        return self.node(
            "Conv",
            [x, self.const(f"{key}.weight", w.astype(self.dtype)),
             self.const(f"{key}.bias", b.astype(self.dtype))],
            key, kernel_shape=[kernel, kernel], pads=[kernel // 2] * 4,
        )

    def leaky(self, x: str, slope: float) -> str:
        return self.node("LeakyRelu", [x], "lrelu", alpha=slope)

    def scalar(self, value: float) -> str:
        return self.const("scalar", np.array(value, dtype=self.dtype))

    def upsample(self, x: str, factor: int) -> str:
        """Nearest-neighbour upsampling as torch's ``interpolate(mode="nearest")`` does it."""
        scales = self.const("scales", np.array([1, 1, factor, factor], dtype=np.float32))
        return self.node(
            "Resize", [x, "", scales], "up", mode="nearest",
            coordinate_transformation_mode="asymmetric", nearest_mode="floor",
        )


def _rrdbnet(g: _Graph, x: str, params: Mapping[str, object], part: str) -> str:
    if part == "tail":
        return _rrdbnet_tail(g, x)
    feat = _rrdbnet_body(g, x, params)
    return feat if part == "body" else _rrdbnet_tail(g, feat)


def _rrdbnet_body(g: _Graph, x: str, params: Mapping[str, object]) -> str:
    """Input to the trunk's features (at input resolution, ``num_feat`` channels)."""
    w = g.weights
    unshuffle = {4: 1, 2: 2, 1: 4}[int(params["scale"])]  # type: ignore[call-overload]
    first = w["conv_first.weight"]
    if unshuffle > 1:
        # torch's pixel_unshuffle orders channels c*u*u + i*u + j; ONNX SpaceToDepth gives
        # (i*u + j)*C + c. Permuting conv_first's input channels makes them agree for free.
        channels = first.shape[1] // (unshuffle * unshuffle)
        order = [c * unshuffle * unshuffle + k for k in range(unshuffle * unshuffle)
                 for c in range(channels)]
        first = first[:, order]
        x = g.node("SpaceToDepth", [x], "unshuffle", blocksize=unshuffle)
    feat = g.conv(x, "conv_first", weight=first)
    fifth = g.scalar(0.2)
    trunk = feat
    for block in range(int(params["num_block"])):  # type: ignore[call-overload]
        block_in = trunk
        for rdb in (1, 2, 3):
            key = f"body.{block}.rdb{rdb}"
            parts = [trunk]
            for index in range(1, 5):
                joined = parts[0] if len(parts) == 1 else g.node("Concat", parts, "cat", axis=1)
                parts.append(g.leaky(g.conv(joined, f"{key}.conv{index}"), 0.2))
            joined = g.node("Concat", parts, "cat", axis=1)
            # x5 * 0.2 + x: the residual scale folded into conv5's weights.
            trunk = g.node("Add", [g.conv(joined, f"{key}.conv5", gain=0.2), trunk], "res")
        trunk = g.node("Add", [g.node("Mul", [trunk, fifth], "scale"), block_in], "rrdb")
    return g.node("Add", [feat, g.conv(trunk, "conv_body")], "trunk")


def _rrdbnet_tail(g: _Graph, feat: str) -> str:
    """Features to the image: two nearest 2x upsamplings, each followed by a convolution."""
    feat = g.leaky(g.conv(g.upsample(feat, 2), "conv_up1"), 0.2)
    feat = g.leaky(g.conv(g.upsample(feat, 2), "conv_up2"), 0.2)
    return g.conv(g.leaky(g.conv(feat, "conv_hr"), 0.2), "conv_last")


def _compact(g: _Graph, x: str, params: Mapping[str, object]) -> str:
    act = str(params["act_type"])
    num_conv = int(params["num_conv"])  # type: ignore[call-overload]
    upscale = int(params["upscale"])  # type: ignore[call-overload]
    out = x
    for index in range(num_conv + 1):
        out = g.conv(out, f"body.{2 * index}")
        if act == "prelu":
            slope = g.weights[f"body.{2 * index + 1}.weight"].reshape(-1, 1, 1)
            out = g.node("PRelu", [out, g.const("slope", slope.astype(g.dtype))], "prelu")
        elif act == "leakyrelu":
            out = g.leaky(out, 0.1)
        else:
            out = g.node("Relu", [out], "relu")
    out = g.conv(out, f"body.{2 * (num_conv + 1)}")
    out = g.node("DepthToSpace", [out], "shuffle", blocksize=upscale, mode="CRD")
    return g.node("Add", [out, g.upsample(x, upscale)], "base")


PARTS = ("all", "body", "tail")


def build(
    model: ModelDescriptor, *, precision: str = "fp32", opset: int = OPSET, part: str = "all"
) -> onnx.ModelProto:
    """The ONNX model of ``model`` (fp32 or fp16 weights; float32 input and output).

    ``part``: ``all``, or for RRDBNet ``body`` (image to features, output ``feat``) and
    ``tail`` (features to image), which the engine runs in row strips to bound memory.
    """
    if precision not in ("fp32", "fp16"):
        msg = f"ONNX graphs are built in fp32 or fp16, got {precision!r}"
        raise ValueError(msg)
    if part not in PARTS or (part != "all" and model.architecture != "RRDBNet"):
        msg = f"no {part!r} part for {model.architecture}; use one of {', '.join(PARTS)}"
        raise ValueError(msg)
    dtype = np.dtype(np.float16 if precision == "fp16" else np.float32)
    g = _Graph(model_arrays(model), dtype)
    x = INPUT
    if precision == "fp16":
        x = g.node("Cast", [x], "to_half", to=TensorProto.FLOAT16)
    if model.architecture == "RRDBNet":
        y = _rrdbnet(g, x, model.params, part)
    elif model.architecture == "SRVGGNetCompact":
        y = _compact(g, x, model.params)
    else:
        msg = f"{model.name}: no ONNX graph for the {model.architecture} architecture"
        raise UnsupportedModelError(msg)
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
    feat = int(model.params.get("num_feat", 64))  # type: ignore[call-overload]
    if part == "tail":
        channels_in = feat
    if part == "body":
        channels_out = feat
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
