"""Detect and load SRVGGNetCompact (realesr-animevideov3, realesr-general-x4v3) weights."""

from __future__ import annotations

import math

from ...descriptor import ModelDescriptor
from ...errors import UnsupportedModelError
from ..detect import StateDict, count_indexed, has_all

NAME = "SRVGGNetCompact"


def detect(state: StateDict) -> bool:
    if "body.0.weight" not in state or state["body.0.weight"].ndim != 4:
        return False
    # body.1 is a PReLU (1-D slopes); with LeakyReLU/ReLU it has no tensors and body.2 follows.
    if "body.1.weight" in state:
        return state["body.1.weight"].ndim == 1
    return has_all(state, "body.2.weight") and state["body.2.weight"].ndim == 4


def load(state: StateDict, name: str) -> ModelDescriptor:
    from ..build import attach_network
    from .network import SRVGGNetCompact

    return attach_network(describe(state, name), state, SRVGGNetCompact)


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
