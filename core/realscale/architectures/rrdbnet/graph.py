"""RRDBNet as an ONNX graph, written from its weights (no torch).

The torch network's forward runs its tail in Python-chosen row strips that a trace would
freeze to one image size; written by hand, the graph stays dynamic and comes in two parts
(``body``: image to features, ``tail``: features to image) so that ONNX Runtime can run the
tail in the same exact strips.
"""

from __future__ import annotations

from collections.abc import Mapping

from ...onnx.builder import GraphBuilder
from . import UNSHUFFLE


def graph(g: GraphBuilder, x: str, params: Mapping[str, object], part: str) -> str:
    if part == "tail":
        return _tail(g, x)
    feat = _body(g, x, params)
    return feat if part == "body" else _tail(g, feat)


def _body(g: GraphBuilder, x: str, params: Mapping[str, object]) -> str:
    """Input to the trunk's features (at input resolution, ``num_feat`` channels)."""
    w = g.weights
    unshuffle = UNSHUFFLE[int(params["scale"])]  # type: ignore[call-overload]
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


def _tail(g: GraphBuilder, feat: str) -> str:
    """Features to the image: two nearest 2x upsamplings, each followed by a convolution."""
    feat = g.leaky(g.conv(g.upsample(feat, 2), "conv_up1"), 0.2)
    feat = g.leaky(g.conv(g.upsample(feat, 2), "conv_up2"), 0.2)
    return g.conv(g.leaky(g.conv(feat, "conv_hr"), 0.2), "conv_last")
