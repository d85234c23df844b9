"""Turn what a weights file holds into the canonical (BasicSR / Real-ESRGAN) state dict.

Two steps: ``unwrap`` finds the tensors inside a checkpoint (Real-ESRGAN keeps them under
``params_ema`` or ``params``, Lightning under ``state_dict``), and ``canonicalize`` renames
keys from the layouts older ESRGAN releases use, so the registry only knows one naming.

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
from collections.abc import Callable, Mapping

import torch

from .. import registry
from ..errors import ModelError, UnsupportedModelError

StateDict = dict[str, torch.Tensor]

WRAPPER_KEYS = (
    "params_ema", "params", "state_dict", "model_state_dict", "model", "net_g", "generator",
)
"""Keys that hold the real state dict, in order of preference (EMA weights are the better
ones, which is why Real-ESRGAN's own inference code prefers ``params_ema``)."""

_DATA_PARALLEL_PREFIX = "module."

_SEQ_RDB = re.compile(r"model\.1\.sub\.(\d+)\.RDB([123])\.conv([1-5])\.0\.(weight|bias)")
_SEQ_TRUNK = re.compile(r"model\.1\.sub\.(\d+)\.(weight|bias)")
_SEQ_TOP = re.compile(r"model\.(\d+)\.(weight|bias)")
_SEQ_POSITIONS = {3: "conv_up1", 6: "conv_up2", 8: "conv_hr", 10: "conv_last"}

_TRUNK_RDB = re.compile(r"RRDB_trunk\.(\d+)\.RDB([123])\.conv([1-5])\.(weight|bias)")
_TRUNK_NAMES = {
    "conv_first": "conv_first", "trunk_conv": "conv_body", "upconv1": "conv_up1",
    "upconv2": "conv_up2", "HRconv": "conv_hr", "conv_last": "conv_last",
}


def unwrap(obj: object, source: str) -> StateDict:
    """The tensors of a loaded checkpoint, found under its wrapper keys if it has any."""
    for _depth in range(4):
        if not isinstance(obj, Mapping) or any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        msg = (
            f"{source} holds a {type(obj).__name__} instead of named weight tensors; "
            "use a file saved from a model's state_dict()"
        )
        raise ModelError(msg)
    state = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not state:
        keys = ", ".join(str(k) for k in list(obj)[:4]) or "nothing"
        msg = (
            f"{source} holds no weight tensors (it has {keys}); "
            "use a Real-ESRGAN or ESRGAN weights file"
        )
        raise ModelError(msg)
    return state


def _recognised(state: Mapping[str, torch.Tensor]) -> bool:
    return any(detect(state) for _name, detect, _load in registry.ARCHITECTURES)


def _is_esrgan_sequential(state: Mapping[str, torch.Tensor]) -> bool:
    return "model.0.weight" in state and any(k.startswith("model.1.sub.0.RDB1.") for k in state)


def _is_esrgan_trunk(state: Mapping[str, torch.Tensor]) -> bool:
    return "conv_first.weight" in state and any(k.startswith("RRDB_trunk.0.RDB1.") for k in state)


def _unsupported_variant(source: str, what: str) -> UnsupportedModelError:
    msg = (
        f"{source} is an ESRGAN model with {what}, which realscale cannot run; "
        "use a 4x ESRGAN or a Real-ESRGAN model"
    )
    return UnsupportedModelError(msg)


def _from_esrgan_sequential(state: Mapping[str, torch.Tensor], source: str) -> StateDict:
    out: StateDict = {}
    trunk: dict[int, dict[str, torch.Tensor]] = {}
    top: dict[int, dict[str, torch.Tensor]] = {}
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


def _from_esrgan_trunk(state: Mapping[str, torch.Tensor], source: str) -> StateDict:
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


Converter = Callable[[Mapping[str, torch.Tensor], str], StateDict]

LAYOUTS: list[tuple[str, Callable[[Mapping[str, torch.Tensor]], bool], Converter]] = [
    ("Real-ESRGAN/BasicSR", _recognised, lambda state, _source: dict(state)),
    ("ESRGAN model.N", _is_esrgan_sequential, _from_esrgan_sequential),
    ("ESRGAN RRDB_trunk", _is_esrgan_trunk, _from_esrgan_trunk),
]
"""Key layouts tried in order; the first whose check claims a state dict converts it."""


def _convert(state: Mapping[str, torch.Tensor], source: str) -> StateDict | None:
    for _name, claims, convert in LAYOUTS:
        if claims(state):
            return convert(state, source)
    return None


def _strip_data_parallel(state: Mapping[str, torch.Tensor]) -> StateDict:
    out: StateDict = {}
    for key, tensor in state.items():
        while key.startswith(_DATA_PARALLEL_PREFIX):
            key = key[len(_DATA_PARALLEL_PREFIX) :]
        out[key] = tensor
    return out


def _common_prefix(state: Mapping[str, torch.Tensor]) -> str:
    """``"net_g."`` when every key starts with that one non-numeric name, else ``""``."""
    heads = {key.partition(".")[0] for key in state}
    if len(heads) != 1 or not all("." in key for key in state):
        return ""
    (head,) = heads
    return "" if head.isdigit() else head + "."


def canonicalize(state: Mapping[str, torch.Tensor], source: str) -> StateDict:
    """Canonical keys and float32 tensors; a state dict in no known layout passes unchanged.

    ``module.`` prefixes (``nn.DataParallel``) are removed first; when that still matches no
    layout and every key shares one outer name (``net_g.``, ``generator.``), it is tried
    without that name too. The registry then decides whether the result is a known network.
    """
    state = _strip_data_parallel(state)
    converted = _convert(state, source)
    if converted is None and (prefix := _common_prefix(state)):
        stripped = {key[len(prefix) :]: tensor for key, tensor in state.items()}
        converted = _convert(stripped, source)
    result = converted if converted is not None else state
    return {key: _as_float32(tensor) for key, tensor in result.items()}


def _as_float32(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.is_floating_point() and tensor.dtype != torch.float32:
        return tensor.float()
    return tensor
