"""What one Ray worker does: load the model once, then upscale files or frames it is sent.

A plain class, so that it runs (and is tested) without Ray too; ``pool`` makes it an actor.
Files go through ``realscale upscale``'s own per-file function on copies in a private
scratch folder, so they are read, upscaled and encoded exactly as on one machine; the
encoded result travels back and the driver writes it. Frames go through the same
``Upscaler.upscale`` call as ``realscale video`` on one machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import RealscaleError
from .models import ModelFiles, install


@dataclass(frozen=True)
class WorkerSettings:
    """How every worker builds its Upscaler: the command line's model options."""

    device: str
    precision: str
    tile: int | str
    backend: str
    allow_download: bool


@dataclass(frozen=True)
class WorkerInfo:
    version: str
    host: str
    pid: int
    model: str
    scale: int
    precision: str
    device: str


@dataclass(frozen=True)
class FileJob:
    """One input file of a batch, with what ``realscale upscale`` needs to process it."""

    source: str
    """The input's path as the driver shows it (messages name it, not the scratch copy)."""
    data: bytes
    target: str
    """The output's path on the driver; its name and suffix decide the format, as locally."""
    options: argparse.Namespace
    """scale, width, height, format, quality and quiet, as parsed by ``realscale upscale``."""
    max_pixels: int


@dataclass(frozen=True)
class FileResult:
    data: bytes | None
    """The encoded output file, or None when the input failed."""
    error: str | None
    """The one-line error of a failed input, naming the driver's paths."""
    messages: str
    """What the per-file code printed (notes and the finished line), with the driver's paths."""


class Worker:
    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.scratch = Path(tempfile.mkdtemp(prefix="realscale-ray-"))
        self.upscaler: object | None = None

    def start(self, model: ModelFiles) -> WorkerInfo | str:
        """Load the model; its one-line error instead when it cannot be loaded here."""
        from ..upscale import Upscaler

        folder = self.scratch / "model"
        try:
            spec = install(model, folder)
            settings = self.settings
            upscaler = Upscaler(spec, device=settings.device, precision=settings.precision,
                                tile=settings.tile, allow_download=settings.allow_download,
                                backend=settings.backend)
        except RealscaleError as exc:
            return _on_host(str(exc))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.upscaler = upscaler
        return WorkerInfo(version=__version__, host=socket.gethostname(), pid=os.getpid(),
                          model=upscaler.name, scale=upscaler.scale,
                          precision=upscaler.precision,
                          device=upscaler.engine.device_name)

    def upscale_file(self, job: FileJob) -> FileResult:
        """``realscale upscale``'s per-file step on a copy of the input."""
        from ..cli import _upscale_one

        folder = Path(tempfile.mkdtemp(dir=self.scratch))
        source = folder / "in" / Path(job.source).name
        target = folder / "out" / Path(job.target).name
        names = {str(source): job.source, str(target): job.target}
        printed = io.StringIO()
        try:
            source.parent.mkdir()
            target.parent.mkdir()
            source.write_bytes(job.data)
            with contextlib.redirect_stderr(printed):
                _upscale_one(self.upscaler, source, target, job.options, job.max_pixels,
                             set())
            data = target.read_bytes()
        except RealscaleError as exc:
            return FileResult(None, _rename(str(exc), names), _rename(printed.getvalue(), names))
        except MemoryError:
            message = ("there is not enough memory to upscale it; choose a smaller size or "
                       "--tile, or run fewer workers on that machine")
            return FileResult(None, _on_host(message), _rename(printed.getvalue(), names))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return FileResult(data, None, _rename(printed.getvalue(), names))

    def upscale_frame(self, frame: np.ndarray, scale: float | None) -> np.ndarray:
        """One video frame, as ``realscale video`` upscales it."""
        from ..upscale import Upscaler

        assert isinstance(self.upscaler, Upscaler)
        return self.upscaler.upscale(frame, scale=scale)

    def stop(self) -> None:
        """Remove the scratch folder (the pool calls this before it ends the worker)."""
        shutil.rmtree(self.scratch, ignore_errors=True)


def _rename(text: str, names: dict[str, str]) -> str:
    for scratch, shown in names.items():
        text = text.replace(scratch, shown)
    return text


def _on_host(message: str) -> str:
    return f"{message} (on Ray worker {socket.gethostname()})"
