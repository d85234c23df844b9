"""What an architecture is to the rest of realscale: every fact the pipeline needs about a
network, in one record that the architecture's own folder fills in.

Nothing outside ``architectures/`` tests an architecture's name: the loader, the engines,
the ONNX graph builder, the ncnn reader and the catalogue ask the record instead.
Importing this module imports neither torch nor onnx.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..descriptor import ModelDescriptor
from .detect import StateDict

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from ..onnx.builder import GraphBuilder

NcnnLayers = Sequence[tuple[str, Sequence["np.ndarray"]]]
"""The weighted layers of an ncnn file in file order: (``"conv"`` or ``"prelu"``, arrays)."""
Strips = Callable[[int, int, int, int, int], Iterator[tuple[int, int, int, int]]]
"""(count, channels, height, width, element size) -> (start, stop, skip, keep) per strip."""


@dataclass(frozen=True)
class KeyLayout:
    """Another key naming of this architecture's tensors (older releases), converted to the
    canonical one on the way in."""

    name: str
    claims: Callable[[Mapping[str, Any]], bool]
    convert: Callable[[Mapping[str, Any], str], dict[str, Any]]


@dataclass(frozen=True)
class StripTail:
    """The network's upsampling tail can run in row strips of its features (bounded memory):
    its ONNX graph then comes in two parts, ``body`` (image to features) and ``tail``."""

    channels: Callable[[ModelDescriptor], int]
    """Feature channels between the body and the tail."""
    strips: Strips
    """Where the tail is cut (the same strips in the torch network and in ONNX Runtime)."""


@dataclass(frozen=True)
class Architecture:
    """One network family: how to recognise it, describe it, build it, and run it well."""

    name: str
    """The name descriptors and the catalogue use (``ModelDescriptor.architecture``)."""
    detect: Callable[[StateDict], bool]
    """Whether canonical tensors are this architecture's (false positives are settled by the
    registry's order; false negatives must not happen)."""
    describe: Callable[[StateDict, str], ModelDescriptor]
    """The descriptor from the tensors' shapes alone (``network`` None; needs no torch)."""
    network_class: Callable[[], Callable[..., nn.Module]]
    """The torch module class, imported on demand (it needs torch)."""
    param_names: tuple[str, ...]
    """The hyperparameters a catalogue entry lists (``params``), as ``describe`` reads them."""
    check_catalogue: Callable[[str, int, Mapping[str, object], Sequence[float | None]], None]
    """Raise ValueError when a catalogue entry (name, scale, params, each source's
    post-resize factor) claims a scale this network cannot give."""
    onnx_graph: Callable[[GraphBuilder, str, Mapping[str, object], str], str]
    """Add the network to an ONNX graph: (builder, input name, params, part) -> output name."""
    bytes_per_pixel: Callable[[ModelDescriptor, bool], int]
    """Peak bytes per input pixel of one forward pass, per byte of element size, for the
    auto tile size; the flag says whether the tail runs in strips."""
    cpu_tile_ceiling: int
    """Largest auto tile on a CPU: past it tiles only cost memory, not time."""
    ncnn_state: Callable[[NcnnLayers, str], dict[str, Any] | None]
    """The canonical state dict of an ncnn file's weighted layers, or None when the layers
    are not this architecture's."""
    bf16_accurate: bool = False
    """Whether ``auto`` may run it in bf16 on a CPU with bfloat16 instructions."""
    fp32_trunk_in_bf16: bool = False
    """In bf16, the network keeps its running sums in fp32: the first convolution hands on
    fp32 (the network's forward casts around its convolutions)."""
    strip_tail: StripTail | None = None
    layouts: tuple[KeyLayout, ...] = ()
