"""``realscale video --ray``: the frames of a video spread over a Ray cluster.

The driver decodes and encodes as on one machine (``realscale.video.pipeline``); in between,
``ClusterUpscaler.upscale_frames`` sends each decoded frame (a numpy array, through Ray's
object store) to a worker and hands the upscaled frames back in their order. A worker that
dies takes no frame with it: its frames are upscaled again by the others.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ..errors import RealscaleError
from ..options import EngineOptions
from ..upscale import CancelToken, _factor
from ..video.pipeline import DEFAULT_VIDEO_MODEL
from .options import ray_options
from .pool import WorkerPool
from .run import cluster_pool


class ClusterUpscaler:
    """Stands in for an ``Upscaler`` in the video pipeline: the model runs on the cluster's
    workers, many frames at a time."""

    def __init__(self, pool: WorkerPool) -> None:
        assert pool.info is not None, "start the pool first"
        self.pool = pool
        self.info = pool.info

    @property
    def scale(self) -> int:
        return self.info.scale

    @property
    def name(self) -> str:
        return self.info.model

    @property
    def precision(self) -> str:
        return self.info.precision

    def output_size(self, width: int, height: int, *, scale: float | None = None,
                    fit_width: int | None = None,
                    fit_height: int | None = None) -> tuple[int, int]:
        """(width, height) of the result for an input of this size, as ``Upscaler`` says."""
        factor = _factor(width, height, self.scale, scale, fit_width, fit_height)
        return max(1, round(width * factor)), max(1, round(height * factor))

    def upscale_frames(self, frames: Iterable[np.ndarray], *, scale: float | None = None,
                       cancel: CancelToken | None = None,
                       ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(frame, upscaled frame) for every frame, in order, with a bounded number of
        frames on the cluster at a time."""

        def submit(worker: Any, frame: np.ndarray) -> Any:
            return worker.upscale_frame.remote(frame, scale)

        cancelled = (lambda: cancel.cancelled) if cancel is not None else None
        for outcome in self.pool.map(frames, submit, ordered=True, cancelled=cancelled):
            if outcome.error is not None:
                raise RealscaleError(f"a frame could not be upscaled: {outcome.error}")
            yield outcome.item, outcome.value

    def upscale(self, image: np.ndarray, *, scale: float | None = None,
                cancel: CancelToken | None = None) -> np.ndarray:
        """One image on one of the workers."""
        for _, result in self.upscale_frames([image], scale=scale, cancel=cancel):
            return result
        raise AssertionError("upscale_frames yields one result per frame")


@contextlib.contextmanager
def cluster_upscaler(args: argparse.Namespace) -> Iterator[ClusterUpscaler]:
    """The workers for ``realscale video --ray`` with ``args``' engine options; ended when
    the block ends."""
    options = ray_options(args)
    assert options is not None, "cluster_upscaler needs --ray"
    quiet = bool(getattr(args, "quiet", False)) or getattr(args, "progress", "") in (
        "none", "json")
    engine = EngineOptions.from_args(args)
    with cluster_pool(options, engine, default_model=DEFAULT_VIDEO_MODEL, quiet=quiet) as pool:
        yield ClusterUpscaler(pool)
