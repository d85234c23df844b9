"""The worker's wire protocol and the worker config: the one source both sides use.

The worker imports this module as ``realscale.wire``; ``realscale install`` and
``realscale package`` copy this very file into each host plug-in as ``realscale_wire.py``,
beside the vendored client, which imports its framing and config from it. So it uses the
standard library only and keeps to Python 3.6 syntax (DaVinci Resolve runs its scripts with
the user's Python, 3.6 or later; the other hosts bring 3.8 or later): no
``from __future__ import annotations``, annotations that name newer types are strings.

Here: the frame format and its reader, the message types, the error kinds the worker sends,
where the worker config lives and how it is read and written. The bytes on the wire are
described in ``docs/worker-protocol.md``.
"""

import contextlib
import itertools
import json
import os
import re
import secrets
import struct
import sys
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from typing import BinaryIO, Protocol

    class ByteSource(Protocol):
        """What FrameReader reads from: a binary pipe or socket file."""

        def read(self, __size: int) -> bytes: ...

        def readinto(self, __buffer: memoryview) -> "int | None": ...

    class ByteSink(Protocol):
        """What pixel data is written to: a binary pipe or socket file."""

        def write(self, __data: "bytes | memoryview") -> object: ...

# ---------------------------------------------------------------------------------------
# The framing
# ---------------------------------------------------------------------------------------

PROTOCOL_VERSION = 1
MAGIC = b"\x89RSW"
HEADER = struct.Struct(">4sBcxxI")
"""magic, protocol version, kind (J = JSON message, D = pixel data), 2 zero bytes, length."""
KIND_JSON = b"J"
KIND_DATA = b"D"
MAX_JSON = 1 << 20
"""Largest JSON message, in bytes."""
MAX_DATA = 16 << 20
"""Largest pixel data frame, in bytes."""
CHUNK = 4 << 20
"""Size of the pixel data frames both sides send."""
MAX_NESTING = 32
"""Deepest nesting of arrays and objects in a JSON message (no message needs more than 4)."""
DEPTHS = {"u8": 1, "u16": 2, "f16": 2, "f32": 4}
"""Bytes per sample of each pixel depth (all little-endian)."""
ORDERS = ("rgb", "bgr")
AUTO = "auto"
"""How "let the worker choose" is spelled in a request (device, precision, backend)."""
PRECISIONS = (AUTO, "fp32", "fp16", "bf16")
"""A request's ``precision``."""


def wire_tile(tile: Any) -> Any:
    """A request's ``tile`` as the wire spells it: ``"auto"`` for "let the worker choose",
    also when given as None or 0 (how clients of protocol 1, and hosts' integer widgets,
    said it); any other value unchanged (the worker checks it: a whole number of at least
    16). The one place either side turns 0 into ``"auto"``."""
    if tile is None or (tile == 0 and not isinstance(tile, bool)):
        return AUTO
    return tile

# ---------------------------------------------------------------------------------------
# Message types (the ``type`` of a JSON message)
# ---------------------------------------------------------------------------------------

# Requests (host to worker)
AUTH = "auth"
UPSCALE = "upscale"
CANCEL = "cancel"
MODELS = "models"
STATUS = "status"
DEVICES = "devices"
MEASURE = "measure"
PING = "ping"
# Replies and events (worker to host); ``models``, ``status``, ``devices`` and ``measure``
# replies carry their request's type.
HELLO = "hello"
PROGRESS = "progress"
RESULT = "result"
ERROR = "error"
PONG = "pong"

REQUESTS = (AUTH, UPSCALE, CANCEL, MODELS, STATUS, DEVICES, MEASURE, PING)
"""Every request type a worker of this protocol version knows."""

# ---------------------------------------------------------------------------------------
# Error kinds (the ``kind`` of an ``error`` message): all the worker sends
# ---------------------------------------------------------------------------------------

