"""TCP mode: 127.0.0.1 only, a per-session token, and the client reaching it by config."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from worker_support import TcpWorker, worker_env

from helpers import rgb_crop
from realscale import wire as p


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


# -- limits: nothing a peer does ends the worker or holds it forever (issue 12) ---------


def _config(tmp_path: Path, worker: TcpWorker) -> Path:
    path = tmp_path / "tcp-worker.json"
    path.write_text(json.dumps({"version": 1, "address": worker.address, "token": worker.token}))
    return path


def _job(tmp_path: Path, size: int = 16) -> dict[str, Any]:
    source = tmp_path / f"in{size}.raw"
    source.write_bytes(rgb_crop("OST_009.png", size).tobytes())
    return {"in": str(source), "out": str(tmp_path / f"out{size}.raw"), "width": size,
            "height": size, "channels": 3, "depth": "u8", "order": "rgb"}


def test_idle_unauthenticated_connections_cannot_make_the_worker_quit(
    tmp_path: Path, drive: Callable[..., dict[str, Any]]
) -> None:
    # 100 silent connections against a worker limited to 64 descriptors: it used to hold a
    # thread per connection forever and, once accept() failed, exit 0 without a word.
    # (The default auth time-out, 10 s: the very command line that used to fail.)
    worker = TcpWorker(nofile=64)
    try:
        silent = [worker.connect(auth=False) for _ in range(100)]
        assert worker.alive()
        until = time.monotonic() + 60
        answers = [peer.replies(until) for peer in silent]  # each ends when the worker closes it
        kinds = [[reply["kind"] for reply in answer] for answer in answers]
        assert all(kind in (["busy"], ["auth"]) for kind in kinds), kinds
        assert ["busy"] in kinds, "the connection cap answered the excess at once"
        assert ["auth"] in kinds, "the connections it held were closed after the time-out"
        auth = next(a[0] for a in answers if a[0]["kind"] == "auth")
        assert "no token came within 10 seconds" in auth["message"]
        busy = next(a[0] for a in answers if a[0]["kind"] == "busy")
        assert "already serves 32 connections" in busy["message"]
        for peer in silent:
            peer.close()
        assert worker.alive()

        report = drive("upscale", {"config": str(_config(tmp_path, worker)),
                                   "jobs": [_job(tmp_path)]})
        assert report["jobs"][0]["width"] == 64 and report["jobs"][0]["pid"] == worker.pid
    finally:
        code, err = worker.finish()
    assert code == 0, err


def test_running_out_of_descriptors_does_not_end_the_worker(tmp_path: Path) -> None:
    # 20 descriptors run out before the connection cap (32): accept() fails with EMFILE,
    # the worker says so on stderr once and goes on when time-outs free descriptors.
    worker = TcpWorker("--auth-timeout", "2", nofile=20)
    try:
        silent = []
        for _ in range(30):
            try:
                silent.append(worker.connect(auth=False))
            except OSError:
                break  # the backlog is full as well: enough
        assert len(silent) >= 20
        until = time.monotonic() + 60
        answers = [peer.replies(until) for peer in silent]
        assert worker.alive()
        assert all([r["kind"] for r in answer] in (["auth"], []) for answer in answers)
        for peer in silent:
            peer.close()
        peer = worker.connect()
        peer.send(p.pack_json({"type": "ping", "id": 1}))
        assert peer.message() == {"type": "pong", "id": 1}
        peer.close()
    finally:
        code, err = worker.finish()
    assert code == 0, err
    assert "cannot accept a connection now (Too many open files); retrying" in err
    assert "Traceback" not in err


def test_deep_json_over_tcp_is_an_error_and_the_connection_goes_on() -> None:
    worker = TcpWorker()
    try:
        deep = b'{"type":"ping","id":' + b"[" * 990 + b"]" * 990 + b"}"
        frame = p.HEADER.pack(p.MAGIC, p.PROTOCOL_VERSION, p.KIND_JSON, len(deep)) + deep
        first = worker.connect(auth=False)
        first.send(frame)  # instead of auth
        assert [r["kind"] for r in first.replies()] == ["auth"]
        peer = worker.connect()
        peer.send(frame + p.pack_json({"type": "ping", "id": 2}))
        error = peer.message()
        assert error["kind"] == "protocol" and "991 deep" in error["message"]
        assert peer.message() == {"type": "pong", "id": 2}
        peer.close()
        assert worker.alive()
    finally:
        code, err = worker.finish()
    assert code == 0, err
    assert "Traceback" not in err


def test_an_idle_connection_is_closed_and_the_client_reconnects(
    tmp_path: Path, drive: Callable[..., dict[str, Any]]
) -> None:
    worker = TcpWorker("--idle-timeout", "2")
    try:
        peer = worker.connect()
        replies = peer.replies()
        assert [(r["type"], r["kind"], r["id"]) for r in replies] == [("error", "timeout", None)]
        assert "after 2 seconds without a request" in replies[0]["message"]
        peer.close()

        report = drive("idle", {"config": str(_config(tmp_path, worker)), "sleep": 4})
        assert report["ended"] and report["new_connection"], report
        assert report["counts"][0] == report["counts"][1] > 0
        assert report["pid"] == worker.pid
    finally:
        code, err = worker.finish()
    assert code == 0, err


def test_client_close_over_tcp_leaks_nothing_on_either_side(
    tmp_path: Path, drive: Callable[..., dict[str, Any]]
) -> None:
    worker = TcpWorker()
    try:
        # The baseline once the worker is up and has served (and closed) one connection:
        # only the listening socket is open then.
        peer = worker.connect()
        peer.close()
        baseline = worker.idle()
        assert baseline[1] == 1
        report = drive("close_rounds", {"config": str(_config(tmp_path, worker)), "rounds": 5})
        assert report["pids"] == [worker.pid] * 5
        assert report["after"] == report["before"], "the client's threads and sockets"
        assert worker.settle(*baseline) == baseline, "the worker's threads and sockets"
    finally:
        code, err = worker.finish()
    assert code == 0, err


def test_a_port_in_use_or_an_unwritable_config_out_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        worker = _listen("--listen", f"127.0.0.1:{port}")
        _out, err = worker.communicate(timeout=60)
    assert worker.returncode == 2
    assert err.splitlines() == [err.strip()], err
    assert err.startswith(f"realscale: cannot listen on 127.0.0.1:{port} (Address already in use)")

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the config's folder should be")
    target = blocker / "worker.json"
    worker = _listen("--listen", "127.0.0.1:0", "--config-out", str(target))
    _out, err = worker.communicate(timeout=60)
    assert worker.returncode == 2
    assert err.splitlines() == [err.strip()], err
    assert err.startswith("realscale: ") and str(target) in err
