"""What the hosts' dialogs ask a real worker (issue 17): models by purpose with their download
size, the devices with their memory and fast precision, and a measured speed; and the tile
spelled "auto" on the wire."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from worker_support import REPO, RawWorker, cpu_facts

from helpers import rgb_crop
from realscale import wire as p

MODEL = "realesr-animevideov3"  # the compact model: fast on a CPU
PURPOSES = {"photo": "Photos and real-world images", "anime": "Anime and illustrations",
            "video": "Video frames, fast"}


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RawWorker]:
    # An empty download cache: every catalogue model without embedded weights is "to download".
    monkeypatch.setenv("REALSCALE_CACHE_DIR", str(tmp_path / "cache"))
    started = RawWorker()
    assert started.message()["type"] == "hello"
    yield started
    code, err = started.finish()
    assert code == 0, err


def ask(worker: RawWorker, request: dict[str, Any]) -> dict[str, Any]:
    worker.send(p.pack_json(request))
    return worker.message()


def catalogue_file() -> list[dict[str, Any]]:
    return json.loads((REPO / "models" / "catalogue.json").read_text())["models"]


def test_models_carry_purpose_and_download_size(worker: RawWorker) -> None:
    reply = ask(worker, {"type": "models", "id": 1})
    assert (reply["type"], reply["id"]) == ("models", 1)
    rows = {row["name"]: row for row in reply["models"]}
    for entry in catalogue_file():
        row = rows[entry["name"]]
        assert row["purpose"] in PURPOSES, row
        assert row["purpose_label"] == PURPOSES[row["purpose"]]
        urls = [source for source in entry["sources"] if source["kind"] == "url"]
        embedded = any(source["kind"] == "package" for source in entry["sources"])
        assert row["available"] is embedded
        if embedded:
            assert "download_bytes" not in row
        else:
            # null where the catalogue gives no size (then a dialog says "a download").
            assert row["download_bytes"] == urls[0].get("size")
    sized = [row for row in rows.values() if row.get("download_bytes")]
    assert len(sized) >= 3 and min(row["download_bytes"] for row in sized) > 1_000_000
    assert rows[MODEL]["purpose"] == "video"
    assert rows["realesrgan-x4plus"]["purpose"] == "photo"
    assert rows["realesrgan-x4plus-anime"]["purpose"] == "anime"


def test_devices_on_this_cpu_machine(worker: RawWorker) -> None:
    reply = ask(worker, {"type": "devices", "id": "d"})
    assert (reply["type"], reply["id"]) == ("devices", "d")
    # No GPU here (torch is the CPU build): the CPU alone.
    [cpu] = reply["devices"]
    name, has_bf16, total = cpu_facts()
    cores = len(os.sched_getaffinity(0))
    assert cpu["name"] == "cpu" and cpu["kind"] == "cpu"
    assert cpu["label"] == f"CPU ({name}, {cores} cores)"
    assert cpu["total_bytes"] == total
    assert 0 < cpu["free_bytes"] <= total
    assert cpu["fast"] == ("bf16" if has_bf16 else None)


def test_devices_follow_the_bf16_override(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    for forced, fast in (("0", None), ("1", "bf16")):
        monkeypatch.setenv("REALSCALE_CPU_BF16", forced)
        worker = RawWorker()
        assert worker.message()["type"] == "hello"
        [cpu] = ask(worker, {"type": "devices", "id": 1})["devices"]
        assert cpu["fast"] == fast
        code, err = worker.finish()
        assert code == 0, err


def test_measure_gives_a_rate_and_the_precision_it_ran_in(worker: RawWorker) -> None:
    has_bf16 = cpu_facts()[1]
    reply = ask(worker, {"type": "measure", "id": 5, "model": MODEL, "device": "auto",
                         "precision": "auto"})
    assert reply["type"] == "measure", reply
    assert (reply["id"], reply["model"], reply["device"], reply["scale"]) == (5, MODEL, "cpu", 4)
    # auto: bf16 where the CPU has it (the compact model stays accurate in bf16), else fp32.
    assert reply["precision"] == ("bf16" if has_bf16 else "fp32")
    assert isinstance(reply["pixels_per_second"], float) and reply["pixels_per_second"] > 0
    assert isinstance(reply["seconds_fixed"], float) and reply["seconds_fixed"] >= 0

    exact = ask(worker, {"type": "measure", "id": 6, "model": MODEL, "device": "cpu",
                         "precision": "fp32"})
    assert (exact["type"], exact["precision"]) == ("measure", "fp32")
    assert exact["pixels_per_second"] > 0
    status = ask(worker, {"type": "status", "id": 7})
    assert {(row["model"], row["precision"]) for row in status["loaded"]} >= {
        (MODEL, "auto"), (MODEL, "fp32")}


def test_measure_mistakes_are_errors_and_the_worker_goes_on(worker: RawWorker) -> None:
    unknown = ask(worker, {"type": "measure", "id": 1, "model": "realesrgan-x4plu"})
    assert (unknown["type"], unknown["kind"]) == ("error", "model")
    assert "did you mean 'realesrgan-x4plus'" in unknown["message"]
    fp16 = ask(worker, {"type": "measure", "id": 2, "model": MODEL, "device": "cpu",
                        "precision": "fp16"})
    assert (fp16["type"], fp16["id"], fp16["kind"]) == ("error", 2, "error")
    assert "fp16 is not supported on the CPU" in fp16["message"]
    odd = ask(worker, {"type": "measure", "id": 3, "model": MODEL, "precision": "half"})
    assert (odd["kind"], odd["message"]) == (
        "bad_request", "Bad measure request: 'precision' must be one of auto, fp32, fp16, bf16, "
        "got 'half'.")
    assert ask(worker, {"type": "ping", "id": 4}) == {"type": "pong", "id": 4}


def test_measure_runs_one_at_a_time_and_is_cancelled_by_id(worker: RawWorker) -> None:
    measure = {"type": "measure", "model": MODEL, "device": "cpu", "precision": "fp32"}
    # A second measure (or upscale) while one runs on the connection is refused; a cancel
    # for another id is ignored; the first one's reply follows.
    worker.send(p.pack_json({**measure, "id": 1}) + p.pack_json({**measure, "id": 2})
                + p.pack_json({"type": "cancel", "id": 2}))
    busy = worker.message()
    assert (busy["type"], busy["id"], busy["kind"]) == ("error", 2, "bad_request")
    assert busy["message"] == ("Bad measure request: the worker is busy with another request "
                               "on this connection.")
    first = worker.message()
    assert (first["type"], first["id"], first["device"]) == ("measure", 1, "cpu")
    # Cancelled by its id: the worker's own cancelled error, and it goes on serving.
    worker.send(p.pack_json({**measure, "id": 3}) + p.pack_json({"type": "cancel", "id": 3}))
    assert worker.message() == {"type": "error", "id": 3, "kind": "cancelled",
                                "message": "The speed measurement was cancelled."}
    assert ask(worker, {"type": "status", "id": 4})["busy"] is False


def test_speed_is_a_fixed_cost_and_a_rate_per_pixel() -> None:
    from realscale.worker.server import MEASURE_GAIN, Speed, fit_speed

    # 0.2 s per call and 50,000 pixels a second, timed on 32x32 and 256x256.
    def seconds(pixels: int) -> float:
        return 0.2 + pixels / 50_000

    speed = fit_speed(1024, seconds(1024), 65536, seconds(65536))
    assert speed.pixels_per_second == pytest.approx(50_000)
    assert speed.seconds_fixed == pytest.approx(0.2)
    # A whole 2048x2048 image, predicted from the fit, against the old single-tile rate.
    assert 2048**2 / speed.pixels_per_second == pytest.approx(83.9, abs=0.1)
    assert 2048**2 / (1024 / seconds(1024)) > 4 * 83.9
    # Noise that tilts the line (the small run slower than the large one can be) gives the
    # large run's plain rate and no fixed cost.
    assert fit_speed(1024, 2.0, 65536, 1.5) == Speed(65536 / 1.5, 0.0)
    assert fit_speed(1024, 0.001, 65536, 1.5) == Speed(65536 / 1.5, 0.0)
    # A fixed cost that is almost the whole large run is not believed past MEASURE_GAIN.
    capped = fit_speed(1024, 1.0, 65536, 1.01)
    assert capped.pixels_per_second == pytest.approx(MEASURE_GAIN * 65536 / 1.01)
    assert capped.seconds_fixed == pytest.approx(1.01 / MEASURE_GAIN)


def upscale(worker: RawWorker, request_id: int, pixels: np.ndarray,
            tile: object) -> tuple[dict[str, Any], set[int]]:
    """The reply to an upscale request, and the tile counts its progress events gave."""
    request = {"type": "upscale", "id": request_id, "width": pixels.shape[1],
               "height": pixels.shape[0], "channels": 3, "depth": "u8", "model": MODEL,
               "bytes": pixels.nbytes, "tile": tile, "device": "cpu", "precision": "fp32"}
    worker.send(p.pack_json(request) + p.data_header(pixels.nbytes) + pixels.tobytes())
    totals = set()
    while True:
        reply = worker.message()
        if reply["type"] != "progress":
            return reply, totals
        totals.add(reply["total"])


def test_tile_is_auto_or_a_number_and_passed_per_request(worker: RawWorker) -> None:
    from realscale import Upscaler

    pixels = rgb_crop("OST_009.png", 40)
    local = Upscaler(MODEL, device="cpu", precision="fp32").upscale(pixels)
    tiles = {}
    for request_id, tile in enumerate(("auto", 16, 0, "auto")):
        reply, tiles[request_id] = upscale(worker, request_id, pixels, tile)
        assert (reply["type"], reply["id"], reply["width"]) == ("result", request_id, 160)
        result = np.frombuffer(worker.read_data(reply["bytes"]), np.uint8)
        assert np.array_equal(result, local.ravel())  # seam-free: any tile gives the same
    assert tiles[0] == {1} and min(tiles[1]) > 1  # 40 pixels: one tile, or many of 16
    # 0 is how clients of protocol 1 wrote auto; and each request gets its own tile, not
    # the one the request before it set on the same cached model.
    assert tiles[2] == tiles[3] == {1}
    for tile in ("64", 8, True, 40.0):
        error, _ = upscale(worker, 9, pixels, tile)
        assert (error["type"], error["kind"]) == ("error", "bad_request")
        assert "'tile' must be \"auto\" or a whole number of at least 16" in error["message"]
