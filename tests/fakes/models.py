"""Tiny SRVGGNetCompact weights files: real networks that cost almost nothing to run.

``identity=True`` zeroes every convolution, so the network's output is exactly its
nearest-neighbour base: frame ``k`` of an upscale, sampled at every ``scale``-th pixel, is the
input frame itself, which makes frame-accurate tests exact. Otherwise the weights are random
(seeded, equal for the sub-pixels of each output block), so the network visibly changes
every pixel yet makes an image that lossy video codecs can hold.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from realscale.architectures.compact.network import SRVGGNetCompact


def compact_model(path: Path, *, scale: int = 2, identity: bool = False, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    network = SRVGGNetCompact(num_feat=4, num_conv=1, upscale=scale)
    with torch.no_grad():
        for name, tensor in network.named_parameters():
            if identity:
                tensor.zero_()
            elif name.endswith("weight") and tensor.ndim == 4:
                tensor.mul_(0.3)
        if not identity:
            # The same output for every sub-pixel of a block: a smooth image (as real models
            # make), not a checkerboard that 4:2:0 video could not hold.
            last = network.body[-1]
            for tensor in (last.weight, last.bias):
                per_colour = tensor.view(3, scale * scale, *tensor.shape[1:])
                per_colour.copy_(per_colour[:, :1].expand_as(per_colour).clone())
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(path))
    return path
