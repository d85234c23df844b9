"""Detect and load RRDBNet (ESRGAN / Real-ESRGAN x4plus, x2plus, anime_6B) weights."""

from __future__ import annotations

from ...descriptor import ModelDescriptor
from ...errors import UnsupportedModelError
from ..detect import StateDict, count_indexed, has_all

NAME = "RRDBNet"


def detect(state: StateDict) -> bool:
    return has_all(
        state, "conv_first.weight", "body.0.rdb1.conv1.weight", "conv_body.weight",
        "conv_up1.weight", "conv_up2.weight", "conv_hr.weight", "conv_last.weight",
    )


def load(state: StateDict, name: str) -> ModelDescriptor:
    from ..build import attach_network
    from .network import RRDBNet

    return attach_network(describe(state, name), state, RRDBNet)


def describe(state: StateDict, name: str) -> ModelDescriptor:
    """What the tensors' shapes say, without a network (needs no torch)."""
    num_feat, in_folded = state["conv_first.weight"].shape[:2]
    num_out_ch = state["conv_last.weight"].shape[0]
    num_grow_ch = state["body.0.rdb1.conv1.weight"].shape[0]
    num_block = count_indexed(state, r"body\.(\d+)\.rdb1\.conv1\.weight")
    # conv_first sees in_ch * u * u channels after pixel-unshuffle by u (u = 4 / scale).
    scale, num_in_ch = 4, in_folded
    for candidate_scale, unshuffle in ((4, 1), (2, 2), (1, 4)):
        if in_folded % (unshuffle * unshuffle) == 0 and in_folded // (unshuffle * unshuffle) in (
            1, 3, 4,
        ):
            scale, num_in_ch = candidate_scale, in_folded // (unshuffle * unshuffle)
            if num_in_ch == num_out_ch:
                break
    if num_in_ch not in (1, 3, 4):
        msg = f"{name}: RRDBNet with {in_folded} input channels is not supported"
        raise UnsupportedModelError(msg)
    params = {
        "num_in_ch": num_in_ch, "num_out_ch": num_out_ch, "scale": scale,
        "num_feat": num_feat, "num_block": num_block, "num_grow_ch": num_grow_ch,
    }
    return ModelDescriptor(
        name=name, architecture=NAME, network=None, scale=scale, net_scale=scale,
        in_channels=num_in_ch, out_channels=num_out_ch,
        size_multiple={4: 1, 2: 2, 1: 4}[scale], params=params,
        # Measured on real photos with x4plus and 32 px tiles: 48 px of context leaves up to
        # 7/255, 64 px at most 2/255 against the untiled result.
        tile_context=64,
    )

