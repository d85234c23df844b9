"""The worker's request loop: read frames, upscale in a thread, stream progress and pixels.

One :class:`Session` serves one stream (stdin/stdout, or one TCP connection). Its main
thread only reads: requests, pixel data and ``cancel`` messages, so a cancel arrives while
an upscale runs in the job thread and stops it before the next tile. All writes go through
one lock, so a progress event never lands inside a result's pixel data.

Nothing a peer sends ends the worker or silences a session: bad frames, deep JSON, long
ids and replies that would not fit a frame all get an ``error`` message. Over TCP, a
connection that does not authenticate in time, or sits idle, is closed, and at most
MAX_CONNECTIONS are served at once, so idle peers cannot use up threads or descriptors.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import io
import json
import logging
import math
import os
import platform
import secrets
import select
import socket
import stat
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from .. import __version__
from .. import wire as p
from ..errors import (
    Cancelled,
    ModelError,
    OutOfMemoryError,
    OutputSizeError,
    OutputTooLargeError,
    RealscaleError,
)
from ..formats.decoded import DEFAULT_MAX_PIXELS
from ..options import EngineOptions
from .models import ModelCache

if TYPE_CHECKING:
    from ..upscale import CancelToken, Upscaler

log = logging.getLogger(__name__)

MAX_PIXELS = DEFAULT_MAX_PIXELS
"""Largest input a request may announce, and largest result it may ask for (width x height):
the limit the image readers use, against absurd allocations."""
MAX_ID = 256
"""Longest request ``id``, in bytes of JSON: every reply repeats it, so a long one could
make a reply too large to send."""
AUTH_TIMEOUT = 10.0
"""Seconds a TCP connection has to send its ``auth`` message."""
IDLE_TIMEOUT = 300.0
"""Seconds a TCP connection may send nothing while no upscale of it runs."""
WRITE_TIMEOUT = 60.0
"""Seconds a TCP peer may leave a reply unread before the worker gives up on it."""
MAX_CONNECTIONS = 32
"""TCP connections served at once; more are answered with a ``busy`` error and closed."""
JOIN_TIMEOUT = 10.0
"""Seconds to wait for a cancelled upscale (or a closing connection) to end."""
_SLICE = 1.0
"""Seconds between looks at a TCP read's deadline (it moves while an upscale runs)."""
_DTYPES: dict[str, np.dtype[Any]] = {
    "u8": np.dtype("u1"), "u16": np.dtype("<u2"), "f16": np.dtype("<f2"), "f32": np.dtype("<f4"),
}
_WORK: dict[str, np.dtype[Any]] = {
    "u8": np.dtype(np.uint8), "u16": np.dtype(np.uint16), "f16": np.dtype(np.float32),
    "f32": np.dtype(np.float32),
}
"""What the Upscaler gets for each wire depth (f16 runs as float32)."""
_BGR = {3: [2, 1, 0], 4: [2, 1, 0, 3]}


class RequestError(RealscaleError):
    """A request the worker cannot serve as sent (bad fields, busy, unknown type)."""


# -- pixels -----------------------------------------------------------------------------


@dataclass
class Upload:
    """An upscale request whose pixel data is still arriving."""

    request: dict[str, Any]
    buffer: np.ndarray
    received: int = 0


