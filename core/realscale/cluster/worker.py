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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import __version__
from ..errors import RealscaleError
from ..options import EngineOptions
from .models import ModelFiles, install

if TYPE_CHECKING:
    from ..upscale import Upscaler

SCRATCH_PREFIX = "realscale-ray-"


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
    """The command line as ``realscale upscale`` parsed it (less the list of inputs)."""
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
    def __init__(self, settings: EngineOptions, scratch: str | None = None) -> None:
        self.settings = settings
        """The command line's engine options; the model comes with start()."""
        # Where copies of files and model weights live while a call uses them.
        self.scratch = Path(scratch or tempfile.gettempdir())
        self.upscaler: Upscaler | None = None

    def start(self, model: ModelFiles) -> WorkerInfo | str:
        """Load the model; its one-line error instead when it cannot be loaded here."""
        _remove_stale(self.scratch)
        folder = self._folder() if model.files else None
        try:
            spec = install(model, folder) if folder is not None else model.spec
            upscaler = replace(self.settings, model=spec).upscaler(spec)
        except RealscaleError as exc:
            return _on_host(str(exc))
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        self.upscaler = upscaler
        return WorkerInfo(version=__version__, host=socket.gethostname(), pid=os.getpid(),
                          model=upscaler.name, scale=upscaler.scale,
                          precision=upscaler.precision,
                          device=upscaler.engine.device_name)

    def upscale_file(self, job: FileJob) -> FileResult:
        """``realscale upscale``'s per-file step on a copy of the input."""
        from ..cli import _upscale_one

        assert self.upscaler is not None, "start() first"
        folder = self._folder()
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
        assert self.upscaler is not None, "start() first"
        return self.upscaler.upscale(frame, scale=scale)

    def _folder(self) -> Path:
        """A private folder for one call, removed when the call ends. Its name carries the
        worker's pid: a worker ended in the middle of a call (Ctrl-C on the driver, a crash)
        leaves it behind, and the next worker started on the machine removes it."""
        return Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-",
                                     dir=self.scratch))


def _remove_stale(scratch: Path) -> None:
    """Remove the folders of workers that ended in the middle of a call on this machine."""
    for folder in scratch.glob(f"{SCRATCH_PREFIX}*-*"):
        pid = folder.name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: not ours to judge
    return True


def _rename(text: str, names: dict[str, str]) -> str:
    for scratch, shown in names.items():
        text = text.replace(scratch, shown)
    return text


def _on_host(message: str) -> str:
    return f"{message} (on Ray worker {socket.gethostname()})"
