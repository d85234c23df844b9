"""A real install of the torch-free engine from the plug-in's wheel, then a real worker
through realscale_client; cancel during a real pip; a pip that cannot reach its index."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from helpers import assert_close_u8, rgb_crop


def _pids_using(folder: Path) -> list[int]:
    """Processes whose command line names ``folder`` (pip, the venv, the worker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(folder) in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_install_reports_phases_and_writes_the_config_last(engine: dict) -> None:
    result = engine["result"]
    assert result["ok"], result["message"]
    assert "realscale" in result["message"] and engine["folder"] in result["message"]
    phases = [p["phase"] for p in engine["progress"]]
    order = ["python", "environment", "download", "install", "check", "done"]
    assert [p for p in order if p in phases] == order, phases
    assert phases == sorted(phases, key=order.index), "phases went backwards"
    fractions = [p["fraction"] for p in engine["progress"] if p["fraction"] is not None]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    polled = engine["polled"]  # a dialog polling sees the same story, in fewer steps
    assert len(polled) > 5 and polled[-1]["phase"] == "done"
    assert all(p in engine["progress"] or p == polled[0] for p in polled)
    assert any(p["message"].startswith("onnxruntime ") or "onnxruntime" in p["message"]
               for p in engine["progress"]), "pip's downloads were not reported"
    # the host-like Python never imported numpy, torch or realscale
    assert engine["modules"] == []
    config_file = Path(engine["config"])
    config = json.loads(config_file.read_text())
    (env,) = Path(engine["folder"]).glob("env-*")
    assert config == {"version": 1, "python": str(env / "bin" / "python")}
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    record = json.loads((Path(engine["folder"]) / "engine.json").read_text())
    assert record["env"] == env.name and record["backend"] == "cpu"
    log = Path(result["log"])
    assert log.is_file() and "Successfully installed" in log.read_text()
    assert any(env.glob("lib/python3*/site-packages/onnxruntime"))
    assert not any(env.glob("lib/python3*/site-packages/torch")), "the CPU engine has no torch"


def test_new_config_starts_a_worker_that_upscales(engine: dict, rs: ModuleType) -> None:
    client_module = rs._client
    client = client_module.WorkerClient(config=engine["config"], host="gimp")
    try:
        status = client.status()
        assert client.pid is not None and status["realscale"] == rs.wheel_version(
            rs.bundled_wheel())
        pixels = rgb_crop("0014.jpg", 24, 20, 20)
        result = client.upscale(pixels.tobytes(), 24, 24, client_module.PixelLayout(3),
                                model="realesr-animevideov3", precision="fp32", scale=4)
    finally:
        client.close()
    assert (result.width, result.height) == (96, 96)
    got = np.frombuffer(result.data, np.uint8).reshape(96, 96, 3)
    from realscale import Upscaler

    expected = Upscaler("realesr-animevideov3", device="cpu", precision="fp32",
                        backend="onnxruntime").upscale(pixels)
    assert_close_u8(got, expected, max_diff=2, p999=1)


def test_engine_info_names_version_place_backend_and_device(
        engine: dict, plugin_dir: Path, rs: ModuleType, driver: Callable[..., dict]) -> None:
    info = driver(engine["env"], "info")["info"]
    assert info["managed"] and info["folder"] == engine["folder"]
    assert info["version"] == rs.wheel_version(rs.bundled_wheel())
    assert info["protocol"] == rs._client.PROTOCOL_VERSION and info["backend"] == "cpu"
    assert info["device"] and not info["device"].startswith("nothing")
    assert not info["update_offered"]
    assert 150e6 < info["size_bytes"] < 600e6
    assert info["version"] in info["message"] and engine["folder"] in info["message"]


def test_cancel_during_pip_leaves_no_environment_and_no_config(
        rs: ModuleType, user: Path) -> None:
    folder = user / "engine"
    plan = rs.detect(str(folder))
    seen = threading.Event()
    pids: list[int] = []

    def on_progress(progress: Any) -> None:
        # pip's own output: pip runs, in the middle of its downloads
        if progress.message.startswith("Collecting") and not seen.is_set():
            pids.extend(_pids_using(folder))
            seen.set()

    job = rs.install(plan, on_progress=on_progress)
    job.start()
    assert seen.wait(300), "pip never started"
    assert pids, "no pip process was running"
    second = rs.install(plan).run()  # another host offering the setup at the same time
    assert not second.ok and second.message.startswith(
        f"Another setup of the engine in {folder} is running (process {os.getpid()});")
    job.cancel()
    result = job.wait(60)
    assert result is not None and result.cancelled and not result.ok
    assert result.message == "The install was cancelled."
    assert not folder.exists()
    assert not Path(os.environ["REALSCALE_WORKER_CONFIG"]).exists()
    assert not _pids_using(folder), "pip or a child of it is still running"
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in (
            Path(f"/proc/{pid}/status").read_text().lower())


def test_pip_that_cannot_reach_its_index_says_so_and_keeps_a_log(
        rs: ModuleType, user: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: every connection is refused
    for key in list(os.environ):
        if key.startswith("PIP_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no configured mirrors or links
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{port}/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    folder = user / "engine"
    job = rs.install(rs.detect(str(folder)))
    result = job.run()
    assert not result.ok and not result.cancelled
    assert result.message.startswith("pip could not reach the package index")
    assert result.message.count(". ") <= 2 and result.message.endswith(f"{result.log}.")
    log = Path(result.log)
    assert log.is_file() and f"127.0.0.1:{port}" in log.read_text()
    assert log.parent == user / "data" / "realscale" / "logs"
    assert not folder.exists()
    assert not Path(os.environ["REALSCALE_WORKER_CONFIG"]).exists()


def test_a_lock_whose_process_ended_is_taken_over(rs: ModuleType, tmp_path: Path) -> None:
    import subprocess

    ended = subprocess.Popen(["true"])
    ended.wait()
    lock = tmp_path / rs.LOCK
    lock.write_text(json.dumps({"pid": ended.pid}))
    assert rs._lock_holder(str(lock)) is None
    with rs._folder_lock(str(tmp_path)):
        assert json.loads(lock.read_text()) == {"pid": os.getpid()}
        assert rs._lock_holder(str(lock)) == os.getpid()
    assert not lock.exists()
