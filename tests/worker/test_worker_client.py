"""The host client under Debian's Python driving a real worker: results, progress, cancel,
a killed worker, a missing install."""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from worker_support import CORE, WORKER_PYTHON, TcpWorker, cpu_facts

from helpers import rgb_crop
from realscale import Upscaler
from realscale import wire as p

MODEL = "realesr-animevideov3"
TILE = 16
Drive = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def upscaler() -> Upscaler:
    # What the worker builds for device/precision "auto", with the tile the requests ask for.
    return Upscaler(MODEL, device="auto", precision="auto", tile=TILE)


def _job(tmp_path: Path, name: str, pixels: np.ndarray, depth: str, order: str) -> dict:
    source = tmp_path / f"{name}.in"
    source.write_bytes(np.ascontiguousarray(pixels).tobytes())
    height, width = pixels.shape[:2]
    channels = pixels.shape[2] if pixels.ndim == 3 else 1
    return {"in": str(source), "out": str(tmp_path / f"{name}.out"), "width": width,
            "height": height, "channels": channels, "depth": depth, "order": order}


def _read(job: dict, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(Path(job["out"]).read_bytes(), dtype=dtype).reshape(shape)


def test_results_match_the_upscaler_byte_for_byte(
    drive: Drive, worker_config: Path, tmp_path: Path, upscaler: Upscaler
) -> None:
    photo = rgb_crop("OST_009.png", 24, 100, 100)
    other = rgb_crop("0014.jpg", 24, 40, 40)
    # RGBA with a real, partly translucent alpha, handed over as Krita does: B, G, R, A.
    rgba = np.concatenate([photo, 255 - other[..., 1:2] // 2], axis=2)
    bgra = rgba[..., [2, 1, 0, 3]]
    # 16-bit grey with detail below the 8-bit steps; float grey in [0, 1].
    grey16 = photo[..., 1].astype(np.uint16) * 257 + other[..., 0] // 4
    grey32 = (other[..., 2].astype(np.float32) / 255.0)[..., None]
    rgb16f = (photo.astype(np.float32) / 255.0).astype(np.float16)
    jobs = [
        _job(tmp_path, "bgra8", bgra, "u8", "bgr"),
        _job(tmp_path, "grey16", grey16[..., None], "u16", "rgb"),
        _job(tmp_path, "grey32", grey32, "f32", "rgb"),
        _job(tmp_path, "rgb16f", rgb16f[..., ::-1], "f16", "bgr"),
    ]
    report = drive("upscale", {"config": str(worker_config), "jobs": jobs})

    assert {job["type"] for job in report["jobs"]} == {"bytearray"}
    assert len({job["pid"] for job in report["jobs"]}) == 1, "one worker serves every call"
    for job in report["jobs"]:
        assert (job["width"], job["height"]) == (96, 96)
        events = job["events"]
        assert len(events) > 1 and events[-1][0] == events[-1][1]
        assert [done for done, _ in events] == list(range(1, len(events) + 1))

    expected = upscaler.upscale(rgba)[..., [2, 1, 0, 3]]
    got = _read(jobs[0], "u1", (96, 96, 4))
    assert np.array_equal(got, expected)
    assert int((got[..., 3] < 255).sum()) > 0, "the alpha went through"

    expected16 = upscaler.upscale(grey16[..., None])
    got16 = _read(jobs[1], "<u2", (96, 96, 1))
    assert np.array_equal(got16, expected16)
    assert np.count_nonzero(got16 % 257) > 0, "16-bit, not 8-bit data widened"

    assert np.array_equal(_read(jobs[2], "<f4", (96, 96, 1)), upscaler.upscale(grey32))

    expected_half = upscaler.upscale(rgb16f.astype(np.float32)).astype(np.float16)
    assert np.array_equal(_read(jobs[3], "<f2", (96, 96, 3)), expected_half[..., ::-1])


def test_backend_travels_to_the_worker(drive: Drive, worker_config: Path, tmp_path: Path) -> None:
    """A host can ask for ONNX Runtime: the worker keeps that Upscaler apart from the torch
    one, and its result is torch's within 1/255."""
    pytest.importorskip("onnxruntime")
    photo = rgb_crop("OST_009.png", 24, 100, 100)
    jobs = [dict(_job(tmp_path, "ort", photo, "u8", "rgb"), backend="onnxruntime"),
            dict(_job(tmp_path, "torch", photo, "u8", "rgb"), backend="torch")]
    report = drive("upscale", {"config": str(worker_config), "jobs": jobs})
    assert sorted(entry["backend"] for entry in report["loaded"]) == ["onnxruntime", "torch"]
    ort_out = _read(jobs[0], "u1", (96, 96, 3)).astype(int)
    torch_out = Upscaler(MODEL, device="cpu", precision="fp32", tile=TILE).upscale(photo)
    diff = np.abs(ort_out - torch_out.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99


def test_cancel_stops_the_request_and_the_worker_keeps_serving(
    drive: Drive, worker_config: Path, tmp_path: Path
) -> None:
    big = _job(tmp_path, "big", rgb_crop("OST_009.png", 256), "u8", "rgb")
    small = _job(tmp_path, "small", rgb_crop("OST_009.png", 20), "u8", "rgb")
    report = drive("cancel", {"config": str(worker_config), "big": big, "small": small})

    assert report["class"] == "WorkerCancelled", report
    events = report["events"]
    total = events[0][1]
    assert total > 100
    # Cancelled right after the first tile: the tiler checks before every tile, so the worker
    # stops as soon as the message is through the pipe, far from the end.
    assert events[-1][0] <= total // 10, events[-5:]
    assert report["after"] == {"width": 80, "pid": report["pid"]}


def test_a_killed_worker_gives_a_clear_error_and_restarts(
    drive: Drive, worker_config: Path, tmp_path: Path
) -> None:
    big = _job(tmp_path, "big", rgb_crop("OST_009.png", 256), "u8", "rgb")
    small = _job(tmp_path, "small", rgb_crop("OST_009.png", 20), "u8", "rgb")
    report = drive("kill", {"config": str(worker_config), "big": big, "small": small})

    assert report["class"] == "WorkerCrashed", report
    assert "killed by SIGKILL" in report["message"]
    assert "next attempt starts a new one" in report["message"]
    assert report["after"]["width"] == 80
    assert report["after"]["pid"] != report["first_pid"]


def test_missing_config_names_realscale_install(
    drive: Drive, tmp_path: Path, host_python: str
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    report = drive("expect_error", {}, env=env)
    assert report["class"] == "WorkerNotInstalled"
    assert "realscale install gimp" in report["message"]
    assert str(home / ".config" / "realscale" / "worker.json") in report["message"]

    gone = tmp_path / "gone.json"
    gone.write_text(json.dumps({"version": 1, "python": str(tmp_path / "no" / "python")}))
    report = drive("expect_error", {"config": str(gone)})
    assert report["class"] == "WorkerNotInstalled"
    assert "does not exist" in report["message"] and "realscale install" in report["message"]

    # An interpreter without realscale (here: the host's own) is "not installed" too.
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"version": 1, "python": host_python}))
    report = drive("expect_error", {"config": str(bare)})
    assert report["class"] == "WorkerNotInstalled", report
    assert "has no realscale" in report["message"]


def test_models_and_bad_requests_come_back_as_worker_errors(
    drive: Drive, worker_config: Path, tmp_path: Path
) -> None:
    report = drive("models", {"config": str(worker_config)})
    names = {m["name"]: m for m in report["models"]}
    assert names[MODEL]["embedded"] is True and names[MODEL]["scale"] == 4
    assert sum(m["default"] for m in report["models"]) == 1

    job = _job(tmp_path, "tiny", rgb_crop("OST_009.png", 8), "u8", "rgb")
    job["tile"] = 3
    report = drive("expect_error", {"config": str(worker_config), "job": job})
    assert report["class"] == "WorkerError"
    assert "'tile' must be \"auto\" or a whole number of at least 16" in report["message"]


def test_a_stopped_worker_is_ended_after_a_cancel_and_the_next_call_starts_anew(
    drive: Drive, worker_config: Path, tmp_path: Path
) -> None:
    # SIGSTOP mid-upscale: the host's cancel goes unanswered. upscale() used to wait until
    # the worker resumed (a frozen GIMP or Krita); now it gives up after cancel_timeout,
    # kills the worker it started and says so.
    big = _job(tmp_path, "big", rgb_crop("OST_009.png", 256), "u8", "rgb")
    small = _job(tmp_path, "small", rgb_crop("OST_009.png", 20), "u8", "rgb")
    report = drive("hang", {"config": str(worker_config), "big": big, "small": small,
                            "cancel_timeout": 2})
    assert report["class"] == "WorkerCancelled", report
    assert "did not stop within 2 seconds, so it was ended" in report["message"]
    assert report["stopped_pid_exists"] is False, "the stopped worker was killed and reaped"
    assert report["after"]["width"] == 80
    assert report["after"]["pid"] != report["stopped_pid"]


def test_a_stopped_tcp_worker_costs_only_the_connection(drive: Drive, tmp_path: Path) -> None:
    # A TCP worker is not the client's to kill: the connection is closed, the call ends,
    # and once the worker runs again the next call reaches it on a new connection.
    worker = TcpWorker()
    try:
        config = tmp_path / "tcp.json"
        config.write_text(json.dumps({"version": 1, "address": worker.address,
                                      "token": worker.token}))
        big = _job(tmp_path, "big", rgb_crop("OST_009.png", 256), "u8", "rgb")
        small = _job(tmp_path, "small", rgb_crop("OST_009.png", 20), "u8", "rgb")
        report = drive("hang", {"config": str(config), "big": big, "small": small,
                                "cancel_timeout": 2, "resume": True})
        assert report["class"] == "WorkerCancelled", report
        assert f"the realscale worker at {worker.address} did not answer within 2 seconds" in (
            report["message"])
        assert report["stopped_pid"] == worker.pid and report["stopped_pid_exists"] is True
        assert report["after"] == {"width": 80, "pid": worker.pid}
    finally:
        code, err = worker.finish()
    assert code == 0, err


def test_devices_and_measure_through_the_client(drive: Drive, worker_config: Path) -> None:
    """What a host's dialog asks, from Debian's Python through the client: the devices, a
    measured speed in the precision it ran, the errors a dialog can meet, and a cancel."""
    report = drive("dialog", {"config": str(worker_config), "model": MODEL})
    name, has_bf16, total = cpu_facts()
    [cpu] = report["devices"]  # no GPU on this machine
    assert (cpu["name"], cpu["kind"]) == ("cpu", "cpu")
    assert cpu["label"] == f"CPU ({name}, {len(os.sched_getaffinity(0))} cores)"
    assert cpu["total_bytes"] == total and 0 < cpu["free_bytes"] <= total
    assert cpu["fast"] == ("bf16" if has_bf16 else None)

    auto, exact = report["auto"], report["exact"]
    assert (auto["type"], auto["model"], auto["device"], auto["scale"]) == (
        "measure", MODEL, "cpu", 4)
    assert auto["precision"] == ("bf16" if has_bf16 else "fp32")  # auto, resolved
    assert (exact["device"], exact["precision"], exact["scale"]) == ("cpu", "fp32", 4)
    for reply in (auto, exact):
        assert isinstance(reply["pixels_per_second"], float) and reply["pixels_per_second"] > 0
        assert isinstance(reply["seconds_fixed"], float) and reply["seconds_fixed"] >= 0

    errors = report["errors"]
    assert errors["unknown"]["class"] == "WorkerError" and errors["unknown"]["kind"] == "model"
    assert "did you mean 'realesrgan-x4plus'" in errors["unknown"]["message"]
    assert errors["half"] == {
        "class": "WorkerError", "kind": "bad_request",
        "message": "Bad measure request: 'precision' must be one of auto, fp32, fp16, bf16, "
                   "got 'half'."}
    assert (errors["fp16"]["class"], errors["fp16"]["kind"]) == ("WorkerError", "error")
    assert "fp16 is not supported on the CPU" in errors["fp16"]["message"]
    assert (errors["device"]["class"], errors["device"]["kind"]) == ("WorkerError", "error")
    assert "tpu" in errors["device"]["message"]

    # The worker's own answer to the cancel (the client's would say "request"): the measure
    # stopped there, and the same worker answers the next calls, idle.
    assert report["cancelled"] == {"class": "WorkerCancelled", "kind": "cancelled",
                                   "message": "The speed measurement was cancelled."}
    assert report["after"] == {"busy": False, "same_pid": True, "devices": 1}


def test_the_client_spells_auto_tile_on_the_wire(drive: Drive, tmp_path: Path) -> None:
    """The client's default tile, and the 0 of integer widgets, go out as "auto": its
    requests as the real worker read them (tee'd from its stdin)."""
    wire_log = tmp_path / "requests.bin"
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\ntee "{wire_log}" | "{WORKER_PYTHON}" "$@"\n')
    python.chmod(0o755)
    config = tmp_path / "tee.json"
    config.write_text(json.dumps({"version": 1, "python": str(python),
                                  "pythonpath": [str(CORE)]}))
    photo = rgb_crop("OST_009.png", 20)
    jobs = [dict(_job(tmp_path, f"t{n}", photo, "u8", "rgb"), tile=tile)
            for n, tile in enumerate(("default", 0, 32, "auto"))]
    report = drive("upscale", {"config": str(config), "jobs": jobs})
    assert [job["width"] for job in report["jobs"]] == [80] * 4
    reader = p.FrameReader(io.BytesIO(wire_log.read_bytes()))
    tiles = []
    while True:
        try:
            kind, length = reader.next_header()
        except EOFError:
            break
        if kind == p.KIND_DATA:
            reader.skip(length)
            continue
        message = p.decode_json(reader.read_payload(length))
        if message["type"] == "upscale":
            tiles.append(message["tile"])
    assert tiles == ["auto", "auto", 32, "auto"]


def test_an_engine_of_another_protocol_is_named_as_such(drive: Drive, tmp_path: Path) -> None:
    """An engine set up by an older or newer plug-in frames its messages in its own protocol:
    the client says so (the hosts then offer the update), not that the worker stopped."""
    core = tmp_path / "core"
    shutil.copytree(CORE / "realscale", core / "realscale",
                    ignore=shutil.ignore_patterns("__pycache__"))
    wire_file = core / "realscale" / "wire.py"
    source = wire_file.read_text(encoding="utf-8")
    assert f"PROTOCOL_VERSION = {p.PROTOCOL_VERSION}\n" in source
    wire_file.write_text(source.replace(f"PROTOCOL_VERSION = {p.PROTOCOL_VERSION}\n",
                                        f"PROTOCOL_VERSION = {p.PROTOCOL_VERSION + 1}\n"),
                         encoding="utf-8")
    config = tmp_path / "other.json"
    config.write_text(json.dumps({"version": 1, "python": WORKER_PYTHON,
                                  "pythonpath": [str(core)]}))
    report = drive("expect_error", {"config": str(config)})
    assert report["class"] == "WorkerProtocolMismatch", report
    assert (f"speaks protocol {p.PROTOCOL_VERSION + 1} but this plug-in speaks "
            f"{p.PROTOCOL_VERSION}") in report["message"], report
    assert "realscale install gimp" in report["message"]
