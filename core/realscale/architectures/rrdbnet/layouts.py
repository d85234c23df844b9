"""The key layouts of older ESRGAN releases, converted to the canonical (BasicSR) names.

ESRGAN layouts (checked against xinntao/ESRGAN ``RRDBNet_arch.py`` for "RRDB_trunk" and
against the old-architecture key map in chaiNNer's spandrel ESRGAN loader for ``model.N``)::

    canonical (BasicSR)    ESRGAN model.N                 ESRGAN RRDB_trunk
    conv_first             model.0                        conv_first
    body.N.rdbK.convC      model.1.sub.N.RDBK.convC.0     RRDB_trunk.N.RDBK.convC
    conv_body              model.1.sub.<num_block>        trunk_conv
    conv_up1               model.3                        upconv1
    conv_up2               model.6                        upconv2
    conv_hr                model.8                        HRconv
    conv_last              model.10                       conv_last

(each with ``.weight`` and ``.bias``).

In ``model.N`` the gaps are parameter-free layers (nearest upsampling and LeakyReLU), so the
convolution positions also tell the upsampling: 2x and 8x ESRGAN models and pixel-shuffle
variants sit at other positions, and the RRDBNet realscale runs cannot express them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ...errors import UnsupportedModelError
from ..spec import KeyLayout

StateDict = dict[str, Any]

_SEQ_RDB = re.compile(r"model\.1\.sub\.(\d+)\.RDB([123])\.conv([1-5])\.0\.(weight|bias)")
_SEQ_TRUNK = re.compile(r"model\.1\.sub\.(\d+)\.(weight|bias)")
_SEQ_TOP = re.compile(r"model\.(\d+)\.(weight|bias)")
_SEQ_POSITIONS = {3: "conv_up1", 6: "conv_up2", 8: "conv_hr", 10: "conv_last"}

_TRUNK_RDB = re.compile(r"RRDB_trunk\.(\d+)\.RDB([123])\.conv([1-5])\.(weight|bias)")
_TRUNK_NAMES = {
    "conv_first": "conv_first", "trunk_conv": "conv_body", "upconv1": "conv_up1",
    "upconv2": "conv_up2", "HRconv": "conv_hr", "conv_last": "conv_last",
}


def _is_esrgan_sequential(state: Mapping[str, Any]) -> bool:
    return "model.0.weight" in state and any(k.startswith("model.1.sub.0.RDB1.") for k in state)


def _is_esrgan_trunk(state: Mapping[str, Any]) -> bool:
    return "conv_first.weight" in state and any(k.startswith("RRDB_trunk.0.RDB1.") for k in state)


def _unsupported_variant(source: str, what: str) -> UnsupportedModelError:
    msg = (
        f"{source} is an ESRGAN model with {what}, which realscale cannot run; "
        "use a 4x ESRGAN or a Real-ESRGAN model"
    )
    return UnsupportedModelError(msg)


def _from_esrgan_sequential(state: Mapping[str, Any], source: str) -> StateDict:
    out: StateDict = {}
    trunk: dict[int, dict[str, Any]] = {}
    top: dict[int, dict[str, Any]] = {}
    for key, tensor in state.items():
        if m := _SEQ_RDB.fullmatch(key):
            out[f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"] = tensor
        elif m := _SEQ_TRUNK.fullmatch(key):
            trunk.setdefault(int(m[1]), {})[m[2]] = tensor
        elif m := _SEQ_TOP.fullmatch(key):
            top.setdefault(int(m[1]), {})[m[2]] = tensor
        else:
            raise _unsupported_variant(source, f"layers realscale does not know (such as {key})")
    if len(trunk) != 1:
        raise _unsupported_variant(source, f"{len(trunk)} convolutions after its RRDB blocks")
    (trunk_parts,) = trunk.values()
    out.update({f"conv_body.{kind}": t for kind, t in trunk_parts.items()})
    positions = sorted(top)
    if positions != [0, *_SEQ_POSITIONS]:
        up = len(positions) - 3
        what = (
            "pixel-shuffle upsampling" if 2 in positions
            else f"{2 ** up}x upsampling" if up >= 0
            else "missing output layers"
        )
        raise _unsupported_variant(source, what)
    out.update({f"conv_first.{kind}": t for kind, t in top[0].items()})
    for position, name in _SEQ_POSITIONS.items():
        out.update({f"{name}.{kind}": t for kind, t in top[position].items()})
    return out


def _from_esrgan_trunk(state: Mapping[str, Any], source: str) -> StateDict:
    out: StateDict = {}
    for key, tensor in state.items():
        if m := _TRUNK_RDB.fullmatch(key):
            out[f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"] = tensor
            continue
        layer, _, kind = key.rpartition(".")
        if layer in _TRUNK_NAMES and kind in ("weight", "bias"):
            out[f"{_TRUNK_NAMES[layer]}.{kind}"] = tensor
        elif layer == "upconv3":
            raise _unsupported_variant(source, "8x upsampling")
        else:
            raise _unsupported_variant(source, f"layers realscale does not know (such as {key})")
    if "conv_up2.weight" not in out:
        raise _unsupported_variant(source, "2x upsampling (no upconv2)")
    return out



LAYOUTS = (
    KeyLayout("ESRGAN model.N", _is_esrgan_sequential, _from_esrgan_sequential),
    KeyLayout("ESRGAN RRDB_trunk", _is_esrgan_trunk, _from_esrgan_trunk),
)
