"""realscale's host client: talk to a `realscale worker` from GIMP, Krita or Resolve.

Standard library only, Python 3.8 to 3.13: each host plug-in vendors this file together with
``realscale_wire.py`` (core's ``realscale/wire.py``, copied beside it by ``realscale install``
and ``realscale package``), which holds the framing, the message types, the error kinds and
the config lookup the worker itself uses, so the two sides cannot drift apart. Run from a
source checkout (tests), it takes ``core/realscale/wire.py`` instead. The bytes on the wire
are described in ``docs/worker-protocol.md``; the API in ``docs/worker-client.md``.

A client is not thread-safe: call it from one thread (hosts call it from their main
thread). Progress and cancel callbacks run in that thread.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import itertools
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

__all__ = [
    "PROTOCOL_VERSION",
    "FrameError",
    "FrameReader",
    "PixelLayout",
    "UpscaleResult",
    "WorkerCancelled",
    "WorkerClient",
    "WorkerCrashed",
    "WorkerError",
    "WorkerNotInstalled",
    "WorkerOutOfMemory",
    "WorkerProtocolMismatch",
    "config_path",
    "read_config",
]

# ---------------------------------------------------------------------------------------
# The framing and the config: realscale_wire, the worker's own module
# ---------------------------------------------------------------------------------------


def _checkout_wire() -> Any:
    """core/realscale/wire.py of the source checkout this file lies in (tests run the client
    from plugins/common); a process that already has realscale.wire shares it."""
    loaded = sys.modules.get("realscale.wire") or sys.modules.get("realscale_wire")
    if loaded is not None:
        return loaded
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, os.pardir, os.pardir, "core", "realscale", "wire.py")
    if not os.path.isfile(path):
        raise ImportError("realscale_wire.py is missing beside realscale_client.py; install "
                          "the plug-in again", name="realscale_wire")
    import importlib.util

    spec = importlib.util.spec_from_file_location("realscale_wire", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["realscale_wire"] = module
    spec.loader.exec_module(module)
    return module


try:
    if __package__:  # vendored inside a plug-in package (Krita's realscale/ folder)
        from . import realscale_wire as wire
    else:  # vendored beside the plug-in's script (GIMP), or on sys.path
        import realscale_wire as wire
except ImportError:
    wire = _checkout_wire()

PROTOCOL_VERSION = wire.PROTOCOL_VERSION
CONFIG_VERSION = wire.CONFIG_VERSION
KIND_DATA = wire.KIND_DATA
DEPTHS = wire.DEPTHS
ORDERS = wire.ORDERS
FrameError = wire.FrameError
FrameReader = wire.FrameReader
config_dir = wire.config_dir
config_path = wire.config_path
decode_json = wire.decode_json
pack_json = wire.pack_json
worker_environment = wire.worker_environment
write_data = wire.write_data


# ---------------------------------------------------------------------------------------
# Errors and data types
# ---------------------------------------------------------------------------------------


class WorkerError(Exception):
    """Anything the worker reported, or any failure to use it; str() is one sentence."""

    def __init__(self, message: str, detail: str = "", kind: str = "") -> None:
        super().__init__(message)
        self.detail = detail
        """More text for a log or a tooltip (the worker's last output), maybe empty."""
        self.kind = kind
        """The worker's error kind (``realscale_wire.E_MODEL``, ``E_BAD_REQUEST``, ...; see
        docs/worker-protocol.md), or "" for a failure the client found itself."""


class WorkerNotInstalled(WorkerError):
    """No worker config, or its interpreter cannot run realscale."""


class WorkerCrashed(WorkerError):
    """The worker process died (or the connection dropped); the next call starts anew."""


class WorkerOutOfMemory(WorkerError):
    """The device (or the computer) ran out of memory, even with the smallest tiles."""


class WorkerCancelled(WorkerError):
    """The caller cancelled the request."""


class WorkerProtocolMismatch(WorkerError):
    """The worker is of a realscale that speaks another protocol version (an engine set up
    by an older or newer plug-in): updating one to the other's version is the remedy."""

    def __init__(self, message: str, protocol: int) -> None:
        super().__init__(message)
        self.protocol = protocol
        """The protocol version the worker speaks."""


class PixelLayout:
    """How the pixel bytes are laid out: channels 1-4, depth u8/u16/f16/f32, order rgb/bgr."""

    __slots__ = ("channels", "depth", "order")

    def __init__(self, channels: int = 4, depth: str = "u8", order: str = "rgb") -> None:
        if channels not in (1, 2, 3, 4):
            raise ValueError(f"channels must be 1 to 4, not {channels!r}")
        if depth not in DEPTHS:
            raise ValueError("depth must be one of {}, not {!r}".format(", ".join(DEPTHS), depth))
        if order not in ORDERS:
            raise ValueError(f"order must be 'rgb' or 'bgr', not {order!r}")
        self.channels = channels
        self.depth = depth
        self.order = order

    @property
    def bytes_per_pixel(self) -> int:
        return self.channels * DEPTHS[self.depth]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PixelLayout) and (
            (self.channels, self.depth, self.order) == (other.channels, other.depth, other.order))

    def __hash__(self) -> int:
        return hash((self.channels, self.depth, self.order))

    def __repr__(self) -> str:
        return f"PixelLayout(channels={self.channels}, depth={self.depth!r}, order={self.order!r})"


