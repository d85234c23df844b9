"""RRDBNet, the generator of ESRGAN and Real-ESRGAN (Wang et al., 2018/2021).

Parameter names follow BasicSR's state-dict keys so that official weights load unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..cpu_ops import cat_channels, conv_leaky_relu
from . import UNSHUFFLE
from .strips import tail_strips


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convolutions, each seeing every earlier output (dense connections)."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        trunk = x
        # The trunk may be kept in fp32 while the convolutions run in bf16 (see RRDBNet);
        # in one precision throughout, these casts do nothing.
        x = x.to(self.conv1.weight.dtype)
        x1 = conv_leaky_relu(self.conv1, x)
        x2 = conv_leaky_relu(self.conv2, cat_channels((x, x1)))
        x3 = conv_leaky_relu(self.conv3, cat_channels((x, x1, x2)))
        x4 = conv_leaky_relu(self.conv4, cat_channels((x, x1, x2, x3)))
        x5 = self.conv5(cat_channels((x, x1, x2, x3, x4)))
        # The 0.2 residual scaling is part of the trained model, not a tunable.
        return x5.to(trunk.dtype) * 0.2 + trunk


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks under one more residual."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """The network always upsamples by 4 internally; scale 2 and 1 fold pixels into channels
    first (pixel-unshuffle), as Real-ESRGAN's x2plus model does."""

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
    ) -> None:
        super().__init__()
        if scale not in UNSHUFFLE:
            msg = f"RRDBNet supports scale 1, 2 or 4, got {scale}"
            raise ValueError(msg)
        self.scale = scale
        self.num_in_ch = num_in_ch
        self.num_out_ch = num_out_ch
        unshuffle = UNSHUFFLE[scale]
        self.unshuffle = unshuffle
        self.conv_first = nn.Conv2d(num_in_ch * unshuffle * unshuffle, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """In bf16 the engine hands the trunk (conv_first's output, and the residual sums of
        every block) over in fp32: only the convolutions round, not the running sums."""
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        dtype = self.conv_body.weight.dtype
        feat = feat + self.conv_body(self.body(feat).to(dtype)).to(feat.dtype)
        feat = feat.to(dtype)
        count, channels, height, width = feat.shape
        strips = list(tail_strips(count, channels, height, width, feat.element_size()))
        if len(strips) == 1:
            return self._tail(feat)
        parts = [self._tail(feat[:, :, start:stop])[:, :, skip : skip + keep]
                 for start, stop, skip, keep in strips]
        return torch.cat(parts, dim=2)

    def _tail(self, feat: torch.Tensor) -> torch.Tensor:
        feat = conv_leaky_relu(self.conv_up1, F.interpolate(feat, scale_factor=2, mode="nearest"))
        feat = conv_leaky_relu(self.conv_up2, F.interpolate(feat, scale_factor=2, mode="nearest"))
        return self.conv_last(conv_leaky_relu(self.conv_hr, feat))
