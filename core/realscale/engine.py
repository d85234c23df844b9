"""The only place the network runs: numpy tiles in, numpy tiles out, torch kept inside."""

from __future__ import annotations

import copy
import logging

import numpy as np
import torch
from torch.nn import functional as F

from .descriptor import ModelDescriptor
from .devices import Placement, free_memory, is_out_of_memory
from .tiling import TileOutOfMemory

log = logging.getLogger(__name__)

FIXED_BYTES = 400 << 20
"""Memory a forward pass needs whatever the tile size (RRDBNet's tail strips, workspace)."""


class Engine:
    """A model placed on a device in a precision, ready to run batches of tiles."""

    def __init__(self, model: ModelDescriptor, placement: Placement) -> None:
        self.model = model
        self.placement = placement
        self.precision = placement.precision
        self._fallback = placement.fallback_fp32
        self._network = _placed(model.network, placement.device, placement.dtype)

    @property
    def device(self) -> torch.device:
        return self.placement.device

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, h, w, 3) float32 in [0, 1] -> (N, h*scale, w*scale, 3) float32, unclipped."""
        try:
            result = self._forward(batch, self.precision)
            if self._fallback and self.precision != "fp32" and not np.isfinite(result).all():
                # Some GPUs (GTX 16xx) overflow in fp16 and return NaN: black images.
                log.warning("%s gave NaN/inf in %s; switching to fp32", self.model.name,
                            self.precision)
                self._switch_precision("fp32")
                result = self._forward(batch, "fp32")
        except Exception as exc:
            if is_out_of_memory(exc):
                self._release()
                raise TileOutOfMemory(str(exc)) from exc
            raise
        return result

    def _switch_precision(self, precision: str) -> None:
        # From the descriptor's float32 weights: converting the half-precision copy back would
        # keep its rounding.
        self.precision = precision
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        self._network = _placed(self.model.network, self.device, dtype)

    def _forward(self, batch: np.ndarray, precision: str) -> np.ndarray:
        dtype = next(self._network.parameters()).dtype
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))
            x = x.to(self.device, dtype=dtype, non_blocking=True)
            y = self._network(x)
            if self.model.post_resize is not None:
                y = F.interpolate(
                    y.float(), scale_factor=self.model.post_resize, mode="bicubic",
                    align_corners=False,
                )
            return y.float().permute(0, 2, 3, 1).cpu().numpy()

    def _release(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def bytes_per_pixel(self, batch: int = 1) -> int:
        """Rough peak memory of one input pixel during a forward pass, for tile=auto."""
        element = torch.finfo(self.placement.dtype).bits // 8
        feat = int(self.model.params.get("num_feat", 64))  # type: ignore[call-overload]
        out_px = self.model.net_scale * self.model.net_scale
        if self.model.architecture == "RRDBNet":
            # The dense blocks at input resolution (the tail runs in strips of fixed size):
            # measured 3.1 KB per pixel for x4plus in fp32 at 512x512 on the CPU.
            grow = int(self.model.params.get("num_grow_ch", 32))  # type: ignore[call-overload]
            per_px = 6 * feat + 8 * grow + 3 * out_px
        else:
            per_px = 4 * feat + 6 * 3 * out_px
        return per_px * element * batch

    def auto_tile(self, overhead: int, batch: int = 1) -> int:
        """The largest tile core whose forward pass fits in the free memory of the device."""
        cpu = self.device.type == "cpu"
        available = free_memory(self.device)
        budget = min(available // 4, 6 << 30) if cpu else int(available * 0.6)
        budget -= FIXED_BYTES * batch
        side = int((max(budget, 0) / self.bytes_per_pixel(batch)) ** 0.5) - overhead
        # Past these, bigger CPU tiles do not run faster; they only cost memory. RRDBNet needs
        # 64 px of context around a tile, so 1024 keeps that extra work near 20%; the compact
        # net needs 20 px, and at 512 a 4000x3000 x4 upscale peaks at 2.3 output copies (1024:
        # 3.6) and runs faster (bench/worker_memory.py).
        ceiling = (1024 if self.model.tile_context > 32 else 512) if cpu else 2048
        return max(32, min(ceiling, side // 8 * 8))


def _placed(network: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The network on ``device`` in ``dtype``, leaving the descriptor's float32 CPU copy as it
    is (several engines may share one loaded model)."""
    if device.type == "cpu" and dtype == torch.float32:
        return network.eval()
    return copy.deepcopy(network).to(device, dtype=dtype).eval()
