"""Which architecture a state dict holds, tried in order; the first that claims it loads it."""

from __future__ import annotations

from collections.abc import Callable

from .architectures import compact, rrdbnet
from .architectures.detect import StateDict
from .descriptor import ModelDescriptor
from .errors import UnsupportedModelError

Detector = Callable[[StateDict], bool]
Loader = Callable[[StateDict, str], ModelDescriptor]

# RRDBNet first: its keys are specific, while Compact only needs body.0/body.1.
ARCHITECTURES: list[tuple[str, Detector, Loader]] = [
    (rrdbnet.NAME, rrdbnet.detect, rrdbnet.load),
    (compact.NAME, compact.detect, compact.load),
]


DESCRIBERS: dict[str, Loader] = {rrdbnet.NAME: rrdbnet.describe, compact.NAME: compact.describe}
"""Per architecture: the descriptor from the tensors' shapes alone, without a network."""


def describe_state_dict(state: StateDict, name: str) -> ModelDescriptor:
    """The descriptor of a canonical state dict, with ``network`` None (needs no torch)."""
    for arch, detect, _load in ARCHITECTURES:
        if detect(state):
            return DESCRIBERS[arch](state, name)
    return load_state_dict_model(state, name)  # raises the "matches no architecture" error


def load_state_dict_model(state: StateDict, name: str) -> ModelDescriptor:
    """Build the network a canonical state dict describes, with its weights."""
    for _arch, detect, load in ARCHITECTURES:
        if detect(state):
            return load(state, name)
    tried = ", ".join(arch for arch, _, _ in ARCHITECTURES)
    sample = ", ".join(list(state)[:4]) or "no tensors"
    msg = (
        f"{name}: the weights match no supported architecture (tried {tried}; "
        f"found keys such as {sample}); use a Real-ESRGAN or ESRGAN model"
    )
    raise UnsupportedModelError(msg)