class UpscaleResult:
    """The upscaled pixels (a bytearray) in the request's layout."""

    __slots__ = ("data", "height", "layout", "width")

    def __init__(self, data: bytearray, width: int, height: int, layout: PixelLayout) -> None:
        self.data = data
        self.width = width
        self.height = height
        self.layout = layout

    def __repr__(self) -> str:
        return f"UpscaleResult({self.width}x{self.height}, {self.layout!r}, {len(self.data)} bytes)"


# ---------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------

def read_config(path: str | None = None, host: str = "gimp|krita|resolve") -> dict[str, Any]:
    """The worker config as a dict; WorkerNotInstalled when it is missing or unusable."""
    try:
        return wire.read_config(path, host)
    except wire.ConfigError as exc:
        raise WorkerNotInstalled(str(exc)) from None


# ---------------------------------------------------------------------------------------
# Connections: a worker process on pipes, or a running worker on 127.0.0.1
# ---------------------------------------------------------------------------------------

_EOF = "eof"
_MESSAGE = "message"
_RESULT = "result"
_JOIN = 5.0
"""Seconds to wait for a connection's threads (and a closed worker) to end."""


class _Write:
    """One queued frame (and its pixel data); ``done`` is set once it left or failed."""

    __slots__ = ("data", "done", "error", "frame")

    def __init__(self, frame: bytes, data: Any) -> None:
        self.frame = frame
        self.data = data
        self.done = threading.Event()
        self.error: BaseException | None = None


class _Connection:
    """One live worker. A reader thread turns frames into queue items; a writer thread sends
    what is queued, so the caller's thread never blocks on a worker that stopped reading
    (it can still cancel, and give up on it)."""

    def __init__(self, rfile: Any, wfile: Any, description: str) -> None:
        self.rfile = rfile
        self.wfile = wfile
        self.description = description
        self.items: queue.Queue[tuple[str, Any, Any]] = queue.Queue()
        self.hello: dict[str, Any] = {}
        self.dead = False
        self.ended = threading.Event()
        """Set by the reader thread when the stream ended (the worker exited or hung up)."""
        self._writes: queue.Queue[_Write | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read_loop, name="realscale-reader",
                                        daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="realscale-writer",
                                        daemon=True)
        self._reader.start()
        self._writer.start()

    def _read_loop(self) -> None:
        reader = FrameReader(self.rfile)
        try:
            while True:
                kind, length = reader.next_header()
                if kind == KIND_DATA:
                    reader.skip(length)  # stray data: nothing is waiting for it
                    continue
                message = decode_json(reader.read_payload(length))
                if message["type"] == wire.RESULT:
                    size = int(message.get("bytes", 0))
                    buffer = bytearray(size)
                    view = memoryview(buffer)
                    done = 0
                    while done < size:
                        kind, length = reader.next_header()
                        if kind != KIND_DATA or done + length > size:
                            raise FrameError("the result's pixel data is malformed")
                        reader.readinto(view[done : done + length])
                        done += length
                    view.release()
                    self.items.put((_RESULT, message, buffer))
                else:
                    self.items.put((_MESSAGE, message, None))
        except (EOFError, OSError, ValueError) as exc:
            self.items.put((_EOF, str(exc), None))
        except FrameError as exc:
            self.items.put((_EOF, f"the worker sent bytes that are not frames ({exc})",
                            exc.version))
        except MemoryError:
            self.items.put((_EOF, "no memory left for the result", None))
        finally:
            self.ended.set()

    def _write_loop(self) -> None:
        while True:
            write = self._writes.get()
            if write is None:
                break
            try:
                self.wfile.write(write.frame)
                if write.data is not None:
                    write_data(self.wfile, write.data)
                self.wfile.flush()
            except (OSError, ValueError) as exc:
                write.error = exc
            finally:
                write.data = None  # the caller's buffer is not held a moment longer
                write.done.set()
        with contextlib.suppress(OSError, ValueError):
            self.wfile.close()

    def post(self, message: dict[str, Any], data: Any = None) -> _Write:
        """Queue a message (and its pixel data) for the writer thread; returns at once.

        Raises ValueError when the message is larger than a JSON frame may be."""
        write = _Write(pack_json(message), data)
        self._writes.put(write)
        return write

    def alive(self) -> bool:
        return not self.dead and not self.ended.is_set()

    def failure(self) -> str:
        """Why the connection ended, for WorkerCrashed."""
        return "the connection to the worker ended"

    def last_output(self) -> str:
        return ""

    def close(self) -> None:
        """Stop writing once what is queued is out; subclasses end the stream."""
        self.dead = True
        self._writes.put(None)

    def abandon(self) -> None:
        """Give up on a worker that stopped answering: end it (or the connection) now."""
        self.close()

    def _join(self) -> None:
        # Only once the stream has ended: closing a buffered file while a thread is blocked
        # in it would wait for that read (or write) forever.
        for thread in (self._writer, self._reader):
            if thread is not threading.current_thread():
                thread.join(timeout=_JOIN)
        for stream in (self.wfile, self.rfile):
            with contextlib.suppress(OSError, ValueError):
                stream.close()