E_CANCELLED = "cancelled"
"""The request was cancelled."""
E_OUT_OF_MEMORY = "out_of_memory"
"""The device (or the computer) ran out of memory, even with the smallest tiles."""
E_MODEL = "model"
"""Unknown model name, missing weights, a file outside the model folders."""
E_BAD_REQUEST = "bad_request"
"""Bad fields, a result too large, a second upscale while one runs, an unknown type."""
E_PROTOCOL = "protocol"
"""Bytes that are not frames, or a message that is not valid JSON (``id`` null)."""
E_AUTH = "auth"
"""TCP: no token, or a wrong one; the connection is closed."""
E_BUSY = "busy"
"""TCP: the worker serves as many connections as it may; the connection is closed."""
E_TIMEOUT = "timeout"
"""TCP: the connection sent nothing for too long; it is closed."""
E_ERROR = "error"
"""Anything else realscale reported on purpose (a reply too large to send, a device error)."""
E_INTERNAL = "internal"
"""A bug: the worker failed unexpectedly (``detail`` holds the traceback)."""

ERROR_KINDS = (E_CANCELLED, E_OUT_OF_MEMORY, E_MODEL, E_BAD_REQUEST, E_PROTOCOL, E_AUTH,
               E_BUSY, E_TIMEOUT, E_ERROR, E_INTERNAL)


def error_message(request_id: Any, kind: str, message: str) -> "dict[str, Any]":
    """An ``error`` message; ``message`` is one sentence for the user."""
    return {"type": ERROR, "id": request_id, "kind": kind, "message": message}


class FrameError(Exception):
    """Bytes that are not a well-formed frame; the stream stays usable after it."""

    def __init__(self, message: str, version: "int | None" = None) -> None:
        super().__init__(message)
        self.version = version
        """The protocol version in a well-formed header of another protocol, else None: the
        peer is of another realscale version, not broken."""


def pack_json(message: "dict[str, Any]") -> bytes:
    """One JSON frame, header included."""
    body = json.dumps(message, separators=(",", ":")).encode("utf-8")
    if len(body) > MAX_JSON:
        raise ValueError(f"a JSON message may not exceed {MAX_JSON} bytes")
    return HEADER.pack(MAGIC, PROTOCOL_VERSION, KIND_JSON, len(body)) + body


def data_header(length: int) -> bytes:
    """The header of a pixel data frame of ``length`` bytes (the payload follows it)."""
    if not 0 < length <= MAX_DATA:
        raise ValueError(f"a data frame holds 1 to {MAX_DATA} bytes, not {length}")
    return HEADER.pack(MAGIC, PROTOCOL_VERSION, KIND_DATA, length)


def write_data(stream: "ByteSink | BinaryIO", data: Any) -> None:
    """Write ``data`` (any bytes-like object) as data frames of at most CHUNK bytes."""
    view = memoryview(data).cast("B")
    for start in range(0, len(view), CHUNK):
        part = view[start : start + CHUNK]
        stream.write(data_header(len(part)))
        stream.write(part)


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def _excess_nesting(payload: bytes) -> int:
    """How deep arrays and objects nest in ``payload`` when that is more than MAX_NESTING,
    else 0 (brackets inside strings do not count).

    Counted before parsing: the json module recurses once per level, so a 2 KB message of
    a thousand ``[`` would otherwise end in RecursionError (or, in a thread with a small
    stack, in a crash) instead of a FrameError."""
    if payload.count(b"[") + payload.count(b"{") <= MAX_NESTING:
        return 0
    brackets = _JSON_STRING.sub(b"", payload).translate(None, _NOT_BRACKETS)
    depth = max(itertools.accumulate(_STEP[b] for b in brackets), default=0)
    return depth if depth > MAX_NESTING else 0


