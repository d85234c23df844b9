"""TCP mode: 127.0.0.1 only, a per-session token, and the client reaching it by config."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from worker_support import worker_env

from helpers import rgb_crop
from realscale.worker import protocol as p


def _listen(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "realscale", "worker", *args], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=worker_env(),
    )


def test_only_127_0_0_1_is_accepted() -> None:
    worker = _listen("--listen", "0.0.0.0:0")
    _out, err = worker.communicate(timeout=60)
    assert worker.returncode == 2
    assert "only listens on 127.0.0.1" in err


def _talk(address: str, *messages: dict[str, Any]) -> list[dict[str, Any]]:
    host, port = address.split(":")
    replies = []
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        for message in messages:
            sock.sendall(p.pack_json(message))
        reader = p.FrameReader(sock.makefile("rb"))
        try:
            while True:
                replies.append(reader.next_message())
        except (EOFError, OSError):
            pass  # the worker closed the connection
    return replies


def test_tcp_worker_wants_its_token_and_serves_the_client(
    tmp_path: Path, drive: Callable[..., dict[str, Any]]
) -> None:
    config = tmp_path / "tcp.json"
    worker = _listen("--listen", "127.0.0.1:0", "--config-out", str(config))
    try:
        assert worker.stdout is not None
        line = json.loads(worker.stdout.readline())
        address, token = line["address"], line["token"]
        assert address.startswith("127.0.0.1:") and len(token) >= 32
        saved = json.loads(config.read_text())
        assert saved == {"version": 1, "address": address, "token": token}
        assert stat.S_IMODE(os.stat(config).st_mode) == 0o600

        for first in ({"type": "auth", "token": "wrong"}, {"type": "ping", "id": 1},
                      {"type": "auth"}):
            replies = _talk(address, first, {"type": "ping", "id": 2})
            assert [r["type"] for r in replies] == ["error"], replies
            assert replies[0]["kind"] == "auth" and "token" in replies[0]["message"]

        replies = []
        host, port = address.split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(p.pack_json({"type": "auth", "token": token})
                         + p.pack_json({"type": "ping", "id": 3}))
            reader = p.FrameReader(sock.makefile("rb"))
            replies = [reader.next_message(), reader.next_message()]
        assert [r["type"] for r in replies] == ["hello", "pong"]

        pixels = rgb_crop("OST_009.png", 16)
        source = tmp_path / "in.raw"
        source.write_bytes(pixels.tobytes())
        job = {"in": str(source), "out": str(tmp_path / "out.raw"), "width": 16, "height": 16,
               "channels": 3, "depth": "u8", "order": "rgb"}
        report = drive("upscale", {"config": str(config), "jobs": [job, job]})
        assert [j["width"] for j in report["jobs"]] == [64, 64]
        assert report["jobs"][0]["pid"] == worker.pid
        out = np.frombuffer((tmp_path / "out.raw").read_bytes(), np.uint8)
        assert out.size == 64 * 64 * 3 and out.std() > 10

        wrong = tmp_path / "wrong.json"
        wrong.write_text(json.dumps({**saved, "token": "not-it"}))
        report = drive("expect_error", {"config": str(wrong)})
        assert report["class"] == "WorkerError" and "wrong or missing token" in report["message"]
    finally:
        assert worker.stdin is not None
        worker.stdin.close()  # a piped stdin that closes ends a TCP worker too
        try:
            assert worker.wait(timeout=30) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
            for stream in (worker.stdout, worker.stderr):
                if stream is not None:
                    stream.close()
