"""The PyTorch engine: numpy tiles in, numpy tiles out, torch kept inside.

CPU: channels_last (NHWC, oneDNN's native layout, so tiles need no transpose), bf16 where the
CPU has bfloat16 instructions and the model stays accurate in it. CUDA: fp16 channels_last;
several tiles per forward pass, sized from free memory; pinned host buffers, uploads on a side
stream that overlap the previous batch's compute, downloads that do not block the next batch.
In half precision the first convolution runs in fp32 (see ``_first_conv_in_fp32``).

``REALSCALE_COMPILE=1`` compiles the network with ``torch.compile`` (CUDA graphs on CUDA),
one graph per tile shape, kept in an on-disk cache: worth it where shapes repeat (video
frames, batches of same-size images). ``bucket`` pads tiles up to multiples of a step so that
fewer shapes occur, but changes the result near the image's bottom and right edges (the
network sees reflected pixels there instead of its zero padding: up to 200/255 for x4plus
within the 10 px border's reach), so it is off unless asked for.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from .. import architectures
from ..descriptor import ModelDescriptor
from ..devices import Placement, available_ram, free_memory, torch_dtype
from ..tiling import policy
from .base import TileEngine

log = logging.getLogger("realscale.engine")

__all__ = ["TorchEngine"]

COMPILE_ENV = "REALSCALE_COMPILE"
"""``1``: compile the network with torch.compile (first tile of each shape takes minutes for
x4plus; later runs load the compiled code from the cache)."""
RECOMPILE_LIMIT = 64
"""Distinct tile shapes compiled before torch.compile gives up and runs eager."""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class _Staged:
    """One micro-batch on its way: the device tensor, and the event its upload finished on."""

    tensor: torch.Tensor
    ready: Any = None
    rows: int = 0
    cols: int = 0


class TorchEngine(TileEngine):
    """A torch model placed on a device in a precision, ready to run batches of tiles."""

    backend = "torch"

    def __init__(
        self,
        model: ModelDescriptor,
        placement: Placement,
        *,
        compile: bool | None = None,
        bucket: int | None = None,
        max_batch: int | None = None,
    ) -> None:
        if model.network is None:
            msg = f"{model.name} was loaded without torch; use the onnxruntime backend"
            raise ValueError(msg)
        self.model = model
        self.placement = placement
        self.precision = placement.precision
        self.fallback = placement.fallback_fp32
        kind = placement.device.type
        self.channels_last = (
            placement.channels_last if placement.channels_last is not None
            else kind in ("cpu", "cuda")
        )
        self.compile = _env_flag(COMPILE_ENV) if compile is None else compile
        self.bucket = bucket or 0
        self.max_batch = max_batch
        self._cuda = kind == "cuda"
        self._copy_stream = torch.cuda.Stream(placement.device) if self._cuda else None
        if self._cuda:
            # Tiles come in few shapes: let cuDNN time its algorithms once per shape.
            torch.backends.cudnn.benchmark = True
        self._network = self._build(self.precision)

    # -- the network -------------------------------------------------------------------------

    def _build(self, precision: str) -> torch.nn.Module:
        """The network in ``precision`` and layout; the descriptor's own fp32 CPU module is
        never changed, so Upscalers sharing a model cannot round each other's weights."""
        source = self.model.network
        assert source is not None
        device, dtype = self.placement.device, torch_dtype(precision)
        self._input_dtype = dtype
        if device.type == "cpu" and dtype == torch.float32 and not self.channels_last:
            network = source
        else:
            network = copy.deepcopy(source).to(device=device, dtype=dtype)
            if self.channels_last:
                # torch's stubs lack Module.to's memory_format (torch accepts it)
                network = network.to(  # type: ignore[call-overload]
                    memory_format=torch.channels_last)
            # Some networks keep their trunk in fp32 in bf16 (see Architecture).
            trunk = (torch.float32 if dtype == torch.bfloat16
                     and architectures.get(self.model.architecture).fp32_trunk_in_bf16
                     else dtype)
            if dtype != torch.float32 and _first_conv_in_fp32(network, source, trunk):
                # Half precision keeps too few bits of the input image (below).
                self._input_dtype = torch.float32
        network.eval()
        if self.compile:
            network = self._compiled(network)
        return network

    def _compiled(self, network: torch.nn.Module) -> torch.nn.Module:
        from .. import catalogue

        # Compiled kernels are cached across runs (the first compile of x4plus takes minutes).
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(catalogue.cache_dir() / "inductor"))
        # One graph per tile shape (an image has at most nine; video frames repeat them), so
        # CUDA graphs can replay each whole forward pass with one launch.
        dynamo = torch._dynamo.config
        for name in ("recompile_limit", "cache_size_limit"):
            if hasattr(dynamo, name):
                setattr(dynamo, name, max(getattr(dynamo, name), RECOMPILE_LIMIT))
        mode = "reduce-overhead" if self._cuda else None
        return torch.compile(network, mode=mode, dynamic=False)  # type: ignore[return-value]

    def _switch_precision(self, precision: str) -> None:
        self.precision = precision
        self._network = self._build(precision)

    @property
    def device(self) -> torch.device:
        return self.placement.device

    @property
    def device_name(self) -> str:
        return str(self.placement.device)

    def free_bytes(self) -> int:
        return free_memory(self.placement.device)

    def _release(self) -> None:
        if self._cuda:
            torch.cuda.empty_cache()

    # -- running -------------------------------------------------------------------------------

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        outputs = []
        with torch.inference_mode():
            staged: _Staged | None = None
            chunks = list(self._chunks(batch))
            for index, chunk in enumerate(chunks):
                current = staged if staged is not None else self._upload(chunk)
                # Upload the next micro-batch while this one computes (on CUDA).
                staged = self._upload(chunks[index + 1]) if index + 1 < len(chunks) else None
                outputs.append(self._download(self._compute(current)))
            if self._cuda:
                torch.cuda.current_stream(self.device).synchronize()
        if len(outputs) == 1:
            return outputs[0].numpy()
        return np.concatenate([out.numpy() for out in outputs])

    def _chunks(self, batch: np.ndarray) -> Iterator[np.ndarray]:
        """Micro-batches: as many tiles per forward pass as the memory allows."""
        size = self.batch_size(batch.shape[1], batch.shape[2], batch.shape[0])
        for start in range(0, batch.shape[0], size):
            yield batch[start : start + size]

    def batch_size(self, rows: int, cols: int, count: int) -> int:
        """Tiles of this size per forward pass."""
        if self.max_batch is not None:
            return max(1, min(count, self.max_batch))
        if not self._cuda:
            return count
        return policy.tiles_per_pass(self.free_bytes(), self.bytes_per_pixel(1), rows, cols,
                                     count)

    def tiles_per_call(self, rows: int, cols: int, channels: int = 3) -> int:
        """On CUDA several tiles per call, so that one batch computes while the next uploads;
        bounded by what their float outputs take in host memory (an eighth of the free RAM)."""
        if not self._cuda:
            return super().tiles_per_call(rows, cols, channels)
        scale = self.model.scale
        return policy.tiles_per_call(available_ram(), rows * scale * cols * scale * channels * 4)

    def padded_shape(self, rows: int, cols: int) -> tuple[int, int]:
        """The shape a tile runs at: its own, or rounded up to the bucket (fixed shapes)."""
        if not self.bucket:
            return rows, cols
        step = self.bucket * self.model.size_multiple // np.gcd(self.bucket,
                                                                self.model.size_multiple)
        return -(-rows // step) * step, -(-cols // step) * step

    def _upload(self, chunk: np.ndarray) -> _Staged:
        rows, cols = chunk.shape[1], chunk.shape[2]
        padded_rows, padded_cols = self.padded_shape(rows, cols)
        if (padded_rows, padded_cols) != (rows, cols):
            # Reflection below and right of the tile: those rows and columns are cut away
            # again; the network only sees a natural continuation there instead of zeros.
            chunk = np.pad(chunk, ((0, 0), (0, padded_rows - rows), (0, padded_cols - cols),
                                   (0, 0)), mode="reflect" if min(rows, cols) > 1 else "edge")
        host = torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32))
        if not self._cuda:
            return _Staged(self._layout(host.to(self.device)), None, rows, cols)
        pinned = torch.empty(host.shape, dtype=torch.float32, pin_memory=True)
        pinned.copy_(host)
        assert self._copy_stream is not None
        with torch.cuda.stream(self._copy_stream):
            # Copy and convert on the side stream, while the compute stream runs the previous
            # micro-batch; the compute stream waits for `ready` before using the tensor.
            tensor = self._layout(pinned.to(self.device, non_blocking=True))
            ready = torch.cuda.Event()
            ready.record(self._copy_stream)
        # The compute stream uses this memory; keep the allocator from reusing it early.
        tensor.record_stream(torch.cuda.current_stream(self.device))
        return _Staged(tensor, ready, rows, cols)

    def _layout(self, nhwc: torch.Tensor) -> torch.Tensor:
        """NHWC float32 -> the network's NCHW view in its dtype and memory layout."""
        nchw = nhwc.permute(0, 3, 1, 2)  # already channels_last in memory: no copy
        dtype = self._input_dtype
        if self.channels_last:
            return nchw.to(dtype=dtype, memory_format=torch.channels_last)
        return nchw.to(dtype=dtype).contiguous()

    def _compute(self, staged: _Staged) -> torch.Tensor:
        if staged.ready is not None:
            torch.cuda.current_stream(self.device).wait_event(staged.ready)
        if self.compile and self._cuda:
            mark = getattr(torch.compiler, "cudagraph_mark_step_begin", None)
            if mark is not None:
                mark()
        y = self._network(staged.tensor)
        if self.model.post_resize is not None:
            y = F.interpolate(
                y.float(), scale_factor=self.model.post_resize, mode="bicubic",
                align_corners=False,
            )
        scale = self.model.scale
        return y[:, :, : staged.rows * scale, : staged.cols * scale]

    def _download(self, y: torch.Tensor) -> torch.Tensor:
        """Device NCHW output -> host NHWC float32 (into pinned memory, asynchronously)."""
        nhwc = y.permute(0, 2, 3, 1)
        if not self._cuda:
            return nhwc.float().contiguous()
        on_device = nhwc.float().contiguous()  # channels_last: already NHWC in memory
        out = torch.empty(on_device.shape, dtype=torch.float32, pin_memory=True)
        # Queued on the compute stream, so it runs before the next batch (or CUDA graph
        # replay) overwrites y; _forward synchronises once, after the last batch.
        out.copy_(on_device, non_blocking=True)
        return out


