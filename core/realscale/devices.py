"""Device and precision choice (the one ``auto`` precision policy of every backend), and how
much memory a tile may use there.

Importing this module does not import torch: the ONNX Runtime backend runs without it.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import DeviceError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
"""CPU flags (as /proc/cpuinfo names them) with native bfloat16 dot products."""


@dataclass(frozen=True)
class Placement:
    device: torch.device
    precision: str
    """fp32, fp16 or bf16: what the network runs in."""
    fallback_fp32: bool
    """Re-run a tile in fp32 when a half-precision result has NaN or inf (auto only)."""
    channels_last: bool | None = field(default=None)
    """NHWC memory layout for the convolutions; None: the engine's default for the device."""

    @property
    def dtype(self) -> torch.dtype:
        return torch_dtype(self.precision)


def torch_dtype(precision: str) -> torch.dtype:
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux names them (empty where they cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_bf16() -> bool:
    """True when the CPU computes bfloat16 dot products natively (AVX512-BF16 or AMX).

    ``REALSCALE_CPU_BF16=0`` or ``1`` overrides the detection (other systems than Linux, or
    to compare). Apple's and other ARM CPUs are not detected: they stay in fp32.
    """
    forced = os.environ.get("REALSCALE_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    if sys.platform.startswith("linux"):
        return any(flag in cpu_flags() for flag in BF16_CPU_FLAGS)
    return False


HALF_ON = ("cuda", "directml")
"""Device kinds that run fp16 fast, where ``auto`` picks it."""


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str
    """fp32, fp16 or bf16: what the network runs in."""
    fallback_fp32: bool
    """Re-run a tile in fp32 when a half-precision result has NaN or inf (``auto`` only)."""


def check_precision(precision: str) -> None:
    """Refuse a precision name that no backend knows."""
    if precision not in PRECISIONS:
        msg = f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}"
        raise DeviceError(msg)


def choose_precision(precision: str, device_kind: str, *,
                     runs: Sequence[str] = ("fp32", "fp16", "bf16"), bf16_accurate: bool = True,
                     backend: str = "PyTorch") -> PrecisionChoice:
    """What ``auto`` means, for every backend: fp16 on GPUs that are fast in it (with the fp32
    retry on NaN: some GPUs overflow), bf16 on a CPU with bfloat16 instructions where the
    backend runs bf16 and the architecture stays accurate in it (``bf16_accurate``), else
    fp32 (Apple MPS and CoreML too). An explicit precision is checked against what the
    backend ``runs`` and the device (``cpu``, ``cuda``, ``mps``, ``directml``, ``coreml``)."""
    if precision == "auto":
        if device_kind in HALF_ON and "fp16" in runs:
            return PrecisionChoice("fp16", True)
        if device_kind == "cpu" and "bf16" in runs and bf16_accurate and cpu_has_bf16():
            return PrecisionChoice("bf16", True)  # twice the fp32 rate on these CPUs
        return PrecisionChoice("fp32", False)
    if precision not in runs:
        msg = f"{backend} runs {' or '.join(runs)}, got {precision!r}; use fp32"
        raise DeviceError(msg)
    if precision == "fp16" and device_kind == "cpu":
        others = " or ".join(p for p in runs if p != "fp16")
        msg = f"fp16 is not supported on the CPU; choose precision {others}"
        raise DeviceError(msg)
    return PrecisionChoice(precision, False)


def choose(device: str = "auto", precision: str = "auto", *, cpu_bf16: bool = True) -> Placement:
    """The torch device and precision: ``auto`` device is CUDA, then Apple MPS, then the CPU;
    the precision follows ``choose_precision`` (``cpu_bf16``: the architecture's
    ``bf16_accurate``)."""
    import torch

    if device not in DEVICES and not device.startswith("cuda:"):
        msg = f"unknown device {device!r}; use one of {', '.join(DEVICES)} (or cuda:N)"
        raise DeviceError(msg)
    check_precision(precision)
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif _mps_available():
            device = "mps"
        else:
            device = "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        msg = ("CUDA was requested but this PyTorch has no usable NVIDIA GPU; choose the CPU as "
               "device")
        raise DeviceError(msg)
    if device == "mps" and not _mps_available():
        msg = "Apple MPS was requested but is not available here; choose the CPU as device"
        raise DeviceError(msg)
    torch_device = torch.device(device)
    choice = choose_precision(precision, torch_device.type, bf16_accurate=cpu_bf16)
    return Placement(torch_device, choice.precision, choice.fallback_fp32)


def free_memory(device: torch.device) -> int:
    """Bytes the next tile may use on ``device`` (a conservative estimate)."""
    if device.type == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "mps":
        import torch

        recommended = getattr(torch.mps, "recommended_max_memory", None)
        if recommended is not None:
            return int(recommended() - torch.mps.current_allocated_memory())
    return available_ram()


def available_ram() -> int:
    """Bytes of RAM the system can give without swapping (MemAvailable on Linux)."""
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


_OOM_MARKERS = (
    "out of memory", "can't allocate memory", "not enough memory",
    # ONNX Runtime (CPU arena, CUDA and DirectML providers)
    "failed to allocate memory", "bad_alloc", "e_outofmemory",
)


def is_out_of_memory(error: BaseException) -> bool:
    """True for the allocation failures that a smaller tile can avoid."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    if isinstance(error, MemoryError):
        return True
    text = str(error).lower()
    if isinstance(error, RuntimeError) or type(error).__module__.startswith("onnxruntime"):
        return any(marker in text for marker in _OOM_MARKERS)
    return False
