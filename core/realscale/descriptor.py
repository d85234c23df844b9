"""What a loaded model is, so the tiler, the engine and hosts need not guess."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from torch import nn


@dataclass
class ModelDescriptor:
    """A network with its weights loaded, plus the facts the pipeline needs about it."""

    name: str
    """Catalogue name, or the weights file's name for user weights."""
    architecture: str
    """``"RRDBNet"`` or ``"SRVGGNetCompact"``."""
    network: nn.Module | None
    """The torch module, in eval mode, on the CPU, in float32; None when the model was loaded
    without torch (for ONNX Runtime), and then ``arrays`` holds the weights."""
    scale: int
    """Output size divided by input size, after ``post_resize``."""
    net_scale: int
    """Scale of the network itself (4 for animevideov3's x2/x3 files)."""
    in_channels: int = 3
    out_channels: int = 3
    size_multiple: int = 1
    """Input height and width must be multiples of this (pixel-unshuffle models)."""
    post_resize: float | None = None
    """Bicubic resize applied to the network output, as the ncnn x2/x3 files define it."""
    tile_context: int = 64
    """Input pixels a tile must see beyond the part it keeps for the result to match the
    untiled one (within 2/255): the effective reach of the network."""
    params: dict[str, object] = field(default_factory=dict)
    """Architecture hyperparameters, read from the tensors."""
    source: str = ""
    """Where the weights came from (a file path or a package file), for ``realscale models``."""
    arrays: Mapping[str, np.ndarray] | None = None
    """The canonical state dict as float32 numpy arrays, when loaded without torch."""
