"""Fixtures of the Resolve tests: the sample clip and tiny models (tests/fakes/fixtures.py),
a small cut of the sample, and the worker config that `realscale install resolve` writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from resolve_user import STEADY

from fakes.fixtures import identity_model, sample, tiny_model

__all__ = ["config", "identity_model", "sample", "small_sample", "steady_reference",
           "tiny_model"]


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The worker config `realscale install resolve` writes, naming this interpreter."""
    path = tmp_path / "worker.json"
    path.write_text(json.dumps({"python": sys.executable, "version": 1}))
    monkeypatch.setenv("REALSCALE_WORKER_CONFIG", str(path))
    return path


@pytest.fixture(scope="session")
def small_sample(sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The middle 160x120 of the sample's first 48 frames, losslessly (FFV1 in MOV, whose
    time base keeps the rate exact), with its audio:
    the real clip, small enough that a test upscales it in moments."""
    from realscale.video import ffmpeg

    path = tmp_path_factory.mktemp("clips") / "onepiece_small.mov"
    subprocess.run(
        [*ffmpeg.base_command(), "-i", str(sample), "-vf", "crop=160:120:240:180",
         "-frames:v", "48", "-c:v", "ffv1", "-c:a", "aac", "-shortest", str(path)],
        check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def steady_reference(small_sample: Path,
                     tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """Frames of `realscale video` run directly on STEADY's stretch, per frame and with
    --temporal (the same arguments the scripts pass: ProRes 422 HQ, Exact precision): what a
    script's job must reproduce."""
    from realscale.video.frames import read_frames

    folder = tmp_path_factory.mktemp("steady")
    frames = {}
    for name, extra in (("per_frame", []), ("temporal", ["--temporal"])):
        output = folder / f"{name}.mov"
        subprocess.run(
            [sys.executable, "-m", "realscale", "video", str(small_sample), "-o", str(output),
             "--model", STEADY["model"], "--scale", STEADY["scale"], "--codec", "prores",
             "--precision", "fp32", *extra, "--start-frame", str(STEADY["first"]),
             "--frames", str(STEADY["frames"]),
             "--no-audio", "--no-subtitles", "--progress", "none"],
            check=True, capture_output=True, timeout=600)
        frames[name] = np.stack(list(read_frames(str(output))))
    return frames