def _layout(request: dict[str, Any]) -> tuple[int, int, int, str, str]:
    width, height = request.get("width"), request.get("height")
    channels, depth = request.get("channels"), request.get("depth")
    order = request.get("order", "rgb")
    for name, value in (("width", width), ("height", height), ("channels", channels)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            msg = f"'{name}' must be a positive whole number, got {_shown(value)}"
            raise RequestError(msg)
    assert isinstance(width, int) and isinstance(height, int) and isinstance(channels, int)
    if channels > 4:
        msg = f"'channels' must be 1 to 4, got {channels}"
        raise RequestError(msg)
    if depth not in _DTYPES:
        msg = f"'depth' must be one of {', '.join(_DTYPES)}, got {_shown(depth)}"
        raise RequestError(msg)
    if order not in p.ORDERS:
        msg = f"'order' must be rgb or bgr, got {_shown(order)}"
        raise RequestError(msg)
    if width * height > MAX_PIXELS:
        msg = f"{width}x{height} is more than {MAX_PIXELS} pixels"
        raise RequestError(msg)
    return width, height, channels, str(depth), str(order)


def _shown(value: Any) -> str:
    """A request's value in a message: its repr, cut short (a reply must stay small)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _engine(request: dict[str, Any]) -> EngineOptions:
    """The request's engine options (model, device, precision, backend, tile, download)."""
    model = request.get("model")
    if not isinstance(model, str) or not model.strip():
        msg = f"'model' must name a catalogue model or a weights file, got {_shown(model)}"
        raise RequestError(msg)
    if len(model) > 4096:
        msg = f"'model' is {len(model)} characters long; a model name or path has fewer"
        raise RequestError(msg)
    try:
        return EngineOptions.from_request(request)
    except RealscaleError as exc:
        raise RequestError(str(exc)) from None


def _options(request: dict[str, Any], width: int, height: int,
             ) -> tuple[EngineOptions, float | None]:
    """The request's engine options and scale, checked before its pixel data is taken in."""
    engine = _engine(request)
    scale = request.get("scale")
    factor: float | None = None
    if scale is not None:
        factor = math.nan
        if isinstance(scale, (int, float)) and not isinstance(scale, bool):
            try:
                factor = float(scale)
            except OverflowError:  # a JSON integer beyond any float
                factor = math.inf
        if not (math.isfinite(factor) and factor > 0):
            msg = f"'scale' must be above 0 (or null: the model's own), got {_shown(scale)}"
            raise RequestError(msg)
        _check_output(width, height, factor)
    return engine, factor


def _check_output(width: int, height: int, factor: float) -> None:
    """Refuse a result above MAX_PIXELS before anything is received or allocated (the
    Upscaler checks again, against the same limit, for the model's own scale)."""
    exact_w, exact_h = width * factor, height * factor
    if math.isfinite(exact_w * exact_h):
        out_w, out_h = max(1, round(exact_w)), max(1, round(exact_h))
        if out_w * out_h <= MAX_PIXELS:
            return
        size = f"{out_w:,}x{out_h:,} pixels"
    else:
        size = "an impossible number of pixels"
    msg = (f"a {width}x{height} image at scale {factor:g} would give {size}, more than the "
           f"limit of {MAX_PIXELS:,}; choose a smaller scale")
    raise RequestError(msg)


def to_working(buffer: np.ndarray, request: dict[str, Any]) -> np.ndarray:
    """Wire bytes -> an HWC array the Upscaler takes, in RGB order."""
    width, height, channels, depth, order = _layout(request)
    image = buffer.view(_DTYPES[depth]).reshape(height, width, channels)
    if order == "bgr" and channels >= 3:
        image = image[..., _BGR[channels]]
    return image.astype(_WORK[depth], copy=False)


def result_bands(image: np.ndarray, depth: str, order: str) -> Iterator[memoryview]:
    """The result as wire bytes, a band of rows at a time (no second full-size copy)."""
    height, width, channels = image.shape
    row_bytes = width * channels * _DTYPES[depth].itemsize
    rows = max(1, p.CHUNK // row_bytes)
    for top in range(0, height, rows):
        band = image[top : top + rows]
        if order == "bgr" and channels >= 3:
            band = band[..., _BGR[channels]]
        band = np.ascontiguousarray(band, dtype=_DTYPES[depth])
        yield band.data.cast("B")


def peak_rss() -> int | None:
    """This process's peak resident memory in bytes, where the platform tells."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


# -- what the hosts' dialogs ask: models by purpose, devices, speed ---------------------

MEASURE_SMALL = 32
"""Side of the small square ``measure`` times: mostly the fixed cost of a call."""
MEASURE_LARGE = (64, 128, 256)
"""Sides tried in turn for the large square, which is timed against the small one: the
first whose run takes MEASURE_LONG seconds more than the small one's and MEASURE_RUN in
all (else the last)."""
MEASURE_LONG = 0.6
"""Seconds of pixel work a run of the large square should take, beyond the small one's:
well above the jitter of a call's fixed cost on a busy CPU (0.2-0.3 s at a load of 8 on
2 cores), which a 64 px square's extra work does not reach there."""
MEASURE_RUN = 1.0
"""Seconds a run of the large square should take in all: per pixel, small squares run
slower than the large tiles of a real image (in bf16 on a CPU, 128 px ran at a third of
the rate of a 1024 px image), so the largest side that is affordable is taken."""
MEASURE_SECONDS = 1.0
"""``measure`` times pairs of runs (small, large) until this much time has passed; at least
MEASURE_PAIRS[0] pairs, at most MEASURE_PAIRS[1]."""
MEASURE_PAIRS = (2, 4)
MEASURE_GAIN = 2.0
"""The most the fitted rate may exceed the large square's plain rate (a fixed cost larger
than the large run's pixel work is noise, not a fact about the device)."""


@dataclass(frozen=True)
class Speed:
    """How long an upscale takes: about ``seconds_fixed + pixels / pixels_per_second``."""

    pixels_per_second: float
    """Input pixels per second, once a call's fixed cost is paid."""
    seconds_fixed: float
    """Seconds each call costs whatever its size (on a busy CPU, mostly the wait for every
    thread of each layer's parallel loop); 0 where the runs did not show one."""


def _with_purpose(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The models reply's rows with what a dialog groups and warns by: ``purpose`` and
    ``purpose_label`` (null for a user's weights file), and ``download_bytes`` for a
    catalogue model not on disk yet (null when the catalogue gives no size)."""
    from .. import catalogue

    entries = {entry.name: entry for entry in catalogue.entries()}
    for row in rows:
        entry = entries.get(row["name"])
        row["purpose"] = entry.purpose if entry is not None else None
        row["purpose_label"] = entry.purpose_label if entry is not None else None
        if entry is not None and not row.get("available"):
            sizes = [source.size for source in entry.sources
                     if isinstance(source, catalogue.UrlSource)]
            row["download_bytes"] = sizes[0] if sizes else None
    return rows


def list_devices() -> list[dict[str, Any]]:
    """The devices a request may name, for a dialog: the CPU, then each CUDA GPU and Apple's
    GPU where torch can use them (the ONNX Runtime backend alone runs on the CPU here)."""
    devices = [_cpu_device()]
    try:
        import torch
    except ImportError:
        return devices
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            # mem_get_info opens a CUDA context on that GPU, as the first upscale would.
            free, total = torch.cuda.mem_get_info(index)
            devices.append({"name": f"cuda:{index}", "label": torch.cuda.get_device_name(index),
                            "kind": "cuda", "free_bytes": int(free), "total_bytes": int(total),
                            "fast": "fp16"})
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        recommended = getattr(torch.mps, "recommended_max_memory", None)
        total_mps = int(recommended()) if recommended is not None else None
        free_mps = (total_mps - int(torch.mps.current_allocated_memory())
                    if total_mps is not None else None)
        devices.append({"name": "mps", "label": "Apple GPU (Metal)", "kind": "mps",
                        "free_bytes": free_mps, "total_bytes": total_mps, "fast": "fp16"})
    return devices


def _cpu_device() -> dict[str, Any]:
    import importlib.util

    from ..devices import cpu_has_bf16

    try:
        cores = len(os.sched_getaffinity(0))  # what this process may use
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    free, total = _ram()
    # bf16 is fast where the CPU has bfloat16 instructions and torch runs the model: auto
    # picks it there (the ONNX Runtime backend stays in fp32 on CPUs).
    fast = "bf16" if importlib.util.find_spec("torch") is not None and cpu_has_bf16() else None
    return {"name": "cpu", "label": f"CPU ({_cpu_name()}, {cores} cores)", "kind": "cpu",
            "free_bytes": free, "total_bytes": total, "fast": fast}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        import subprocess

        with contextlib.suppress(OSError, subprocess.SubprocessError):
            name = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                  capture_output=True, text=True, timeout=5).stdout.strip()
            if name:
                return name
    return platform.processor() or platform.machine() or "unknown"


def _ram() -> tuple[int | None, int | None]:
    """(available, total) bytes of RAM, None where the system does not say."""
    found: dict[str, int] = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                key, _, value = line.partition(":")
                if key in ("MemAvailable", "MemTotal"):
                    found[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    total = found.get("MemTotal")
    if total is None:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            total = int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    return found.get("MemAvailable"), total


def measure_speed(upscaler: Upscaler, tile: int | str, token: CancelToken) -> Speed:
    """The speed of ``upscaler`` as a fixed cost per call and a rate per pixel, fitted to
    the mean times of a small and a large square, run in turns after a warm-up.

    One small square alone is honest for neither: on a busy CPU its time is mostly the
    call's fixed cost, which made whole images look several times slower than they run.
    Means rather than medians: a whole image meets the machine's load as it comes."""

    def timed(image: np.ndarray) -> float:
        started = time.perf_counter()
        upscaler.upscale(image, cancel=token, tile=tile)
        return time.perf_counter() - started

    small = _pattern(MEASURE_SMALL)
    timed(small)  # the warm-up: kernel choice, memory pools
    small_seconds = timed(small)
    large = small
    for side in MEASURE_LARGE:
        large = _pattern(side)
        seconds = timed(large)  # also this shape's first run
        if seconds - small_seconds >= MEASURE_LONG and seconds >= MEASURE_RUN:
            break
    smalls: list[float] = []
    larges: list[float] = []
    started = time.perf_counter()
    low, high = MEASURE_PAIRS
    while len(smalls) < low or (len(smalls) < high
                                and time.perf_counter() - started < MEASURE_SECONDS):
        smalls.append(timed(small))
        larges.append(timed(large))
    return fit_speed(small.shape[0] * small.shape[1], statistics.fmean(smalls),
                     large.shape[0] * large.shape[1], statistics.fmean(larges))


def fit_speed(small_pixels: int, small_seconds: float, large_pixels: int,
              large_seconds: float) -> Speed:
    """The line ``seconds = fixed + pixels / rate`` through two timed runs. Where noise
    tilts it (a negative cost), the large run's plain rate and no fixed cost; the rate is
    at most MEASURE_GAIN times that plain rate."""
    plain = large_pixels / max(large_seconds, 1e-9)
    per_pixel = (large_seconds - small_seconds) / (large_pixels - small_pixels)
    fixed = small_seconds - per_pixel * small_pixels
    if per_pixel <= 0 or fixed < 0:
        return Speed(plain, 0.0)
    rate = min(1 / per_pixel, plain * MEASURE_GAIN)
    return Speed(rate, max(0.0, large_seconds - large_pixels / rate))


def _pattern(side: int) -> np.ndarray:
    """A square RGB test card: gradients, so no backend can skip flat areas."""
    rows, columns = np.indices((side, side))
    return np.stack([rows * 4 + columns, rows * 3, columns * 5], axis=-1).astype(np.uint8)


def _error(request_id: Any, kind: str, message: str) -> dict[str, Any]:
    return p.error_message(request_id, kind, message)


# -- one session ------------------------------------------------------------------------


class ReadTimeout(EOFError):
    """A TCP peer sent nothing for longer than its deadline; the session ends."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"{kind} time-out")
        self.kind = kind


def _small_id(request_id: Any) -> Any:
    """The id to repeat in a reply: null when the request's id is too long to repeat."""
    try:
        size = len(json.dumps(request_id, separators=(",", ":")).encode("utf-8"))
    except (TypeError, ValueError):
        return None
    return request_id if size <= MAX_ID else None


Work = Callable[["CancelToken"], tuple[dict[str, Any], Iterator[memoryview] | None]]
"""What a job thread runs: the reply, and the pixel data that follows it (if any)."""


@dataclass
class Job:
    """A request that runs in the job thread (an upscale or a measure), so that the session
    reads a ``cancel`` for it meanwhile."""

    request_id: Any
    thread: threading.Thread
    token: CancelToken


class Session:
    """Serves one stream until it ends."""

    def __init__(self, rfile: BinaryIO, wfile: BinaryIO, cache: ModelCache, *,
                 token: str | None = None, on_write_error: Callable[[], None] | None = None,
                 auth_timeout: float = AUTH_TIMEOUT, idle_timeout: float | None = None
                 ) -> None:
        self.reader = p.FrameReader(rfile)
        self.wfile = wfile
        self.cache = cache
        self.token = token
        self.write_lock = threading.Lock()
        self.upload: Upload | None = None
        self.job: Job | None = None
        """The upscale or measure that is running."""
        self.thread: threading.Thread | None = None
        """The last job thread, until it has ended (it still sends after ``job`` is None)."""
        self.broken = False
        self.on_write_error = on_write_error
        self.authenticated = token is None
        self.auth_timeout = auth_timeout
        self.idle_timeout = idle_timeout
        self.started = time.monotonic()
        self.job_ended = self.started

    # writing ----------------------------------------------------------------------------

    def send(self, message: dict[str, Any], bands: Iterator[memoryview] | None = None) -> None:
        """Send one reply whole; one that cannot be framed becomes an error reply instead,
        so the session never goes silent."""
        try:
            frame = p.pack_json(message)
        except (TypeError, ValueError) as exc:
            log.warning("a %s reply could not be framed (%s)", message.get("type"), exc)
            frame = p.pack_json(_error(
                _small_id(message.get("id")), p.E_ERROR,
                f"The worker's {message.get('type')} reply would be larger than a message may "
                f"be ({p.MAX_JSON} bytes), so it was not sent."))
            bands = None
        with self.write_lock:
            if self.broken:
                return
            try:
                self.wfile.write(frame)
                if bands is not None:
                    for band in bands:
                        p.write_data(self.wfile, band)
                self.wfile.flush()
            except (OSError, ValueError):
                self.broken = True  # the client went away; the reader sees the end soon
                if self.on_write_error is not None:
                    self.on_write_error()

    def error(self, request_id: Any, kind: str, message: str) -> None:
        self.send(_error(request_id, kind, message))

    # reading ----------------------------------------------------------------------------

    def read_deadline(self, last_read: float) -> tuple[float, str] | None:
        """(when, why) the current read gives up; None while an upscale runs (the peer
        only has to send a cancel, if anything) or when no time-out applies."""
        if not self.authenticated:
            return self.started + self.auth_timeout, "auth"
        if self.idle_timeout is None or self.job is not None:
            return None
        return max(last_read, self.job_ended) + self.idle_timeout, "idle"

    def serve(self) -> None:
        """Answer requests until the stream ends; then cancel what runs and return."""
        try:
            if self.token is not None and not self._authenticate():
                return
            self.send({"type": p.HELLO, "protocol": p.PROTOCOL_VERSION,
                       "realscale": __version__, "pid": os.getpid()})
            while True:
                try:
                    kind, length = self.reader.next_header()
                except p.FrameError as exc:
                    self._abandon_upload()
                    self.error(None, p.E_PROTOCOL, f"Bad frame: {exc}.")
                    continue
                if kind == p.KIND_DATA:
                    self._data(length)
                    continue
                try:
                    message = p.decode_json(self.reader.read_payload(length))
                except p.FrameError as exc:
                    self._abandon_upload()
                    self.error(None, p.E_PROTOCOL, f"Bad message: {exc}.")
                    continue
                try:
                    self._message(message)
                except Exception as exc:  # a bug: answer it, never end the worker over it
                    log.exception("a %s request failed", message.get("type"))
                    reply = _error(_small_id(message.get("id")), p.E_INTERNAL,
                                   f"The worker failed unexpectedly ({type(exc).__name__}).")
                    reply["detail"] = traceback.format_exc()
                    self.send(reply)
        except ReadTimeout as exc:
            if exc.kind == "idle":
                self.error(None, p.E_TIMEOUT,
                           f"The realscale worker closed this connection after "
                           f"{self.idle_timeout:g} seconds without a request.")
        except EOFError:
            pass
        finally:
            self._stop_job()

    def _authenticate(self) -> bool:
        assert self.token is not None
        try:
            message = self.reader.next_message()
        except ReadTimeout:
            self.error(None, p.E_AUTH, "The realscale worker closed the connection: no token "
                                     f"came within {self.auth_timeout:g} seconds.")
            return False
        except (p.FrameError, EOFError):
            message = {}
        token = message.get("token") if message.get("type") == p.AUTH else None
        if isinstance(token, str) and hmac.compare_digest(token.encode(), self.token.encode()):
            self.authenticated = True
            return True
        self.error(_small_id(message.get("id")), p.E_AUTH,
                   "The realscale worker refused the connection: wrong or missing token.")
        return False

    def _message(self, message: dict[str, Any]) -> None:
        mtype, request_id = message["type"], message.get("id")
        if self.upload is not None and self.upload.received >= 0:
            missing = self.upload.buffer.size - self.upload.received
            self.error(self.upload.request.get("id"), p.E_BAD_REQUEST,
                       f"The request's pixel data was {missing} bytes short.")
        self.upload = None
        if _small_id(request_id) is None and request_id is not None:
            self.error(None, p.E_BAD_REQUEST,
                       f"A request's 'id' may take at most {MAX_ID} bytes of JSON; this "
                       f"{mtype} request's id is longer, so it was not served.")
            if mtype == p.UPSCALE:
                self._discard(message.get("bytes"))
            return
        if mtype == p.CANCEL:
            if self.job is not None and self.job.request_id == request_id:
                self.job.token.cancel()
            return  # a cancel for a finished request needs no answer
        if mtype == p.PING:
            self.send({"type": p.PONG, "id": request_id})
        elif mtype == p.MODELS:
            self._reply_models(request_id)
        elif mtype == p.STATUS:
            self.send({"type": p.STATUS, "id": request_id, "pid": os.getpid(),
                       "peak_rss": peak_rss(), "loaded": self.cache.loaded(),
                       "busy": self.job is not None, "realscale": __version__})
        elif mtype == p.UPSCALE:
            self._start_upload(message)
        elif mtype == p.DEVICES:
            self.send({"type": p.DEVICES, "id": request_id, "devices": list_devices()})
        elif mtype == p.MEASURE:
            self._start_measure(message)
        else:
            self.error(request_id, p.E_BAD_REQUEST, f"Unknown request type {_shown(mtype)}.")

    def _reply_models(self, request_id: Any) -> None:
        try:
            models = _with_purpose(self.cache.catalogue())
        except RealscaleError as exc:
            self.error(request_id, p.E_MODEL, str(exc))
            return
        self.send({"type": p.MODELS, "id": request_id, "models": models})

    def _discard(self, size: Any) -> None:
        """Skip the pixel data of a refused request, so the stream stays in step."""
        if isinstance(size, int) and not isinstance(size, bool) and 0 < size <= MAX_PIXELS * 16:
            self.upload = Upload({}, np.empty(0, np.uint8), -size)

    def _start_upload(self, request: dict[str, Any]) -> None:
        request_id = request.get("id")
        size = request.get("bytes")
        try:
            width, height, channels, depth, _order = _layout(request)
            expected = width * height * channels * _DTYPES[depth].itemsize
            if size != expected:
                msg = f"'bytes' must be {expected} for this layout, got {_shown(size)}"
                raise RequestError(msg)
            engine, _scale = _options(request, width, height)
            if self.job is not None:
                msg = "the worker is busy with another request on this connection"
                raise RequestError(msg)
            assert engine.model is not None
            self.cache.resolve(engine.model)  # an unknown name or a refused path: before the data
            buffer = np.empty(expected, dtype=np.uint8)
        except RequestError as exc:
            self.error(request_id, p.E_BAD_REQUEST, f"Bad upscale request: {exc}.")
            self._discard(size)
            return
        except ModelError as exc:
            self.error(request_id, p.E_MODEL, str(exc))
            self._discard(size)
            return
        except MemoryError:
            self.error(request_id, p.E_OUT_OF_MEMORY,
                       "There is not enough memory for this image in the worker.")
            self._discard(size)
            return
        self.upload = Upload(request, buffer)

    def _data(self, length: int) -> None:
        upload = self.upload
        if upload is None:
            self.reader.skip(length)
            self.error(None, p.E_PROTOCOL, "Pixel data arrived without an upscale request.")
            return
        if upload.received < 0:  # the data of a refused request: drop it quietly
            self.reader.skip(length)
            upload.received += length
            if upload.received >= 0:
                self.upload = None
            return
        end = upload.received + length
        if end > upload.buffer.size:
            self.reader.skip(length)
            self.upload = None
            self.error(upload.request.get("id"), p.E_BAD_REQUEST,
                       "The request sent more pixel data than it announced.")
            return
        self.reader.readinto(upload.buffer.data[upload.received : end])
        upload.received = end
        if end == upload.buffer.size:
            self.upload = None
            self._start_job(upload.request.get("id"),
                            lambda token: self._upscale(upload, token))

    def _abandon_upload(self) -> None:
        if self.upload is not None and self.upload.received >= 0:
            self.error(self.upload.request.get("id"), p.E_BAD_REQUEST,
                       "The request's pixel data was interrupted by a bad frame.")
        self.upload = None

    # the job ----------------------------------------------------------------------------

    def _start_job(self, request_id: Any, work: Work, what: str = "upscale") -> None:
        """Run ``work`` in a job thread; ``what`` names the request in a cancel's reply."""
        from ..upscale import CancelToken

        token = CancelToken()
        thread = threading.Thread(target=self._run_job, args=(request_id, work, token, what),
                                  name="realscale-job", daemon=True)
        self.job = Job(request_id, thread, token)
        self.thread = thread
        thread.start()

    def _run_job(self, request_id: Any, work: Work, token: CancelToken, what: str) -> None:
        reply: dict[str, Any]
        bands: Iterator[memoryview] | None = None
        try:
            reply, bands = work(token)
        except Cancelled:
            reply = _error(request_id, p.E_CANCELLED, f"The {what} was cancelled.")
        except (OutOfMemoryError, MemoryError) as exc:
            text = str(exc) or "the worker ran out of memory"
            reply = _error(request_id, p.E_OUT_OF_MEMORY,
                           f"Out of memory: {text}; try a smaller tile or image.")
        except OutputTooLargeError:
            reply = _error(request_id, p.E_BAD_REQUEST,
                           f"Bad upscale request: the result would have more than "
                           f"{MAX_PIXELS:,} pixels, the limit; choose a smaller scale.")
        except (RequestError, OutputSizeError) as exc:
            reply = _error(request_id, p.E_BAD_REQUEST, f"Bad upscale request: {exc}.")
        except ModelError as exc:
            reply = _error(request_id, p.E_MODEL, str(exc))
        except RealscaleError as exc:
            reply = _error(request_id, p.E_ERROR, str(exc))
        except Exception as exc:
            log.exception("request %s failed", request_id)
            reply = _error(request_id, p.E_INTERNAL,
                           f"The worker failed unexpectedly ({type(exc).__name__}: {exc}).")
            reply["detail"] = traceback.format_exc()
        # Not busy any more before the reply leaves: the client may send its next request
        # the moment it has read it.
        self.job_ended = time.monotonic()
        self.job = None
        self.send(reply, bands)

    @contextlib.contextmanager
    def _model_lock(self, token: CancelToken) -> Iterator[None]:
        """The cache's lock (one network runs at a time), given up on a cancel while waiting
        behind another connection's upscale."""
        while not self.cache.lock.acquire(timeout=0.1):
            if token.cancelled:
                raise Cancelled("the upscale was cancelled")
        try:
            yield
        finally:
            self.cache.lock.release()

    def _upscaler(self, engine: EngineOptions) -> Upscaler:
        assert engine.model is not None
        return self.cache.get(engine.model, engine.device, engine.precision, engine.download,
                              engine.backend)

    def _upscale(self, upload: Upload, token: CancelToken,
                 ) -> tuple[dict[str, Any], Iterator[memoryview]]:
        request = upload.request
        request_id = request.get("id")
        width, height, _c, depth, order = _layout(request)
        engine, scale = _options(request, width, height)
        image = to_working(upload.buffer, request)
        del upload.buffer  # a converted copy exists now (or it is the same memory)

        def progress(done: int, total: int) -> None:
            self.send({"type": p.PROGRESS, "id": request_id, "done": done, "total": total})

        with self._model_lock(token):
            upscaler = self._upscaler(engine)
            result = upscaler.upscale(image, scale=scale, progress=progress, cancel=token,
                                      max_pixels=MAX_PIXELS, tile=engine.tile)
        del image
        out_h, out_w = result.shape[:2]
        reply = {"type": p.RESULT, "id": request_id, "width": out_w, "height": out_h,
                 "channels": result.shape[2], "depth": depth, "order": order,
                 "bytes": result.size * _DTYPES[depth].itemsize}
        return reply, result_bands(result, depth, order)

    def _start_measure(self, request: dict[str, Any]) -> None:
        request_id = request.get("id")
        try:
            engine = _engine(request)
            if self.job is not None:
                msg = "the worker is busy with another request on this connection"
                raise RequestError(msg)
            assert engine.model is not None
            self.cache.resolve(engine.model)
        except RequestError as exc:
            self.error(request_id, p.E_BAD_REQUEST, f"Bad measure request: {exc}.")
            return
        except ModelError as exc:
            self.error(request_id, p.E_MODEL, str(exc))
            return
        self._start_job(request_id, lambda token: self._measure(request, engine, token),
                        "speed measurement")

    def _measure(self, request: dict[str, Any], engine: EngineOptions, token: CancelToken,
                 ) -> tuple[dict[str, Any], None]:
        with self._model_lock(token):
            upscaler = self._upscaler(engine)
            speed = measure_speed(upscaler, engine.tile, token)
        return {"type": p.MEASURE, "id": request.get("id"), "model": request.get("model"),
                "device": upscaler.engine.device_name, "precision": upscaler.precision,
                "pixels_per_second": speed.pixels_per_second,
                "seconds_fixed": speed.seconds_fixed, "scale": upscaler.scale}, None

    def _stop_job(self) -> None:
        """Cancel what runs and wait (a bounded time) for the job thread to end, reply and
        all: the process must not exit while that thread is inside torch."""
        job, thread = self.job, self.thread
        if job is not None:
            job.token.cancel()
        if thread is not None:
            thread.join(timeout=JOIN_TIMEOUT)


# -- entry points -----------------------------------------------------------------------


def serve_stdio(cache: ModelCache) -> int:
    """Serve the parent over stdin/stdout; returns when stdin closes."""
    # The protocol owns file descriptor 1; anything else printed (by torch, a warning, a
    # stray print) goes to stderr instead of corrupting the frames.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if sys.platform == "win32":
        import msvcrt

        msvcrt.setmode(0, os.O_BINARY)
        msvcrt.setmode(out_fd, os.O_BINARY)
    wfile = os.fdopen(out_fd, "wb", buffering=1 << 16)
    rfile = os.fdopen(os.dup(0), "rb", buffering=1 << 16)
    Session(rfile, wfile, cache).serve()
    return 0


def parse_listen(text: str) -> tuple[str, int]:
    """``127.0.0.1:PORT`` (or just PORT); any other address is refused."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "127.0.0.1", text
    if host not in ("127.0.0.1", "localhost"):
        msg = f"the worker only listens on 127.0.0.1, not {host!r}: use --listen 127.0.0.1:PORT"
        raise RealscaleError(msg)
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        msg = f"--listen wants 127.0.0.1:PORT with a port from 0 to 65535, got {text!r}"
        raise RealscaleError(msg)
    return "127.0.0.1", port


def _ready(sock: socket.socket, write: bool, timeout: float) -> bool:
    """Whether ``sock`` can be read (or written) within ``timeout`` seconds."""
    timeout = max(0.0, timeout)
    if hasattr(select, "poll"):  # no FD_SETSIZE limit
        poller = select.poll()
        poller.register(sock, select.POLLOUT if write else select.POLLIN)
        return bool(poller.poll(math.ceil(timeout * 1000)))
    readable, writable, _ = select.select([] if write else [sock], [sock] if write else [],
                                          [], timeout)
    return bool(readable or writable)


class SocketInput(io.RawIOBase):
    """A connection's reading side, with deadlines: blocking reads that give up (ReadTimeout)
    when ``deadline(last_read)`` passes; the socket itself stays blocking for writes."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock
        self.last_read = time.monotonic()
        self.deadline: Callable[[float], tuple[float, str] | None] = lambda _last: None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            due = self.deadline(self.last_read)
            wait = _SLICE if due is None else min(_SLICE, due[0] - time.monotonic())
            if due is not None and wait <= 0:
                raise ReadTimeout(due[1])
            if _ready(self.sock, False, wait):
                break
        count = self.sock.recv_into(buffer)
        if count:
            self.last_read = time.monotonic()
        return count


class SocketOutput(io.RawIOBase):
    """A connection's writing side: a peer that reads nothing for WRITE_TIMEOUT seconds
    fails the write (so a stalled peer cannot hold the model lock through a progress
    event) instead of blocking it forever."""

    def __init__(self, sock: socket.socket, timeout: float = WRITE_TIMEOUT) -> None:
        super().__init__()
        self.sock = sock
        self.timeout = timeout

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if not _ready(self.sock, True, self.timeout):
            msg = f"the peer read nothing for {self.timeout:g} seconds"
            raise TimeoutError(msg)
        return self.sock.send(data)


def _shutdown(sock: socket.socket) -> None:
    """End both directions: wakes this connection's reads (EOF) and the peer's."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _refuse(sock: socket.socket, message: dict[str, Any]) -> None:
    """Answer a connection that will not be served, without a thread and without blocking."""
    try:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.send(p.pack_json(message))
            sock.shutdown(socket.SHUT_WR)
            sock.recv(65536)  # what the peer already sent, so the close sends no reset
    finally:
        sock.close()


@dataclass
class _Listener:
    """The TCP server's state: its live connections and their threads."""

    cache: ModelCache
    token: str
    auth_timeout: float
    idle_timeout: float | None
    max_connections: int
    lock: threading.Lock
    live: dict[socket.socket, threading.Thread]

    def add(self, conn: socket.socket) -> None:
        with self.lock:
            if len(self.live) >= self.max_connections:
                full = True
            else:
                full = False
                thread = threading.Thread(target=self._serve, args=(conn,),
                                          name="realscale-connection", daemon=True)
                self.live[conn] = thread
        if full:
            _refuse(conn, _error(None, p.E_BUSY,
                                 f"The realscale worker already serves {self.max_connections} "
                                 "connections; close another client and try again."))
            return
        thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reading = SocketInput(conn)
            writing = io.BufferedWriter(SocketOutput(conn), 1 << 16)
            session = Session(reading, writing, self.cache, token=self.token,  # type: ignore[arg-type]
                              on_write_error=lambda: _shutdown(conn),
                              auth_timeout=self.auth_timeout, idle_timeout=self.idle_timeout)
            reading.deadline = session.read_deadline
            with contextlib.suppress(OSError):
                session.serve()
            with contextlib.suppress(OSError, ValueError):
                writing.close()
        finally:
            _shutdown(conn)
            conn.close()
            with self.lock:
                self.live.pop(conn, None)

    def stop(self) -> None:
        """End every connection (their upscales are cancelled) and wait for them, bounded."""
        with self.lock:
            live = dict(self.live)
        for conn in live:
            _shutdown(conn)
        deadline = time.monotonic() + JOIN_TIMEOUT + 5
        for thread in live.values():
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


def serve_tcp(cache: ModelCache, listen: str, config_out: Path | None = None, *,
              auth_timeout: float = AUTH_TIMEOUT, idle_timeout: float | None = IDLE_TIMEOUT,
              max_connections: int = MAX_CONNECTIONS) -> int:
    """Serve connections on 127.0.0.1 that present the session's token.

    Prints one JSON line with the address and token. Runs until killed, or until stdin
    closes when stdin is a pipe (so a parent that dies takes the worker with it).
    """
    host, port = parse_listen(listen)
    token = secrets.token_urlsafe(32)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if sys.platform == "win32":
            server.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)  # type: ignore[attr-defined]
        try:
            server.bind((host, port))
        except OSError as exc:
            msg = (f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another "
                   "port, or port 0 for any free one")
            raise RealscaleError(msg) from None
        server.listen(16)
        bound_host, bound_port = server.getsockname()[:2]
        address = f"{bound_host}:{bound_port}"
        if config_out is not None:
            _write_config(config_out, address, token)
        print(json.dumps({"address": address, "token": token, "pid": os.getpid()}), flush=True)
        listener = _Listener(cache, token, auth_timeout, idle_timeout, max(1, max_connections),
                             threading.Lock(), {})
        stop = threading.Event()
        if _stdin_is_pipe():
            threading.Thread(target=_watch_stdin, args=(stop,), daemon=True).start()
        try:
            _accept_loop(server, listener, stop)
        finally:
            listener.stop()
    finally:
        server.close()
    return 0


def _write_config(path: Path, address: str, token: str) -> None:
    from ..wire import write_json

    try:
        write_json(path, {"version": p.CONFIG_VERSION, "address": address, "token": token},
                   private=True)
    except OSError as exc:
        msg = (f"cannot write the client config {path} ({exc.strerror or exc}); choose a "
               "file in a folder you can write to")
        raise RealscaleError(msg) from None


def _accept_loop(server: socket.socket, listener: _Listener, stop: threading.Event) -> None:
    server.settimeout(0.5)  # accept() is not woken by a close from another thread
    failing = False
    while not stop.is_set():
        try:
            conn, _peer = server.accept()
        except TimeoutError:
            continue
        except OSError as exc:
            if exc.errno in (errno.EBADF, errno.EINVAL, errno.ENOTSOCK):
                raise  # the listening socket itself is gone: nothing to wait for
            # Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), or a peer
            # that left before it was accepted: the connection waits in the backlog, and
            # descriptors come back as connections end (time-outs see to idle ones).
            if not failing:
                print(f"realscale worker: cannot accept a connection now ({exc.strerror or exc});"
                      " retrying", file=sys.stderr, flush=True)
            failing = True
            stop.wait(0.2)
            continue
        failing = False
        conn.settimeout(None)
        listener.add(conn)


def _stdin_is_pipe() -> bool:
    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _watch_stdin(stop: threading.Event) -> None:
    try:
        while os.read(0, 65536):
            pass
    except OSError:
        pass
    stop.set()
