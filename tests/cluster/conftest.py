"""The local Ray cluster (local_cluster.py), shared by the cluster tests, and the tiny
models and sample clip of the video tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from local_cluster import LocalCluster

from fakes.fixtures import identity_model, sample, tiny_model

__all__ = ["cluster", "identity_model", "sample", "tiny_model"]


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    local = LocalCluster()
    try:
        local.start()
        yield local
    finally:
        local.stop()

