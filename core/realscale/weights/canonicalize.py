"""Turn what a weights file holds into the canonical (BasicSR / Real-ESRGAN) state dict.

Two steps: ``unwrap`` finds the tensors inside a checkpoint (Real-ESRGAN keeps them under
``params_ema`` or ``params``, Lightning under ``state_dict``), and ``canonicalize`` renames
keys from the layouts older releases use (ESRGAN's), so the registry only knows one naming.

The other layouts belong to their architecture (``KeyLayout`` in its folder, such as
the ESRGAN releases' in ``architectures/rrdbnet/layouts.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from .. import architectures
from ..errors import ModelError

StateDict = dict[str, torch.Tensor]

WRAPPER_KEYS = (
    "params_ema", "params", "state_dict", "model_state_dict", "model", "net_g", "generator",
)
"""Keys that hold the real state dict, in order of preference (EMA weights are the better
ones, which is why Real-ESRGAN's own inference code prefers ``params_ema``)."""

_DATA_PARALLEL_PREFIX = "module."


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
    return architectures.detect(state) is not None


Converter = Callable[[Mapping[str, torch.Tensor], str], StateDict]


def _layouts() -> list[tuple[str, Callable[[Mapping[str, torch.Tensor]], bool], Converter]]:
    """Key layouts tried in order: the canonical one, then each architecture's others; the
    first whose check claims a state dict converts it."""
    found: list[tuple[str, Callable[[Mapping[str, torch.Tensor]], bool], Converter]] = [
        ("Real-ESRGAN/BasicSR", _recognised, lambda state, _source: dict(state))]
    for arch in architectures.ARCHITECTURES:
        found += [(layout.name, layout.claims, layout.convert) for layout in arch.layouts]
    return found


LAYOUTS = _layouts()


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
