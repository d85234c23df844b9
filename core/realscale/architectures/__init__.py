"""The network architectures realscale runs: one folder each, and the one registry list.

Each folder (``rrdbnet/``, ``compact/``) owns every fact about its network in an
``Architecture`` record (``spec.py``): detection from tensors, description, the torch module,
the ONNX graph, parameter names, scale rule, bf16 accuracy, memory per pixel, tile context.
Adding an architecture is one new folder and one line in ``ARCHITECTURES`` below.
Importing this package imports neither torch nor onnx.
"""

from __future__ import annotations

from ..descriptor import ModelDescriptor
from ..errors import UnsupportedModelError
from . import compact, rrdbnet
from .detect import StateDict
from .spec import Architecture, KeyLayout, StripTail

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "KeyLayout",
    "StripTail",
    "build",
    "describe",
    "detect",
    "get",
    "load",
]

ARCHITECTURES: tuple[Architecture, ...] = (
    rrdbnet.ARCH,  # first: its keys are specific, while Compact only needs body.0/body.1
    compact.ARCH,
)
"""Tried in this order; the first whose ``detect`` claims a state dict describes it."""


def get(name: str) -> Architecture:
    """The architecture a descriptor (or a catalogue entry, or an ONNX file) names."""
    for arch in ARCHITECTURES:
        if arch.name == name:
            return arch
    names = ", ".join(arch.name for arch in ARCHITECTURES)
    msg = f"unknown architecture {name!r}; realscale runs {names}"
    raise UnsupportedModelError(msg)


def detect(state: StateDict) -> Architecture | None:
    """The first architecture that claims a canonical state dict, or None."""
    return next((arch for arch in ARCHITECTURES if arch.detect(state)), None)


def describe(state: StateDict, name: str) -> ModelDescriptor:
    """The descriptor of a canonical state dict, with ``network`` None (needs no torch)."""
    arch = detect(state)
    if arch is None:
        tried = ", ".join(arch.name for arch in ARCHITECTURES)
        sample = ", ".join(list(state)[:4]) or "no tensors"
        msg = (
            f"{name}: the weights match no supported architecture (tried {tried}; "
            f"found keys such as {sample}); use a Real-ESRGAN or ESRGAN model"
        )
        raise UnsupportedModelError(msg)
    return arch.describe(state, name)


def build(descriptor: ModelDescriptor, state: StateDict) -> ModelDescriptor:
    """Give a descriptor its torch network, made from ``state`` (torch tensors)."""
    from .attach import attach_network

    return attach_network(descriptor, state, get(descriptor.architecture).network_class())


def load(state: StateDict, name: str) -> ModelDescriptor:
    """Describe a canonical state dict of torch tensors and build its network."""
    return build(describe(state, name), state)