def decode_json(payload: bytes) -> "dict[str, Any]":
    """The message in a JSON frame's payload: an object with a string ``type``."""
    depth = _excess_nesting(payload)
    if depth:
        raise FrameError(
            f"the message nests arrays and objects {depth} deep; at most {MAX_NESTING} are allowed")
    try:
        message = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FrameError(f"the message is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise FrameError("a message must be a JSON object with a string 'type'")
    return message


class FrameReader:
    """Reads frames from a binary stream (a pipe or a socket file).

    ``next_header()`` returns ``(kind, length)``; then call ``read_payload``,
    ``readinto`` (pixel data straight into a buffer) or ``skip``. Bytes that do not form a
    frame raise FrameError once per run of garbage; the reader then looks for the next
    frame's magic, so a sender that wrote garbage can carry on with good frames.
    EOFError means the stream ended.
    """

    def __init__(self, stream: "ByteSource | BinaryIO") -> None:
        # Every stream read here (a pipe, a socket file) is buffered and has readinto, which
        # typing's BinaryIO does not declare.
        self._stream = cast("ByteSource", stream)
        self._pending = bytearray()
        self._in_garbage = False

    def _more(self) -> bool:
        read = getattr(self._stream, "read1", None) or self._stream.read
        data = read(65536)
        if not data:
            return False
        self._pending += data
        return True

    def _fill(self, count: int) -> None:
        while len(self._pending) < count:
            if not self._more():
                raise EOFError("the stream ended inside a frame")

    def _garbage(self, message: str) -> None:
        if not self._in_garbage:
            self._in_garbage = True
            raise FrameError(message)

    def next_header(self) -> "tuple[bytes, int]":
        while True:
            if not self._pending and not self._more():
                raise EOFError("the stream ended")
            prefix = bytes(self._pending[: len(MAGIC)])
            if not MAGIC.startswith(prefix):
                start = self._pending.find(MAGIC[:1], 1)
                shown = bytes(self._pending[:16])
                del self._pending[: start if start > 0 else len(self._pending)]
                self._garbage(f"expected a frame starting with {MAGIC!r}, got {shown!r}")
                continue
            self._fill(HEADER.size)
            magic, version, kind, length = HEADER.unpack(bytes(self._pending[: HEADER.size]))
            if magic != MAGIC:
                del self._pending[:1]
                continue  # loops back into the garbage branch
            problem = None
            if kind not in (KIND_JSON, KIND_DATA):
                problem = f"unknown frame kind {kind!r}"
            elif length > (MAX_JSON if kind == KIND_JSON else MAX_DATA):
                what = "JSON" if kind == KIND_JSON else "data"
                problem = f"a {what} frame of {length} bytes is larger than allowed"
            if problem is not None:
                del self._pending[:1]
                self._garbage(problem)
                continue
            del self._pending[: HEADER.size]
            self._in_garbage = False
            if version != PROTOCOL_VERSION:
                self.skip(length)
                raise FrameError(
                    f"protocol version {version} is not spoken here "
                    f"(this side speaks {PROTOCOL_VERSION})", version)
            return kind, length

    def readinto(self, target: Any) -> None:
        """Fill all of ``target`` (a writable buffer) with the next bytes."""
        view = memoryview(target).cast("B")
        have = min(len(self._pending), len(view))
        if have:
            view[:have] = self._pending[:have]
            del self._pending[:have]
        while have < len(view):
            got = self._stream.readinto(view[have:])
            if not got:
                raise EOFError("the stream ended inside a frame")
            have += got

    def read_payload(self, length: int) -> bytes:
        buffer = bytearray(length)
        self.readinto(buffer)
        return bytes(buffer)

    def skip(self, length: int) -> None:
        scratch = bytearray(min(length, 1 << 20) or 1)
        while length > 0:
            step = min(length, len(scratch))
            self.readinto(memoryview(scratch)[:step])
            length -= step

    def next_message(self) -> "dict[str, Any]":
        """The next JSON message; data frames met on the way raise FrameError."""
        kind, length = self.next_header()
        if kind != KIND_JSON:
            self.skip(length)
            raise FrameError("pixel data arrived where a message was expected")
        return decode_json(self.read_payload(length))


# ---------------------------------------------------------------------------------------
# The worker config: where it lives, reading and writing it
# ---------------------------------------------------------------------------------------

CONFIG_VERSION = 1
CONFIG_NAME = "worker.json"
INSTALL_HINT = ("run `realscale install {}` in the Python environment where realscale is "
                "installed")
"""What to do about a missing or unusable config; format it with the host's name."""


class ConfigError(Exception):
    """The worker config is missing or unusable; str() is one sentence saying what to do."""


def config_dir() -> str:
    """The per-user folder of realscale's settings (worker.json and install records):
    $REALSCALE_CONFIG_DIR, else the platform's per-user config folder."""
    override = os.environ.get("REALSCALE_CONFIG_DIR")
    if override:
        return override
    home = os.path.expanduser("~")
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or os.path.join(home, "AppData", "Roaming")
        return os.path.join(base, "realscale")
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "Application Support", "realscale")
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = xdg if os.path.isabs(xdg) else os.path.join(home, ".config")
    return os.path.join(base, "realscale")


def config_path() -> str:
    """Where the worker config is read from: $REALSCALE_WORKER_CONFIG, else
    ``worker.json`` in :func:`config_dir`."""
    return os.environ.get("REALSCALE_WORKER_CONFIG") or os.path.join(config_dir(), CONFIG_NAME)


