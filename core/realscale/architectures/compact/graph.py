"""SRVGGNetCompact as an ONNX graph, written from its weights (no torch)."""

from __future__ import annotations

from collections.abc import Mapping

from ...onnx.builder import GraphBuilder


def graph(g: GraphBuilder, x: str, params: Mapping[str, object], part: str) -> str:
    """The whole network (it has no parts: ``part`` is always ``all``)."""
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
