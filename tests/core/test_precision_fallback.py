"""Half precision that overflows (GTX 16xx cards give NaN: black images) is retried in fp32."""

from __future__ import annotations

import numpy as np
import torch

from helpers import rgb_crop
from realscale import Upscaler, devices, load_model
from realscale.backends import torch as engine


def test_nan_in_half_precision_falls_back_to_fp32(monkeypatch) -> None:
    pixels = rgb_crop("00003.png", 32)
    reference = Upscaler(load_model("realesr-animevideov3"), device="cpu",
                         precision="fp32").upscale(pixels)

    model = load_model("realesr-animevideov3")
    real_forward = model.network.forward
    half_calls = []

    def overflowing_forward(x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32:
            half_calls.append(x.dtype)
            return torch.full((x.shape[0], 3, x.shape[2] * 4, x.shape[3] * 4), float("nan"),
                              dtype=x.dtype)
        return real_forward(x)

    monkeypatch.setattr(model.network, "forward", overflowing_forward)
    # What `auto` gives on CUDA (half precision with the fp32 retry), here on the CPU in bf16.
    monkeypatch.setattr(devices, "choose", lambda device, precision, **_options: devices.Placement(
        torch.device("cpu"), "bf16", fallback_fp32=True))
    # The whole network in bf16, so that the forward above sees the half-precision input.
    monkeypatch.setattr(engine, "_first_conv_in_fp32", lambda *_args: False)
    upscaler = Upscaler(model, device="auto", precision="auto")
    result = upscaler.upscale(pixels)
    assert half_calls, "the half-precision pass must have run"
    assert upscaler.precision == "fp32"
    assert np.array_equal(result, reference)
