"""The worker's request loop: read frames, upscale in a thread, stream progress and pixels.

One :class:`Session` serves one stream (stdin/stdout, or one TCP connection). Its main
thread only reads: requests, pixel data and ``cancel`` messages, so a cancel arrives while
an upscale runs in the job thread and stops it before the next tile. All writes go through
one lock, so a progress event never lands inside a result's pixel data.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import secrets
import socket
import stat
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .. import __version__
from ..errors import Cancelled, ModelError, OutOfMemoryError, RealscaleError
from . import protocol as p
from .models import ModelCache

log = logging.getLogger(__name__)

MAX_PIXELS = 1 << 30
"""Largest input a request may announce (width x height), against absurd allocations."""
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
            msg = f"'{name}' must be a positive whole number, got {value!r}"
            raise RequestError(msg)
    assert isinstance(width, int) and isinstance(height, int) and isinstance(channels, int)
    if channels > 4:
        msg = f"'channels' must be 1 to 4, got {channels}"
        raise RequestError(msg)
    if depth not in _DTYPES:
        msg = f"'depth' must be one of {', '.join(_DTYPES)}, got {depth!r}"
        raise RequestError(msg)
    if order not in p.ORDERS:
        msg = f"'order' must be rgb or bgr, got {order!r}"
        raise RequestError(msg)
    if width * height > MAX_PIXELS:
        msg = f"{width}x{height} is more than {MAX_PIXELS} pixels"
        raise RequestError(msg)
    return width, height, channels, str(depth), str(order)


def to_working(buffer: np.ndarray, request: dict[str, Any]) -> np.ndarray:
    """Wire bytes -> an HWC array the Upscaler takes, in RGB order."""
    width, height, channels, depth, order = _layout(request)
    image = buffer.view(_DTYPES[depth]).reshape(height, width, channels)
    if order == "bgr" and channels >= 3:
        image = image[..., _BGR[channels]]
    return image.astype(_WORK[depth], copy=False)


def result_bands(image: np.ndarray, depth: str, order: str) -> Any:
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


def _error(request_id: Any, kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "id": request_id, "kind": kind, "message": message}


# -- one session ------------------------------------------------------------------------


class Session:
    """Serves one stream until it ends."""

    def __init__(self, rfile: BinaryIO, wfile: BinaryIO, cache: ModelCache, *,
                 token: str | None = None, on_write_error: Callable[[], None] | None = None
                 ) -> None:
        self.reader = p.FrameReader(rfile)
        self.wfile = wfile
        self.cache = cache
        self.token = token
        self.write_lock = threading.Lock()
        self.upload: Upload | None = None
        self.job: tuple[Any, threading.Thread, Any] | None = None
        """(request id, thread, CancelToken) of the upscale that is running."""
        self.broken = False
        self.on_write_error = on_write_error

    # writing ----------------------------------------------------------------------------

    def send(self, message: dict[str, Any], bands: Any = None) -> None:
        with self.write_lock:
            if self.broken:
                return
            try:
                self.wfile.write(p.pack_json(message))
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

    def serve(self) -> None:
        """Answer requests until the stream ends; then cancel what runs and return."""
        try:
            if self.token is not None and not self._authenticate():
                return
            self.send({"type": "hello", "protocol": p.PROTOCOL_VERSION,
                       "realscale": __version__, "pid": os.getpid()})
            while True:
                try:
                    kind, length = self.reader.next_header()
                except p.FrameError as exc:
                    self._abandon_upload()
                    self.error(None, "protocol", f"Bad frame: {exc}.")
                    continue
                if kind == p.KIND_DATA:
                    self._data(length)
                    continue
                try:
                    message = p.decode_json(self.reader.read_payload(length))
                except p.FrameError as exc:
                    self._abandon_upload()
                    self.error(None, "protocol", f"Bad message: {exc}.")
                    continue
                self._message(message)
        except EOFError:
            pass
        finally:
            self._stop_job()

    def _authenticate(self) -> bool:
        assert self.token is not None
        try:
            message = self.reader.next_message()
        except (p.FrameError, EOFError):
            message = {}
        token = message.get("token") if message.get("type") == "auth" else None
        if isinstance(token, str) and hmac.compare_digest(token.encode(), self.token.encode()):
            return True
        self.error(message.get("id"), "auth",
                   "The realscale worker refused the connection: wrong or missing token.")
        return False

    def _message(self, message: dict[str, Any]) -> None:
        mtype, request_id = message["type"], message.get("id")
        if self.upload is not None and self.upload.received >= 0:
            missing = self.upload.buffer.size - self.upload.received
            self.error(self.upload.request.get("id"), "bad_request",
                       f"The request's pixel data was {missing} bytes short.")
        self.upload = None
        if mtype == "cancel":
            if self.job is not None and self.job[0] == request_id:
                self.job[2].cancel()
            return  # a cancel for a finished request needs no answer
        if mtype == "ping":
            self.send({"type": "pong", "id": request_id})
        elif mtype == "models":
            self._reply_models(request_id)
        elif mtype == "status":
            self.send({"type": "status", "id": request_id, "pid": os.getpid(),
                       "peak_rss": peak_rss(), "loaded": self.cache.loaded(),
                       "busy": self.job is not None, "realscale": __version__})
        elif mtype == "upscale":
            self._start_upload(message)
        else:
            self.error(request_id, "bad_request", f"Unknown request type {mtype!r}.")

    def _reply_models(self, request_id: Any) -> None:
        try:
            models = self.cache.catalogue()
        except RealscaleError as exc:
            self.error(request_id, "model", str(exc))
            return
        self.send({"type": "models", "id": request_id, "models": models})

    def _start_upload(self, request: dict[str, Any]) -> None:
        request_id = request.get("id")
        size = request.get("bytes")
        try:
            width, height, channels, depth, _order = _layout(request)
            expected = width * height * channels * _DTYPES[depth].itemsize
            if size != expected:
                msg = f"'bytes' must be {expected} for this layout, got {size!r}"
                raise RequestError(msg)
            if self.job is not None:
                msg = "the worker is busy with another request on this connection"
                raise RequestError(msg)
            buffer = np.empty(expected, dtype=np.uint8)
        except RequestError as exc:
            self.error(request_id, "bad_request", f"Bad upscale request: {exc}.")
            if isinstance(size, int) and 0 < size <= MAX_PIXELS * 16:
                self.upload = Upload(request, np.empty(0, np.uint8), -size)  # discard its data
            return
        except MemoryError:
            self.error(request_id, "out_of_memory",
                       "There is not enough memory for this image in the worker.")
            self.upload = Upload(request, np.empty(0, np.uint8), -expected)  # discard its data
            return
        self.upload = Upload(request, buffer)

    def _data(self, length: int) -> None:
        upload = self.upload
        if upload is None:
            self.reader.skip(length)
            self.error(None, "protocol", "Pixel data arrived without an upscale request.")
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
            self.error(upload.request.get("id"), "bad_request",
                       "The request sent more pixel data than it announced.")
            return
        self.reader.readinto(upload.buffer.data[upload.received : end])
        upload.received = end
        if end == upload.buffer.size:
            self.upload = None
            self._start_job(upload)

    def _abandon_upload(self) -> None:
        if self.upload is not None and self.upload.received >= 0:
            self.error(self.upload.request.get("id"), "bad_request",
                       "The request's pixel data was interrupted by a bad frame.")
        self.upload = None

    # the job ----------------------------------------------------------------------------

    def _start_job(self, upload: Upload) -> None:
        from ..upscale import CancelToken

        token = CancelToken()
        thread = threading.Thread(target=self._run_job, args=(upload, token),
                                  name="realscale-job", daemon=True)
        self.job = (upload.request.get("id"), thread, token)
        thread.start()

    def _run_job(self, upload: Upload, token: Any) -> None:
        request_id = upload.request.get("id")
        reply: dict[str, Any]
        bands: Any = None
        try:
            reply, bands = self._upscale(upload, token)
        except Cancelled:
            reply = _error(request_id, "cancelled", "The upscale was cancelled.")
        except (OutOfMemoryError, MemoryError) as exc:
            text = str(exc) or "the worker ran out of memory"
            reply = _error(request_id, "out_of_memory",
                           f"Out of memory: {text}; try a smaller tile or image.")
        except RequestError as exc:
            reply = _error(request_id, "bad_request", f"Bad upscale request: {exc}.")
        except ModelError as exc:
            reply = _error(request_id, "model", str(exc))
        except RealscaleError as exc:
            reply = _error(request_id, "error", str(exc))
        except Exception as exc:
            log.exception("upscale request %s failed", request_id)
            reply = _error(request_id, "internal",
                           f"The worker failed unexpectedly ({type(exc).__name__}: {exc}).")
            reply["detail"] = traceback.format_exc()
        # Not busy any more before the reply leaves: the client may send its next request
        # the moment it has read it.
        self.job = None
        self.send(reply, bands)

    def _upscale(self, upload: Upload, token: Any) -> tuple[dict[str, Any], Any]:
        request = upload.request
        request_id = request.get("id")
        _w, _h, _c, depth, order = _layout(request)
        scale, tile = request.get("scale"), request.get("tile", 0)
        if scale is not None and (not isinstance(scale, (int, float)) or isinstance(scale, bool)):
            msg = f"'scale' must be a number or null, got {scale!r}"
            raise RequestError(msg)
        if not isinstance(tile, int) or isinstance(tile, bool) or (tile != 0 and tile < 16):
            msg = f"'tile' must be 0 (auto) or at least 16, got {tile!r}"
            raise RequestError(msg)
        model = request.get("model")
        if not isinstance(model, str):
            from ..upscale import DEFAULT_MODEL

            model = DEFAULT_MODEL
        device = str(request.get("device") or "auto")
        precision = str(request.get("precision") or "auto")
        backend = str(request.get("backend") or "auto")
        image = to_working(upload.buffer, request)
        del upload.buffer  # a converted copy exists now (or it is the same memory)

        def progress(done: int, total: int) -> None:
            self.send({"type": "progress", "id": request_id, "done": done, "total": total})

        while not self.cache.lock.acquire(timeout=0.1):
            if token.cancelled:  # waiting behind another connection's upscale
                raise Cancelled("the upscale was cancelled")
        try:
            upscaler = self.cache.get(model, device, precision, bool(request.get("download")),
                                      backend)
            upscaler.tile = tile or "auto"
            result = upscaler.upscale(image, scale=None if scale is None else float(scale),
                                      progress=progress, cancel=token)
        finally:
            self.cache.lock.release()
        del image
        out_h, out_w = result.shape[:2]
        reply = {"type": "result", "id": request_id, "width": out_w, "height": out_h,
                 "channels": result.shape[2], "depth": depth, "order": order,
                 "bytes": result.size * _DTYPES[depth].itemsize}
        return reply, result_bands(result, depth, order)

    def _stop_job(self) -> None:
        job = self.job
        if job is not None:
            job[2].cancel()
            job[1].join(timeout=10)


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


def serve_tcp(cache: ModelCache, listen: str, config_out: Path | None = None) -> int:
    """Serve connections on 127.0.0.1 that present the session's token.

    Prints one JSON line with the address and token. Runs until killed, or until stdin
    closes when stdin is a pipe (so a parent that dies takes the worker with it).
    """
    host, port = parse_listen(listen)
    token = secrets.token_urlsafe(32)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if sys.platform == "win32":
        server.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)  # type: ignore[attr-defined]
    server.bind((host, port))
    server.listen(8)
    bound_host, bound_port = server.getsockname()[:2]
    address = f"{bound_host}:{bound_port}"
    if config_out is not None:
        from ..install.installer import write_json

        write_json(config_out, {"version": p.CONFIG_VERSION, "address": address,
                                "token": token}, private=True)
    print(json.dumps({"address": address, "token": token, "pid": os.getpid()}), flush=True)
    stop = threading.Event()
    if _stdin_is_pipe():
        threading.Thread(target=_watch_stdin, args=(stop,), daemon=True).start()
    server.settimeout(0.5)  # accept() is not woken by a close from another thread
    try:
        while not stop.is_set():
            try:
                conn, _peer = server.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            conn.settimeout(None)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=_serve_connection, args=(conn, cache, token),
                             name="realscale-connection", daemon=True).start()
    finally:
        server.close()
    return 0


def _serve_connection(conn: socket.socket, cache: ModelCache, token: str) -> None:
    with conn:
        rfile, wfile = conn.makefile("rb"), conn.makefile("wb")
        try:
            Session(rfile, wfile, cache, token=token).serve()
        except OSError:
            pass
        finally:
            for stream in (wfile, rfile):
                with contextlib.suppress(OSError):
                    stream.close()


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
