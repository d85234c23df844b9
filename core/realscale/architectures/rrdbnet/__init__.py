"""RRDBNet (ESRGAN / Real-ESRGAN x4plus, x2plus, anime_6B): everything realscale knows about it.

Detection and description read only the tensors' shapes (no torch); the network
(``network.py``), its ONNX graph (``graph.py``), its tail strips (``strips.py``) and the
key layouts of older ESRGAN releases (``layouts.py``) sit beside this file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...descriptor import ModelDescriptor
from ...errors import UnsupportedModelError
from ..detect import StateDict, count_indexed, has_all
from ..spec import Architecture, NcnnLayers, StripTail
from .layouts import LAYOUTS
from .strips import tail_strips

if TYPE_CHECKING:
    from torch import nn

    from ...onnx.builder import GraphBuilder

NAME = "RRDBNet"
UNSHUFFLE = {4: 1, 2: 2, 1: 4}
"""Scale -> pixel-unshuffle factor: the network always upsamples by 4, so scale 2 and 1
fold 2x2 and 4x4 pixels into channels first."""


def detect(state: StateDict) -> bool:
    return has_all(
        state, "conv_first.weight", "body.0.rdb1.conv1.weight", "conv_body.weight",
        "conv_up1.weight", "conv_up2.weight", "conv_hr.weight", "conv_last.weight",
    )


def describe(state: StateDict, name: str) -> ModelDescriptor:
    """What the tensors' shapes say, without a network (needs no torch)."""
    num_feat, in_folded = state["conv_first.weight"].shape[:2]
    num_out_ch = state["conv_last.weight"].shape[0]
    num_grow_ch = state["body.0.rdb1.conv1.weight"].shape[0]
    num_block = count_indexed(state, r"body\.(\d+)\.rdb1\.conv1\.weight")
    # conv_first sees in_ch * u * u channels after pixel-unshuffle by u (u = 4 / scale).
    scale, num_in_ch = 4, in_folded
    for candidate_scale, unshuffle in UNSHUFFLE.items():
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
        size_multiple=UNSHUFFLE[scale], params=params,
        # Measured on real photos with x4plus and 32 px tiles: 48 px of context leaves up to
        # 7/255, 64 px at most 2/255 against the untiled result.
        tile_context=64,
    )


def _network_class() -> Callable[..., nn.Module]:
    from .network import RRDBNet

    return RRDBNet


def _check_catalogue(name: str, scale: int, params: Mapping[str, object],
                     post_resizes: Sequence[float | None]) -> None:
    if scale not in UNSHUFFLE:
        raise ValueError(f"{name}: RRDBNet only supports scale 1, 2 or 4")


def _graph(g: GraphBuilder, x: str, params: Mapping[str, object], part: str) -> str:
    from .graph import graph

    return graph(g, x, params, part)


def _feat(model: ModelDescriptor) -> int:
    return int(model.params.get("num_feat", 64))  # type: ignore[call-overload]


def _bytes_per_pixel(model: ModelDescriptor, strips_tail: bool) -> int:
    """The dense blocks at input resolution (the tail runs in strips of fixed size):
    measured 3.1 KB per pixel for x4plus in fp32 at 512x512 on the CPU."""
    feat = _feat(model)
    out_px = model.net_scale * model.net_scale
    grow = int(model.params.get("num_grow_ch", 32))  # type: ignore[call-overload]
    per_px = 6 * feat + 8 * grow + 3 * out_px
    if not strips_tail:
        per_px += 3 * feat * out_px
    return per_px


def _conv_keys(count: int) -> list[str]:
    num_block, rest = divmod(count - 6, 15)
    if rest or num_block < 1:
        return []
    keys = ["conv_first"]
    for block in range(num_block):
        for rdb in (1, 2, 3):
            keys += [f"body.{block}.rdb{rdb}.conv{c}" for c in range(1, 6)]
    return keys + ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]


def _ncnn_state(layers: NcnnLayers, source: str) -> dict[str, Any] | None:
    """Convolutions only (LeakyReLU carries no weights), in the network's order."""
    if any(kind != "conv" for kind, _tensors in layers):
        return None
    keys = _conv_keys(len(layers))
    if not keys:
        return None
    state: dict[str, Any] = {}
    for key, (_kind, tensors) in zip(keys, layers, strict=True):
        if len(tensors) != 2:
            msg = f"{source}: convolution {key} has no bias, which no supported model lacks"
            raise UnsupportedModelError(msg)
        state[f"{key}.weight"] = tensors[0]
        state[f"{key}.bias"] = tensors[1]
    return state


ARCH = Architecture(
    name=NAME,
    detect=detect,
    describe=describe,
    network_class=_network_class,
    param_names=("num_in_ch", "num_out_ch", "num_feat", "num_block", "num_grow_ch"),
    check_catalogue=_check_catalogue,
    onnx_graph=_graph,
    bytes_per_pixel=_bytes_per_pixel,
    # RRDBNet needs 64 px of context around a tile, so 1024 keeps that extra work near 20%.
    cpu_tile_ceiling=1024,
    ncnn_state=_ncnn_state,
    # x4plus and anime_6B in bf16: 2-7/255 at the 99.9th percentile, max up to 25/255, even
    # with the first convolution and the residual trunk in fp32 (rounding the weights alone
    # gives 3/255 on x4plus: the dense blocks amplify it), so auto keeps it in fp32;
    # precision="bf16" still gives it, 2.1-2.2 times as fast, for those who prefer speed.
    bf16_accurate=False,
    # In bf16 the trunk stays fp32 (network.py): 8-bit error at the 99.9th percentile
    # 8-13/255 -> 4-5/255 on real crops, at about the same speed.
    fp32_trunk_in_bf16=True,
    strip_tail=StripTail(channels=_feat, strips=tail_strips),
    layouts=LAYOUTS,
)