def read_config(path: "str | None" = None, host: str = "gimp|krita|resolve") -> "dict[str, Any]":
    """The worker config as a dict, with its file as ``_path``; ConfigError when it is
    missing or unusable (``host`` only shapes the message)."""
    path = path or config_path()
    hint = INSTALL_HINT.format(host)
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except FileNotFoundError:
        raise ConfigError(
            f"The realscale worker is not set up (no {path}): {hint}.") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"The realscale worker config {path} cannot be read ({exc}): {hint}."
        ) from None
    if not isinstance(config, dict) or config.get("version") != CONFIG_VERSION:
        raise ConfigError(f"The realscale worker config {path} is not a version "
                          f"{CONFIG_VERSION} config: {hint}.")
    if not isinstance(config.get("python"), str) and not isinstance(config.get("address"), str):
        raise ConfigError(
            f"The realscale worker config {path} names neither a Python nor an address: {hint}.")
    config["_path"] = path
    return config


def write_config(config: "dict[str, Any]",
                 path: "str | os.PathLike[str] | None" = None) -> str:
    """Write the worker config (readable by this user only) whole or not at all; returns
    the text written. Raises OSError."""
    data = dict(config)
    data.pop("_path", None)
    data.setdefault("version", CONFIG_VERSION)
    return write_json(path or config_path(), data, private=True)


def worker_environment(extra_path: "list[str] | None" = None) -> "dict[str, str]":
    """The environment to start the worker's Python in: the host's, without what would break
    another Python: PYTHON* variables (Krita sets PYTHONPATH/PYTHONHOME for its own Python),
    Qt's variables, and an AppImage's library path; ``extra_path`` becomes PYTHONPATH."""
    env = {}
    appimage = "APPDIR" in os.environ or "APPIMAGE" in os.environ
    for key, value in os.environ.items():
        upper = key.upper()
        if upper.startswith(("PYTHON", "QT_", "QML", "QTWEBENGINE", "__PYVENV")):
            continue
        if appimage and upper in ("LD_LIBRARY_PATH", "LD_PRELOAD"):
            continue
        env[key] = value
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join(extra_path)
    return env


# ---------------------------------------------------------------------------------------
# Writing realscale's small files whole or not at all
# ---------------------------------------------------------------------------------------

_ATTEMPTS = 16
"""Fresh random names tried before giving up (a clash is astronomically unlikely)."""


def write_json(path: "str | os.PathLike[str]", data: "dict[str, Any]",
               private: bool = False) -> str:
    """Write ``data`` as indented JSON with :func:`write_text`; returns the text written."""
    text = json.dumps(data, indent=2) + "\n"
    write_text(path, text, private=private)
    return text


def write_text(path: "str | os.PathLike[str]", text: str, private: bool = False) -> None:
    """Replace ``path`` with ``text`` in one step, never through a file or link someone else
    put in the way; raises OSError (the file is then as it was).

    The text goes to a temporary file beside ``path``, created exclusively (``O_EXCL``, and
    ``O_NOFOLLOW`` where the system has it) under an unpredictable name with its final mode
    from the start (600 when ``private``, else 644 less the umask), and is then renamed over
    ``path``: a file or link already there is never opened, so it can neither keep its own
    mode around the text nor redirect it elsewhere."""
    target = os.fspath(path)
    _make_folder(os.path.dirname(os.path.abspath(target)))
    fd, temp = _create_temp(target, 0o600 if private else 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(temp, target)  # a link at ``path`` itself is replaced, never followed
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _make_folder(folder: str) -> None:
    parent = folder
    while True:
        if os.path.lexists(parent):
            if not os.path.isdir(parent):
                raise NotADirectoryError(20, f"{parent} is not a folder", parent)
            break
        up = os.path.dirname(parent)
        if up == parent:
            break
        parent = up
    os.makedirs(folder, exist_ok=True)


def _create_temp(path: str, mode: int) -> "tuple[int, str]":
    flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    folder, name = os.path.split(path)
    for _ in range(_ATTEMPTS):
        temp = os.path.join(folder, f".{name}.{secrets.token_hex(8)}.tmp")
        try:
            return os.open(temp, flags, mode), temp
        except FileExistsError:
            continue
    raise FileExistsError(17, "no free temporary name", folder)
