"""Fixtures of the video and Resolve tests (their conftest files import them): the sample
clip and tiny models."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes.models import compact_model
from helpers import data_file

SAMPLE = ("realesrgan-inputs", "video", "onepiece_demo.mp4")


@pytest.fixture(scope="session")
def sample() -> Path:
    """onepiece_demo.mp4: 640x480, 181 frames at 23.98 fps, AAC audio."""
    return data_file(*SAMPLE)


@pytest.fixture(scope="session")
def identity_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compact_model(tmp_path_factory.mktemp("models") / "identity-x2.safetensors",
                         identity=True)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compact_model(tmp_path_factory.mktemp("models") / "tiny-x2.safetensors", seed=1)
