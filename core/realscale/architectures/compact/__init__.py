"""SRVGGNetCompact (realesr-animevideov3, realesr-general-x4v3): everything realscale knows
about it. The network (``network.py``) and its ONNX graph (``graph.py``) sit beside this file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...descriptor import ModelDescriptor
from ...errors import UnsupportedModelError
from ..detect import StateDict, count_indexed, has_all
from ..spec import Architecture, NcnnLayers

if TYPE_CHECKING:
    from torch import nn

    from ...onnx.builder import GraphBuilder

NAME = "SRVGGNetCompact"


def detect(state: StateDict) -> bool:
    if "body.0.weight" not in state or state["body.0.weight"].ndim != 4:
        return False
    # body.1 is a PReLU (1-D slopes); with LeakyReLU/ReLU it has no tensors and body.2 follows.
    if "body.1.weight" in state:
        return bool(state["body.1.weight"].ndim == 1)
    return has_all(state, "body.2.weight") and state["body.2.weight"].ndim == 4


def describe(state: StateDict, name: str) -> ModelDescriptor:
    """What the tensors' shapes say, without a network (needs no torch)."""
    n_layers = count_indexed(state, r"body\.(\d+)\.weight")
    last = state[f"body.{n_layers - 1}.weight"]
    if last.ndim != 4 or n_layers < 3:
        msg = f"{name}: SRVGGNetCompact ends in an unexpected layer; the file may be damaged"
        raise UnsupportedModelError(msg)
    num_feat, num_in_ch = state["body.0.weight"].shape[:2]
    # PReLU stores one slope per channel; LeakyReLU and ReLU have no tensors at all, so the
    # odd-numbered keys only exist for PReLU (ReLU and LeakyReLU cannot be told apart: the
    # LeakyReLU of Real-ESRGAN's training code is assumed).
    act_type = "prelu" if "body.1.weight" in state else "leakyrelu"
    num_conv = (n_layers - 3) // 2
    out_total = last.shape[0]
    upscale = 0
    for candidate_out in (3, 1, 4):
        root = math.isqrt(out_total // candidate_out)
        if candidate_out * root * root == out_total and root in (1, 2, 3, 4, 8):
            upscale, num_out_ch = root, candidate_out
            if num_out_ch == num_in_ch:
                break
    if upscale == 0:
        msg = f"{name}: cannot read the scale of this SRVGGNetCompact ({out_total} outputs)"
        raise UnsupportedModelError(msg)
    params = {
        "num_in_ch": num_in_ch, "num_out_ch": num_out_ch, "num_feat": num_feat,
        "num_conv": num_conv, "upscale": upscale, "act_type": act_type,
    }
    return ModelDescriptor(
        name=name, architecture=NAME, network=None, scale=upscale, net_scale=upscale,
        in_channels=num_in_ch, out_channels=num_out_ch, params=params,
        # Every 3x3 convolution reaches one pixel further; the network has num_conv + 2 of
        # them, so this context makes tiles exact (plus 2 for a bicubic post-resize).
        tile_context=num_conv + 4,
    )


def _network_class() -> Callable[..., nn.Module]:
    from .network import SRVGGNetCompact

    return SRVGGNetCompact


def _check_catalogue(name: str, scale: int, params: Mapping[str, object],
                     post_resizes: Sequence[float | None]) -> None:
    """The pixel-shuffle's factor, times the bicubic post-resize of an ncnn source (the x2/x3
    animevideov3 files are the x4 network followed by one), must give the entry's scale."""
    upscale = params["upscale"]
    if not isinstance(upscale, int) or upscale < 1:
        raise ValueError(f"{name}: 'upscale' must be a positive integer")
    for post_resize in post_resizes:
        factor = upscale * post_resize if post_resize is not None else upscale
        if not math.isclose(factor, scale):
            raise ValueError(f"{name}: a source yields x{factor:g} but the entry says x{scale}")


def _graph(g: GraphBuilder, x: str, params: Mapping[str, object], part: str) -> str:
    from .graph import graph

    return graph(g, x, params, part)


def _bytes_per_pixel(model: ModelDescriptor, strips_tail: bool) -> int:
    feat = int(model.params.get("num_feat", 64))  # type: ignore[call-overload]
    out_px = model.net_scale * model.net_scale
    return 4 * feat + 6 * 3 * out_px


def _ncnn_state(layers: NcnnLayers, source: str) -> dict[str, Any] | None:
    """body.0 conv, body.1 PReLU, ..., body.N conv: every weighted layer in order."""
    if not any(kind == "prelu" for kind, _tensors in layers):
        return None
    state: dict[str, Any] = {}
    for index, (_kind, tensors) in enumerate(layers):
        state[f"body.{index}.weight"] = tensors[0]
        if len(tensors) > 1:
            state[f"body.{index}.bias"] = tensors[1]
    return state


ARCH = Architecture(
    name=NAME,
    detect=detect,
    describe=describe,
    network_class=_network_class,
    param_names=("num_in_ch", "num_out_ch", "num_feat", "num_conv", "upscale", "act_type"),
    check_catalogue=_check_catalogue,
    onnx_graph=_graph,
    bytes_per_pixel=_bytes_per_pixel,
    # The compact net needs 20 px of context, and at 512 a 4000x3000 x4 upscale peaks at 2.3
    # output copies (1024: 3.6) and runs faster (bench/worker_memory.py).
    cpu_tile_ceiling=512,
    ncnn_state=_ncnn_state,
    # With its first convolution in fp32, bf16 gives 1-2/255 at the 99.9th percentile on
    # each of six real 64 px crops, max 2-4/255 (tests/core/test_precision_cpu.py).
    bf16_accurate=True,
)
