"""The GPU code path of the torch engine, run on the CPU where no GPU is at hand: half
precision in channels_last, several tiles per forward pass, fixed-shape buckets.

What only a GPU can show (pinned-memory copies overlapping compute, CUDA graphs, speed) is
not tested here; bench/speed.py measures it where a GPU is present.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import assert_close_u8, rgb_crop
from realscale import devices, load_model
from realscale.backends.torch import TorchEngine
from realscale.tiling import BORDER
from realscale.upscale import _reflect_pad

CPU = torch.device("cpu")


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def compact():
    return load_model("realesr-animevideov3")


def test_micro_batches_equal_single_tiles(compact) -> None:
    tiles = np.stack([rgb_crop("00003.png", 24, 10 * i, 15 * i) for i in range(5)])
    tiles = tiles.astype(np.float32) / 255
    engine = TorchEngine(compact, devices.Placement(CPU, "fp32", False), max_batch=2)
    assert engine.batch_size(24, 24, 5) == 2
    together = engine.run(tiles)
    alone = np.concatenate([engine.run(tile[None]) for tile in tiles])
    assert together.shape == (5, 96, 96, 3)
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_half_precision_channels_last_matches_fp32() -> None:
    """What CUDA runs (fp16, channels_last, first convolution in fp32), here on the CPU:
    within fp16 tolerance of fp32 on a real crop of the 6-block RRDBNet."""
    model = load_model("realesrgan-x4plus-anime")
    tile = _reflect_pad(rgb_crop("00003.png", 32, 40, 60).astype(np.float32) / 255, BORDER,
                        0, 0)[None]
    fp32 = TorchEngine(model, devices.Placement(CPU, "fp32", False)).run(tile)
    half = TorchEngine(model, devices.Placement(CPU, "fp16", True, channels_last=True))
    assert half.channels_last and half.precision == "fp16"
    out = half.run(tile)
    assert half.precision == "fp16", "no NaN/inf, so no fall back to fp32"
    keep = slice(4 * BORDER, -4 * BORDER)
    assert_close_u8(_u8(out[0, keep, keep]), _u8(fp32[0, keep, keep]), max_diff=2, p999=1)


def test_buckets_give_few_shapes_and_keep_the_top_left(compact) -> None:
    """Bucketed tiles run at a multiple of the step and are cut back; the output is unchanged
    wherever the network cannot see the padding (beyond its reach from the bottom/right)."""
    engine = TorchEngine(compact, devices.Placement(CPU, "fp32", False), bucket=32)
    assert engine.padded_shape(40, 70) == (64, 96)
    assert engine.padded_shape(64, 64) == (64, 64)
    tile = rgb_crop("00003.png", 40, 0, 0)[None, :, :37].astype(np.float32) / 255
    plain = TorchEngine(compact, devices.Placement(CPU, "fp32", False)).run(tile)
    bucketed = engine.run(tile)
    assert bucketed.shape == plain.shape == (1, 160, 148, 3)
    reach = 4 * (compact.tile_context + 1)  # output pixels
    np.testing.assert_allclose(bucketed[:, : 160 - reach, : 148 - reach],
                               plain[:, : 160 - reach, : 148 - reach], atol=1e-5)