class _ProcessConnection(_Connection):
    def __init__(self, python: str, pythonpath: list[str] | None, args: list[str]) -> None:
        command = [python, "-m", "realscale", "worker"] + args
        kwargs: dict[str, Any] = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = 0x08000000  # CREATE_NO_WINDOW: no console flashes up
        else:
            kwargs["start_new_session"] = True  # the host's Ctrl-C is not the worker's
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=worker_environment(pythonpath), cwd=os.path.expanduser("~"), **kwargs)
        self.log: collections.deque[str] = collections.deque(maxlen=40)
        self._stderr = threading.Thread(target=self._drain_stderr, name="realscale-stderr",
                                        daemon=True)
        self._stderr.start()
        super().__init__(self.process.stdout, self.process.stdin,
                         f"the realscale worker ({python})")

    @property
    def pid(self) -> int:
        return self.process.pid

    def _drain_stderr(self) -> None:
        for raw in iter(self.process.stderr.readline, b""):
            self.log.append(raw.decode("utf-8", "replace").rstrip())

    def alive(self) -> bool:
        return super().alive() and self.process.poll() is None

    def last_output(self) -> str:
        self._stderr.join(timeout=0.5)  # the last lines, if the worker has exited
        return "\n".join(self.log)

    def failure(self) -> str:
        try:
            code = self.process.wait(timeout=_JOIN)
        except subprocess.TimeoutExpired:
            return "it stopped answering"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            hint = ", perhaps by the system when memory ran out" if -code == 9 else ""
            return f"it was killed by {name}{hint}"
        return f"it exited with code {code}"

    def close(self) -> None:
        super().close()  # once queued writes are out, closing its stdin asks it to exit
        try:
            self.process.wait(timeout=_JOIN)
        except subprocess.TimeoutExpired:
            self.process.kill()  # stopped, or stuck: it cannot be asked
            self.process.wait()
        self._join()
        self._stderr.join(timeout=_JOIN)
        if self.process.stderr is not None:
            with contextlib.suppress(OSError, ValueError):
                self.process.stderr.close()

    def abandon(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()  # SIGKILL ends a stopped process too
        self.close()


class _SocketConnection(_Connection):
    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.address = address
        self.sock = socket.create_connection((host or "127.0.0.1", int(port)), timeout=10)
        self.sock.settimeout(None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().__init__(self.sock.makefile("rb"), self.sock.makefile("wb"),
                         f"the realscale worker at {address}")

    def close(self) -> None:
        super().close()
        # A shutdown wakes both threads (a close alone leaves a blocked recv waiting), and
        # the worker sees the end of the stream and ends its side too.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self._join()
        with contextlib.suppress(OSError):
            self.sock.close()


# ---------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------

_clients: weakref.WeakSet[WorkerClient] = weakref.WeakSet()
_POLL = 0.05
_START_TIMEOUT = 300.0
"""Seconds to wait for a starting worker (importing torch can be slow on a cold disk)."""
_HELLO_TIMEOUT = 30.0
"""Seconds to wait for a running TCP worker to greet a new connection."""
CANCEL_TIMEOUT = 10.0
"""Seconds a worker has to end a cancelled request before the client gives up on it."""


@atexit.register
def _close_all() -> None:
    for client in list(_clients):
        client.close()


class WorkerClient:
    """Starts (or connects to) a realscale worker lazily and sends it requests.

    ``python`` names the worker's interpreter directly (tests); otherwise the config file
    written by ``realscale install`` is read on first use. ``host`` only shapes messages.
    """

    def __init__(self, python: str | None = None, *, config: str | None = None,
                 address: str | None = None, token: str | None = None,
                 pythonpath: list[str] | None = None, host: str = "gimp|krita|resolve",
                 worker_args: list[str] | None = None,
                 cancel_timeout: float = CANCEL_TIMEOUT) -> None:
        self._python = python
        self._config_file = config
        self._address = address
        self._token = token
        self._pythonpath = pythonpath
        self._worker_args = list(worker_args or [])
        self._host = host
        self.cancel_timeout = float(cancel_timeout)
        """After a cancel, seconds the worker has to answer before it is ended (a worker
        this client started is killed; a TCP worker's connection is closed)."""
        self._conn: _Connection | None = None
        self._ids = itertools.count(1)
        _clients.add(self)

    # -- public API ---------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The worker's process id once started (None before)."""
        if self._conn is None:
            return None
        pid = self._conn.hello.get("pid")
        return int(pid) if pid is not None else None

    def upscale(self, data: Any, width: int, height: int, layout: PixelLayout, *,
                model: str = "realesrgan-x4plus", scale: float | None = 4.0,
                tile: int | str = wire.AUTO,
                device: str = "auto", precision: str = "auto", download: bool = False,
                backend: str = "auto",
                progress: Callable[[int, int], None] | None = None,
                cancel: Callable[[], bool] | None = None) -> UpscaleResult:
        """Upscale ``data`` (rows top to bottom, channels interleaved, in ``layout``).

        ``tile`` is "auto" (the worker chooses; 0 and None mean the same, for integer
        widgets) or a whole number of pixels of at least 16."""
        view = memoryview(data).cast("B")
        if width < 1 or height < 1:
            raise WorkerError(f"The image is empty ({width}x{height}).")
        expected = width * height * layout.bytes_per_pixel
        if len(view) != expected:
            raise WorkerError(
                f"Expected {expected} bytes for a {width}x{height} image of {layout!r}, "
                f"got {len(view)}.")
        request = {
            "type": wire.UPSCALE, "width": width, "height": height,
            "channels": layout.channels, "depth": layout.depth, "order": layout.order,
            "model": model, "scale": scale, "tile": wire.wire_tile(tile), "device": device,
            "precision": precision, "download": bool(download), "backend": backend,
            "bytes": expected,
        }
        message, buffer = self._request(request, view, progress, cancel)
        if len(buffer) != int(message["width"]) * int(message["height"]) * layout.bytes_per_pixel:
            raise WorkerError("The worker's result does not match its size; please report this.")
        return UpscaleResult(buffer, int(message["width"]), int(message["height"]), layout)

    def models(self) -> list[dict[str, Any]]:
        """The models the worker offers: name, scale, architecture, embedded, default, ..."""
        message, _ = self._request({"type": wire.MODELS}, None, None, None)
        return list(message["models"])

    def status(self) -> dict[str, Any]:
        """The worker's pid, peak memory and loaded models."""
        message, _ = self._request({"type": wire.STATUS}, None, None, None)
        return message

    def devices(self) -> list[dict[str, Any]]:
        """The devices the worker can run on, "cpu" first: name ("cpu", "cuda:0", ...),
        label (for a menu), kind ("cpu", "cuda", "mps", ...), free_bytes and total_bytes
        (None where unknown), fast ("bf16", "fp16", or None: the reduced precision that is
        fast there)."""
        message, _ = self._request({"type": wire.DEVICES}, None, None, None)
        return list(message["devices"])

    def measure(self, model: str, device: str = wire.AUTO, precision: str = wire.AUTO, *,
                cancel: Callable[[], bool] | None = None) -> dict[str, Any]:
        """How fast ``model`` runs on ``device`` at ``precision``, timed by the worker after
        a warm-up: model, device and precision (as resolved), scale, pixels_per_second
        (input pixels, the steady rate) and seconds_fixed (the cost of each call on top),
        so an image of N pixels takes about seconds_fixed + N / pixels_per_second. Takes
        a second or a few (the model may load first); ``cancel`` is polled as for upscale()
        (WorkerCancelled)."""
        message, _ = self._request(
            {"type": wire.MEASURE, "model": model, "device": device, "precision": precision},
            None, None, cancel)
        return message

    def close(self) -> None:
        """End the worker (a TCP worker keeps running; only the connection closes)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> WorkerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------

    def _request(self, request: dict[str, Any], data: Any,
                 progress: Callable[[int, int], None] | None,
                 cancel: Callable[[], bool] | None) -> tuple[dict[str, Any], bytearray]:
        conn = self._connection(cancel)
        request_id = next(self._ids)
        request["id"] = request_id
        try:
            write = conn.post(request, data)
        except ValueError as exc:
            raise WorkerError(f"The request is too large to send ({exc}).") from None
        cancelled_at: float | None = None
        pending: BaseException | None = None
        try:
            while True:
                if cancelled_at is None and (
                        pending is not None or (cancel is not None and cancel())):
                    cancelled_at = time.monotonic()
                    conn.post({"type": wire.CANCEL, "id": request_id})  # queued: never blocks
                if write.error is not None:
                    raise self._crashed(conn, "while receiving a request")
                if (cancelled_at is not None
                        and time.monotonic() - cancelled_at > self.cancel_timeout):
                    self._abandon(conn)
                    if pending is not None:
                        raise pending
                    raise WorkerCancelled(self._abandoned(conn))
                try:
                    kind, message, buffer = conn.items.get(timeout=_POLL)
                except queue.Empty:
                    continue
                if kind == _EOF:
                    raise self._crashed(conn, "while working on a request")
                if message.get("id") != request_id:
                    continue  # a late reply to an earlier, abandoned request
                mtype = message["type"]
                if mtype == wire.PROGRESS:
                    if progress is not None and pending is None:
                        try:
                            progress(int(message["done"]), int(message["total"]))
                        except BaseException as exc:  # the host's callback: stop, then re-raise
                            pending = exc
                    continue
                # The worker has answered; a reply that came before all of the request's
                # pixel data was sent (a refused request) waits until the worker has read
                # them, so the caller's buffer is not in use once this returns.
                self._finish(conn, write)
                if mtype == wire.ERROR:
                    if pending is not None:
                        raise pending
                    raise _error(message)
                if pending is not None:
                    raise pending
                if cancelled_at is not None:
                    raise WorkerCancelled("The request was cancelled.")
                return message, buffer if buffer is not None else bytearray()
        except (KeyboardInterrupt, SystemExit):
            self.close()  # the stream is mid-reply: start afresh next time
            raise

    def _finish(self, conn: _Connection, write: _Write) -> None:
        if not write.done.wait(self.cancel_timeout):
            self._abandon(conn)
            write.done.wait(_JOIN)

    def _abandon(self, conn: _Connection) -> None:
        if self._conn is conn:
            self._conn = None
        conn.abandon()

    def _abandoned(self, conn: _Connection) -> str:
        seconds = f"{self.cancel_timeout:g} seconds"
        if isinstance(conn, _SocketConnection):
            return (f"The upscale was cancelled; the realscale worker at {conn.address} did "
                    f"not answer within {seconds}, so the connection to it was closed (it may "
                    "be stuck: restart it).")
        return (f"The upscale was cancelled; the realscale worker did not stop within "
                f"{seconds}, so it was ended (the next upscale starts a new one).")

    def _connection(self, cancel: Callable[[], bool] | None) -> _Connection:
        if self._conn is not None and self._conn.alive():
            return self._conn
        if self._conn is not None:
            self.close()
        address, token, python, pythonpath, args = (
            self._address, self._token, self._python, self._pythonpath, self._worker_args)
        source = "the arguments"
        if address is None and python is None:
            config = read_config(self._config_file, self._host)
            source = config["_path"]
            address, token = config.get("address"), config.get("token")
            python = config.get("python")
            pythonpath = config.get("pythonpath") or None
            args = args + sum((["--model-dir", d] for d in config.get("model_dirs") or []), [])
        if address is not None:
            conn = self._connect(address, token, source)
        else:
            assert python is not None
            conn = self._spawn(python, pythonpath, args, source)
        self._conn = conn
        self._await_hello(conn, cancel)
        return conn

    def _connect(self, address: str, token: str | None, source: str) -> _Connection:
        try:
            conn = _SocketConnection(address)
        except (OSError, ValueError) as exc:
            raise WorkerNotInstalled(
                f"No realscale worker answers at {address} (named in {source}): start it with "
                f"`realscale worker --listen {address}`, or {self._hint()}.",
                str(exc)) from None
        try:
            conn.post({"type": wire.AUTH, "token": token or ""})
        except ValueError:
            conn.close()
            raise WorkerNotInstalled(
                f"The token in {source} is not usable: {self._hint()}.") from None
        return conn

    def _spawn(self, python: str, pythonpath: list[str] | None, args: list[str],
               source: str) -> _Connection:
        if not os.path.isfile(python):
            raise WorkerNotInstalled(
                f"The Python named in {source} ({python}) does not exist any more: "
                f"{self._hint()}.")
        try:
            return _ProcessConnection(python, pythonpath, args)
        except OSError as exc:
            raise WorkerNotInstalled(
                f"The realscale worker could not be started with {python} "
                f"({exc.strerror or exc}): {self._hint()}.") from None

    def _await_hello(self, conn: _Connection, cancel: Callable[[], bool] | None) -> None:
        wait = _HELLO_TIMEOUT if isinstance(conn, _SocketConnection) else _START_TIMEOUT
        deadline = time.monotonic() + wait
        while True:
            if cancel is not None and cancel():
                self._abandon(conn)  # nothing in a starting worker is worth waiting for
                raise WorkerCancelled("The upscale was cancelled while the worker started.")
            try:
                kind, message, extra = conn.items.get(timeout=_POLL)
            except queue.Empty:
                if time.monotonic() > deadline:
                    self._abandon(conn)
                    raise WorkerCrashed(
                        f"{conn.description[0].upper()}{conn.description[1:]} did not answer "
                        f"within {wait:.0f} seconds.") from None
                continue
            if kind == _EOF and isinstance(extra, int):  # frames of another protocol
                self.close()
                raise self._mismatch(extra)
            if kind == _EOF:
                log = conn.last_output()
                if "No module named realscale" in log or "No module named 'realscale'" in log:
                    self.close()
                    raise WorkerNotInstalled(
                        "The Python in the worker config has no realscale: "
                        f"{self._hint()}.", log)
                raise self._crashed(conn, "while starting")
            if message["type"] == wire.ERROR:
                self.close()
                raise _error(message)
            if message["type"] != wire.HELLO:
                continue
            if message.get("protocol") != PROTOCOL_VERSION:
                self.close()
                protocol = message.get("protocol")
                raise self._mismatch(protocol if isinstance(protocol, int) else -1)
            conn.hello = message
            return

    def _hint(self) -> str:
        return str(wire.INSTALL_HINT.format(self._host))

    def _mismatch(self, protocol: int) -> WorkerProtocolMismatch:
        return WorkerProtocolMismatch(
            f"The realscale engine speaks protocol {protocol} but this plug-in speaks "
            f"{PROTOCOL_VERSION}: update the engine to the plug-in's version, or "
            f"{self._hint()}.", protocol)

    def _crashed(self, conn: _Connection, when: str) -> WorkerCrashed:
        reason = conn.failure()
        detail = conn.last_output()
        if self._conn is conn:
            self.close()
        last = detail.strip().splitlines()[-1] if detail.strip() else ""
        tail = f" Its last words: {last}" if last else ""
        return WorkerCrashed(
            f"The realscale worker stopped {when} ({reason}); the next attempt starts a new "
            f"one.{tail}", detail)


_ERRORS = {
    wire.E_CANCELLED: WorkerCancelled,
    wire.E_OUT_OF_MEMORY: WorkerOutOfMemory,
}
"""The error kinds with a class of their own; the others are plain WorkerError."""


def _error(message: dict[str, Any]) -> WorkerError:
    kind = str(message.get("kind") or "")
    cls = _ERRORS.get(kind, WorkerError)
    return cls(str(message.get("message") or "The worker reported an unknown error."),
               str(message.get("detail") or ""), kind)
