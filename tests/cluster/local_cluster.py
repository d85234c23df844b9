"""A real two-machine Ray cluster on this machine, on 127.0.0.1 only: a head started with
``ray start --head`` and a second node with ``ray start --address``, one CPU and a 100 MB
object store each, no dashboard, no usage statistics.

Two of Ray's habits need handling to keep it on the loopback interface:

- Ray replaces 127.0.0.1 with the machine's outward address when a node starts (and binds
  every interface then). The head is told to stay local with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
  (then it binds 127.0.0.1 only); that setting refuses to start a second node, so the second
  node runs Ray's own ``ray start`` entry point with the outward-address lookup answering
  127.0.0.1. Drivers connect with the same setting as the head.
- ``ray stop`` ends every Ray process of the user, other people's clusters included: the
  cluster's processes carry a tag in their environment and only those are ended, by pid.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from helpers import REPO

HERE = Path(__file__).resolve().parent
TAG = "REALSCALE_TEST_RAY"
NODE_TAG = "REALSCALE_TEST_RAY_NODE"
SECOND_NODE = """
import sys
import ray._private.services as services
services.get_node_ip_address = lambda address=None: "127.0.0.1"
from ray.scripts.scripts import main
sys.argv = ["ray", *sys.argv[1:]]
main()
"""
OBJECT_STORE = str(100 * 10**6)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _client_port() -> list[str]:
    """Ray starts its client server (on the fixed port 10001) only where the client's
    dependencies are installed; there it gets a free port so clusters never collide."""
    if importlib.util.find_spec("grpc") is None:
        return []
    return ["--ray-client-server-port", str(free_port())]


class LocalCluster:
    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex
        # Short: Ray's socket paths below it must fit in 107 characters.
        self.temp = Path(tempfile.mkdtemp(prefix="rs-ray-"))
        self.scratch = self.temp / "tmp"
        self.scratch.mkdir()
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.ray = str(Path(sys.executable).with_name("ray"))

    def env(self, node: str | None = None) -> dict[str, str]:
        """The environment of the cluster's processes, and of drivers (node None)."""
        env = dict(os.environ, PYTHONPATH=str(REPO / "core"), RAY_USAGE_STATS_ENABLED="0",
                   RAY_AUTH_MODE="disabled",
                   TMPDIR=str(self.scratch), **{TAG: self.tag})
        env.pop("RAY_ADDRESS", None)
        if node is not None:
            env[NODE_TAG] = node
        if node != "second":
            env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        return env

    def drive(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run drive.py (a driver process joined to this cluster) to its end."""
        return subprocess.run([sys.executable, str(HERE / "drive.py"), *args], env=self.env(),
                              capture_output=True, text=True, timeout=timeout)

    def drive_background(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, str(HERE / "drive.py"), *args],
                                env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def start(self) -> None:
        common = ["--num-cpus", "1", "--num-gpus", "0", "--object-store-memory", OBJECT_STORE,
                  "--temp-dir", str(self.temp), "--disable-usage-stats"]
        head = dict(self.env("head"), RAY_health_check_period_ms="500",
                    RAY_health_check_timeout_ms="500", RAY_health_check_failure_threshold="4")
        self._run([self.ray, "start", "--head", "--node-ip-address", "127.0.0.1",
                   "--port", str(self.port), "--include-dashboard", "false",
                   *_client_port(),
                   "--dashboard-agent-listen-port", str(free_port()), *common], head)
        self.add_second_node()

    def add_second_node(self) -> None:
        self._run([sys.executable, "-c", SECOND_NODE, "start", "--address", self.address,
                   "--num-cpus", "1", "--num-gpus", "0", "--object-store-memory", OBJECT_STORE,
                   "--temp-dir", str(self.temp), "--disable-usage-stats",
                   "--dashboard-agent-listen-port", str(free_port())], self.env("second"))
        self.wait_for_nodes(2)

    def _run(self, command: list[str], env: dict[str, str]) -> None:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    def wait_for_nodes(self, count: int, timeout: float = 120) -> None:
        script = (f"import ray; ray.init(address={self.address!r}, logging_level='error');"
                  "print(sum(1 for n in ray.nodes() if n['Alive']))")
        deadline = time.monotonic() + timeout
        while True:
            done = subprocess.run([sys.executable, "-c", script], env=self.env(),
                                  capture_output=True, text=True, timeout=120)
            if done.returncode == 0 and done.stdout.strip() == str(count):
                return
            assert time.monotonic() < deadline, f"{count} nodes expected: {done.stdout}"
            time.sleep(1)

    def pids(self, node: str | None = None) -> list[int]:
        """The cluster's processes (of one node), found by their environment."""
        wanted = f"{TAG}={self.tag}".encode()
        node_mark = f"{NODE_TAG}={node}".encode() if node else None
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if wanted in environ and (node_mark is None or node_mark in environ):
                found.append(int(entry))
        return found

    def worker_pids(self) -> list[int]:
        """realscale's Ray workers (their process title is ray::Worker...)."""
        found = []
        for pid in self.pids():
            with contextlib.suppress(OSError):
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
                if title.startswith(b"ray::Worker"):
                    found.append(pid)
        return found

    def wait_for_workers(self, count: int, timeout: float = 60) -> list[int]:
        """The pids of ``count`` workers, once that many have started."""
        deadline = time.monotonic() + timeout
        while len(found := self.worker_pids()) < count:
            assert time.monotonic() < deadline, f"{count} Ray workers expected: {found}"
            time.sleep(0.1)
        return found

    def wait_for_no_workers(self, timeout: float = 30) -> None:
        """Ray ends actors asynchronously: a driver may exit a moment before its workers."""
        deadline = time.monotonic() + timeout
        while self.worker_pids():
            assert time.monotonic() < deadline, "the Ray workers kept running"
            time.sleep(0.2)

    def kill(self, pids: list[int], sig: int = signal.SIGKILL) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def remove_second_node(self) -> list[int]:
        """The second machine leaves at once: every process of its node is killed (raylet,
        object store, workers). Returns their pids."""
        pids = self.pids("second")
        self.kill(pids)
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in pids):
            assert time.monotonic() < deadline, "the second node's processes did not end"
            time.sleep(0.2)
        return pids

    def stop(self) -> None:
        pids = self.pids()
        self.kill(pids, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.2)
        self.kill([pid for pid in pids if _alive(pid)])
        shutil.rmtree(self.temp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
