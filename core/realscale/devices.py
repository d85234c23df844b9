"""Device and precision choice, and how much memory a tile may use there."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .errors import DeviceError

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Placement:
    device: torch.device
    precision: str
    """fp32, fp16 or bf16: what the network runs in."""
    fallback_fp32: bool
    """Re-run a tile in fp32 when a half-precision result has NaN or inf (auto only)."""

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.precision]


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def choose(device: str = "auto", precision: str = "auto") -> Placement:
    """Resolve ``auto``: CUDA, then Apple MPS, then the CPU; fp16 on CUDA, else fp32."""
    if device not in DEVICES and not device.startswith("cuda:"):
        msg = f"unknown device {device!r}; use one of {', '.join(DEVICES)} (or cuda:N)"
        raise DeviceError(msg)
    if precision not in PRECISIONS:
        msg = f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}"
        raise DeviceError(msg)
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif _mps_available():
            device = "mps"
        else:
            device = "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        msg = "CUDA was requested but this PyTorch has no usable NVIDIA GPU; use --device cpu"
        raise DeviceError(msg)
    if device == "mps" and not _mps_available():
        msg = "Apple MPS was requested but is not available here; use --device cpu"
        raise DeviceError(msg)
    torch_device = torch.device(device)
    fallback = False
    if precision == "auto":
        if torch_device.type == "cuda":
            precision, fallback = "fp16", True
        else:
            precision = "fp32"
    if precision == "fp16" and torch_device.type == "cpu":
        msg = "fp16 is not supported on the CPU; use --precision fp32 or bf16"
        raise DeviceError(msg)
    return Placement(torch_device, precision, fallback)


def free_memory(device: torch.device) -> int:
    """Bytes the next tile may use on ``device`` (a conservative estimate)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "mps":
        recommended = getattr(torch.mps, "recommended_max_memory", None)
        if recommended is not None:
            return int(recommended() - torch.mps.current_allocated_memory())
    return _available_ram()


def _available_ram() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def is_out_of_memory(error: BaseException) -> bool:
    """True for the allocation failures that a smaller tile can avoid."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    if isinstance(error, (RuntimeError, MemoryError)):
        text = str(error).lower()
        return isinstance(error, MemoryError) or any(
            marker in text
            for marker in ("out of memory", "can't allocate memory", "not enough memory")
        )
    return False