class _Fp32Input(torch.nn.Module):
    """A convolution run in fp32 on the full-precision input, handing on ``dtype``."""

    def __init__(self, conv: torch.nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.conv = conv
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.float()).to(self.dtype)


def _first_convolution(network: torch.nn.Module) -> tuple[torch.nn.Module, str] | None:
    """(parent, attribute name) of the first convolution in registration order."""
    for parent in network.modules():
        for name, child in parent.named_children():
            if isinstance(child, torch.nn.Conv2d):
                return parent, name
    return None


def _first_conv_in_fp32(network: torch.nn.Module, source: torch.nn.Module,
                        output: torch.dtype) -> bool:
    """Keep the first convolution (3 input channels: under 1% of the work) in fp32.

    bf16 keeps 8 bits of the input's mantissa, coarser than the 8-bit image itself near white.
    Measured against fp32 on real crops: SRVGGNetCompact in bf16, 99.9th percentile 2-3/255
    -> 1-2/255 (six 64 px crops); x4plus-anime in fp16 (on the CPU), max 7/255 -> 2/255.
    """
    found, original = _first_convolution(network), _first_convolution(source)
    if found is None or original is None:
        return False
    parent, name = found
    converted = getattr(parent, name)
    # The fp32 weights come from the descriptor's module: the converted copy is rounded.
    conv = copy.deepcopy(getattr(*original)).to(converted.weight.device)
    if converted.weight.is_contiguous(memory_format=torch.channels_last):
        conv = conv.to(memory_format=torch.channels_last)
    setattr(parent, name, _Fp32Input(conv, output))
    return True

