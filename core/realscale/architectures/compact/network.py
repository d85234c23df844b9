"""SRVGGNetCompact, the small plain-VGG network of realesr-animevideov3 and realesr-general.

Parameter names follow Real-ESRGAN's (``body.N``) so that official weights load unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _activation(act_type: str, num_feat: int) -> nn.Module:
    if act_type == "prelu":
        return nn.PReLU(num_parameters=num_feat)
    if act_type == "leakyrelu":
        return nn.LeakyReLU(negative_slope=0.1)
    if act_type == "relu":
        return nn.ReLU()
    msg = f"SRVGGNetCompact activation must be prelu, leakyrelu or relu, got {act_type!r}"
    raise ValueError(msg)


class SRVGGNetCompact(nn.Module):
    """Convolutions at input resolution, one pixel-shuffle, plus a nearest-neighbour base."""

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_conv: int = 16,
        upscale: int = 4,
        act_type: str = "prelu",
    ) -> None:
        super().__init__()
        self.num_in_ch = num_in_ch
        self.num_out_ch = num_out_ch
        self.upscale = upscale
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)]
        layers.append(_activation(act_type, num_feat))
        for _ in range(num_conv):
            layers.append(nn.Conv2d(num_feat, num_feat, 3, 1, 1))
            layers.append(_activation(act_type, num_feat))
        layers.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        return out + F.interpolate(x, scale_factor=self.upscale, mode="nearest")
