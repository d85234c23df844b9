"""A small helper to write ONNX graphs by hand with ``onnx.helper``: nodes and weights with
unique names, and the few operations Real-ESRGAN's networks are made of (3x3 convolutions,
LeakyReLU, nearest upsampling). Each architecture writes its own graph with it
(``architectures/<name>/graph.py``); ``graph.build`` wraps the result into a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper


class GraphBuilder:
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

    def node(self, op: str, inputs: list[str], hint: str, **attrs: Any) -> str:
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
