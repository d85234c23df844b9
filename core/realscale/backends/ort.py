"""The ONNX Runtime engine: the graph built from the weights (no torch), run by a provider.

Providers, for ``device="auto"``, in this order when installed: CUDA (``onnxruntime-gpu``),
DirectML (``onnxruntime-directml``, any GPU on Windows), CoreML (macOS builds), then the CPU.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from .. import architectures
from ..descriptor import ModelDescriptor
from ..devices import available_ram, choose_precision
from ..errors import DeviceError
from .base import TileEngine

log = logging.getLogger("realscale.engine")

PROVIDERS = {
    "cuda": "CUDAExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
"""realscale's device names for ONNX Runtime's execution providers, in ``auto`` order."""
DEVICE_ALIASES = {"dml": "directml", "mps": "coreml"}
RUNS = ("fp32", "fp16")
"""The precisions the graphs are built in."""
GPU_BUDGET = 6 << 30
"""Memory taken as free on a GPU provider (ONNX Runtime cannot say how much is);
``REALSCALE_ORT_GPU_BYTES`` overrides it."""


def available_devices() -> list[str]:
    """The devices whose providers this onnxruntime build has, best first."""
    import onnxruntime

    have = set(onnxruntime.get_available_providers())
    return [device for device, provider in PROVIDERS.items() if provider in have]


def _parse_device(device: str) -> tuple[str, int]:
    name, _, index = device.partition(":")
    name = DEVICE_ALIASES.get(name, name)
    if name not in PROVIDERS and name != "auto":
        msg = (
            f"unknown device {device!r} for ONNX Runtime; use auto, "
            f"{', '.join(PROVIDERS)} (or cuda:N)"
        )
        raise DeviceError(msg)
    if index and not index.isdigit():
        msg = f"device index must be a number, got {device!r}"
        raise DeviceError(msg)
    return name, int(index or 0)


class OrtEngine(TileEngine):
    """An ONNX Runtime session of a model's graph, ready to run batches of tiles.

    An architecture with a ``strip_tail`` (RRDBNet) runs as two sessions, the body and the
    upsampling tail, the tail in row strips (its 16x-size features are most of the memory
    otherwise); an ``.onnx`` file runs whole.
    """

    backend = "onnxruntime"

    def __init__(
        self, model: ModelDescriptor, *, device: str = "auto", precision: str = "auto",
        threads: int | None = None,
    ) -> None:
        import onnxruntime

        self._ort = onnxruntime
        self.model = model
        self.threads = threads
        self._file = model.network is None and model.arrays is None
        self._strip_tail = architectures.get(model.architecture).strip_tail
        self.strips_tail = self._strip_tail is not None and not self._file
        name, self.index = _parse_device(device)
        available = available_devices()
        if name != "auto" and name not in available:
            msg = (
                f"ONNX Runtime here has no {PROVIDERS[name]} (it has {', '.join(available)}); "
                f"install onnxruntime-gpu (CUDA), onnxruntime-directml (Windows) or use cpu"
            )
            raise DeviceError(msg)
        # auto: the first provider that starts (onnxruntime-gpu lists CUDA without a GPU too).
        candidates = available if name == "auto" else [name]
        for index, kind in enumerate(candidates):
            try:
                self._start(kind, precision)
                break
            except DeviceError:
                if index + 1 == len(candidates):
                    raise
                log.info("ONNX Runtime: %s did not start; trying the next provider", kind)

    def _start(self, name: str, precision: str) -> None:
        self.kind = name
        # Half precision on GPUs (with the fp32 retry on NaN); the CPU provider has no fast
        # fp16 convolutions and no bf16, and CoreML picks its own precision.
        choice = choose_precision(precision, name, runs=RUNS, backend="ONNX Runtime")
        precision, self.fallback = choice.precision, choice.fallback_fp32
        if self._file:
            # An .onnx file from `realscale export-onnx` runs in the precision it was written in.
            precision, self.fallback = _file_precision(self.model.source), False
        self.precision = precision
        self._session, self._tail = self._sessions(precision)

    def _sessions(self, precision: str) -> tuple[Any, Any]:
        from ..onnx.graph import build

        if self._file:
            with open(self.model.source, "rb") as handle:
                return self._session_of(handle.read()), None
        if not self.strips_tail:
            return self._session_of(build(self.model, precision=precision)), None
        body = build(self.model, precision=precision, part="body")
        tail = build(self.model, precision=precision, part="tail")
        return self._session_of(body), self._session_of(tail)

    def _session_of(self, graph: Any) -> Any:
        ort = self._ort
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if self.threads:
            options.intra_op_num_threads = self.threads
        self._run_options = ort.RunOptions()
        if self.kind == "cpu":
            # The arena reuses memory within a run (fresh pages for every tensor: 8.9 million
            # page faults and twice the time for x4plus-anime at 532 px) and shrinks after
            # it, so a resident worker does not keep its largest tile's gigabytes.
            self._run_options.add_run_config_entry(
                "memory.enable_memory_arena_shrinkage", "cpu:0"
            )
        provider: Any = PROVIDERS[self.kind]
        if self.kind in ("cuda", "directml"):
            provider = (provider, {"device_id": self.index})
        if self.kind == "directml":
            # DirectML needs these two (its documentation): no memory pattern, sequential.
            options.enable_mem_pattern = False
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        providers = [provider] if self.kind == "cpu" else [provider, "CPUExecutionProvider"]
        data = graph if isinstance(graph, bytes) else graph.SerializeToString()
        session = ort.InferenceSession(data, options, providers=providers)
        used = session.get_providers()
        if PROVIDERS[self.kind] not in used:
            msg = f"ONNX Runtime could not start {PROVIDERS[self.kind]} (got {used})"
            raise DeviceError(msg)
        return session

    def _switch_precision(self, precision: str) -> None:
        self.precision = precision
        self._session, self._tail = self._sessions(precision)

    @property
    def device_name(self) -> str:
        return "cpu" if self.kind == "cpu" else f"{self.kind}:{self.index}"

    @property
    def on_cpu(self) -> bool:
        return self.kind == "cpu"

    def free_bytes(self) -> int:
        if self.kind == "cpu":
            return available_ram()
        return int(os.environ.get("REALSCALE_ORT_GPU_BYTES", GPU_BUDGET))

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
        (y,) = self._session.run(None, {"input": x}, self._run_options)
        if self._tail is not None:
            y = self._run_tail(y)
        return y.transpose(0, 2, 3, 1)

    def _run_tail(self, feat: np.ndarray) -> np.ndarray:
        """The tail in the same exact row strips as the torch network runs it."""
        assert self._strip_tail is not None
        parts = []
        count, channels, height, width = feat.shape
        for start, stop, skip, keep in self._strip_tail.strips(count, channels, height, width, 4):
            strip = np.ascontiguousarray(feat[:, :, start:stop])
            (out,) = self._tail.run(None, {"input": strip}, self._run_options)
            parts.append(out[:, :, skip : skip + keep])
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=2)


def _file_precision(path: str) -> str:
    import onnx

    proto = onnx.load(path, load_external_data=False)
    meta = {prop.key: prop.value for prop in proto.metadata_props}
    return meta.get("realscale.precision", "fp32")
