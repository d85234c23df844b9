"""What every backend's engine does: run batches of tiles, fall back to fp32, and tell the
tiling policy (``tiling.policy``) what it needs to size tiles."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod

import numpy as np

from .. import architectures
from ..architectures import Architecture
from ..descriptor import ModelDescriptor
from ..devices import is_out_of_memory
from ..tiling import TileOutOfMemory

log = logging.getLogger("realscale.engine")


class TileEngine(ABC):
    """A model made ready to run on one device in one precision: the tiler's only contact.

    ``run`` takes (N, h, w, 3) float32 in [0, 1] and gives (N, h*scale, w*scale, 3) float32,
    unclipped. Half-precision results with NaN/inf are retried in fp32 when ``fallback`` is
    set; allocation failures become ``TileOutOfMemory`` so the tiler can halve the tile.
    """

    backend: str = ""
    model: ModelDescriptor
    precision: str
    """The precision tiles currently run in (auto fp16/bf16 may have fallen back to fp32)."""
    fallback: bool = False

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, h, w, 3) float32 in [0, 1] -> (N, h*scale, w*scale, 3) float32, unclipped."""
        if batch.ndim != 4 or batch.shape[3] != self.model.in_channels:
            msg = f"expected a (N, h, w, {self.model.in_channels}) batch, got {batch.shape}"
            raise ValueError(msg)
        try:
            result = self._forward(batch)
            if self.fallback and self.precision != "fp32" and not np.isfinite(result).all():
                # Some GPUs (GTX 16xx) overflow in fp16 and return NaN: black images.
                log.warning("%s gave NaN/inf in %s; switching to fp32", self.model.name,
                            self.precision)
                self._switch_precision("fp32")
                result = self._forward(batch)
        except Exception as exc:
            if is_out_of_memory(exc):
                self._release()
                raise TileOutOfMemory(str(exc)) from exc
            raise
        return result

    @abstractmethod
    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """Run the network in ``self.precision`` on an NHWC batch."""

    @abstractmethod
    def _switch_precision(self, precision: str) -> None:
        """Rebuild the network in another precision (from the fp32 weights)."""

    def _release(self) -> None:  # noqa: B027 - most backends hold no cache to give back
        """Give cached device memory back after an allocation failure."""

    @property
    @abstractmethod
    def device_name(self) -> str:
        """Where tiles run, for logs and ``realscale doctor`` (``cpu``, ``cuda:0``, ...)."""

    @abstractmethod
    def free_bytes(self) -> int:
        """Memory the next forward pass may use on the device."""

    @property
    def on_cpu(self) -> bool:
        return self.device_name == "cpu"

    @property
    def element_size(self) -> int:
        return 4 if self.precision == "fp32" else 2

    def bytes_per_pixel(self, batch: int = 1) -> int:
        """Rough peak memory of one input pixel during a forward pass, for tile=auto."""
        per_px = self.arch.bytes_per_pixel(self.model, self.strips_tail)
        return per_px * self.element_size * batch

    def tiles_per_call(self, rows: int, cols: int, channels: int = 3) -> int:
        """How many tiles of this size the tiler may hand over in one ``run``: one on the
        CPU (a batch is no faster there, only bigger); see the torch engine for CUDA."""
        return 1

    strips_tail = True
    """Whether the network's upsampling tail runs in row strips (bounded memory) on this
    backend, for an architecture that has a ``strip_tail``."""

    @property
    def arch(self) -> Architecture:
        return architectures.get(self.model.architecture)

    @property
    def cpu_tile_ceiling(self) -> int:
        """Largest auto tile on a CPU (the architecture's)."""
        return self.arch.cpu_tile_ceiling
