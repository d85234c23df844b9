"""Shared constants and helpers of the worker tests (fixtures are in conftest.py)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from realscale import wire as p

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "core"
DRIVER = Path(__file__).resolve().parent / "driver.py"
HOST_PYTHON = "/usr/bin/python3"
"""Debian's Python, without torch: what a host's embedded Python looks like."""
WORKER_PYTHON = sys.executable


def cpu_facts() -> tuple[str, bool, int]:
    """(model name, whether it has bfloat16 instructions, MemTotal in bytes), from /proc:
    what the worker's ``devices`` reply should say of this machine's CPU."""
    name, flags = "", set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not name:
            name = value.strip()
        if key.strip() == "flags" and not flags:
            flags = set(value.split())
    total = next(int(line.split()[1]) * 1024 for line in
                 Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:"))
    return name, bool(flags & {"avx512_bf16", "amx_bf16"}), total


def worker_env(**extra: str) -> dict[str, str]:
    """The environment to run ``python -m realscale`` from the source tree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(CORE)
    env.update(extra)
    return env


def worker_command(*args: str, nofile: int | None = None) -> list[str]:
    """``python -m realscale worker ARGS``, under ``prlimit --nofile`` when asked."""
    command = [WORKER_PYTHON, "-m", "realscale", "worker", *args]
    if nofile is not None:
        command = ["prlimit", f"--nofile={nofile}:{nofile}", *command]
    return command


WATCHDOG = 240.0
"""Seconds a test's worker may live: a worker that hangs a test is killed, so the test
fails (reading its end of the pipe) instead of waiting forever."""


class RawWorker:
    """A worker on pipes, spoken to frame by frame."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            worker_command(*args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=worker_env(),
        )
        assert self.process.stdout is not None and self.process.stdin is not None
        self.reader = p.FrameReader(self.process.stdout)
        self.stdin = self.process.stdin
        self.watchdog = threading.Timer(WATCHDOG, self.process.kill)
        self.watchdog.daemon = True
        self.watchdog.start()

    def send(self, raw: bytes) -> None:
        self.stdin.write(raw)
        self.stdin.flush()

    def message(self) -> dict[str, Any]:
        return self.reader.next_message()

    def until(self, mtype: str) -> dict[str, Any]:
        while True:
            message = self.message()
            if message["type"] == mtype:
                return message

    def read_data(self, size: int) -> bytes:
        out = bytearray(size)
        done = 0
        while done < size:
            kind, length = self.reader.next_header()
            assert kind == p.KIND_DATA
            self.reader.readinto(memoryview(out)[done : done + length])
            done += length
        return bytes(out)

    def finish(self) -> tuple[int, str]:
        """Close stdin; the exit code and stderr (killed after 60 s: a hang fails)."""
        with contextlib.suppress(OSError):
            self.stdin.close()
        try:
            code = self.process.wait(timeout=60)
        finally:
            self.watchdog.cancel()
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        assert self.process.stderr is not None and self.process.stdout is not None
        err = self.process.stderr.read().decode("utf-8", "replace")
        self.process.stderr.close()
        self.process.stdout.close()
        return code, err


class TcpWorker:
    """``realscale worker --listen 127.0.0.1:0`` with its address, token and pid; its stdin
    is a pipe, so closing it ends the worker."""

    def __init__(self, *args: str, nofile: int | None = None) -> None:
        self.process = subprocess.Popen(
            worker_command("--listen", "127.0.0.1:0", *args, nofile=nofile),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=worker_env(),
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"the worker did not start: {self.process.stderr.read()}"  # type: ignore[union-attr]
        started = json.loads(line)
        self.address: str = started["address"]
        self.token: str = started["token"]
        self.pid: int = started["pid"]
        host, port = self.address.split(":")
        self.endpoint = (host, int(port))

    def connect(self, *, auth: bool = True) -> Peer:
        peer = Peer(socket.create_connection(self.endpoint, timeout=60))
        if auth:
            peer.send(p.pack_json({"type": "auth", "token": self.token}))
            assert peer.message()["type"] == "hello"
        return peer

    def alive(self) -> bool:
        return self.process.poll() is None

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def sockets(self) -> int:
        """Open sockets of the worker (the listening one included)."""
        count = 0
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            with contextlib.suppress(OSError):
                count += os.readlink(f"/proc/{self.pid}/fd/{fd}").startswith("socket:")
        return count

    def idle(self) -> tuple[int, int]:
        """Threads and sockets of the worker with no connection open: once only the
        listening socket is left, the fewest threads seen over a second (a connection's
        thread ends just after its socket is closed)."""
        self.settle(1 << 30, 1)
        end = time.monotonic() + 1
        fewest = self.threads()
        while time.monotonic() < end:
            fewest = min(fewest, self.threads())
            time.sleep(0.02)
        return fewest, self.sockets()

    def settle(self, threads: int, sockets: int, within: float = 30) -> tuple[int, int]:
        """Wait (bounded) until the worker is back to ``threads`` and ``sockets``."""
        end = time.monotonic() + within
        while time.monotonic() < end:
            now = (self.threads(), self.sockets())
            if now[0] <= threads and now[1] <= sockets:
                return now
            time.sleep(0.1)
        return self.threads(), self.sockets()

    def finish(self) -> tuple[int, str]:
        """Close stdin (the worker ends); exit code and stderr."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            code = self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        err = self.process.stderr.read()  # type: ignore[union-attr]
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return code, err


class Peer:
    """A raw TCP connection to a worker, spoken to frame by frame."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader_file = sock.makefile("rb")
        self.reader = p.FrameReader(self.reader_file)

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def message(self) -> dict[str, Any]:
        return self.reader.next_message()

    def replies(self, until: float | None = None) -> list[dict[str, Any]]:
        """Every message until the worker closes the connection (or, at the latest, until
        the monotonic time ``until``: a connection the worker never closes fails a test
        instead of hanging it)."""
        until = time.monotonic() + 60 if until is None else until
        out = []
        try:
            while True:
                self.sock.settimeout(max(0.01, until - time.monotonic()))
                out.append(self.message())
        except (EOFError, OSError):
            pass
        return out

    def close(self) -> None:
        self.reader_file.close()  # the socket's descriptor lives until its file is closed
        self.sock.close()
