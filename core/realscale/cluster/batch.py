"""``realscale upscale --ray``: the files of a batch spread over a Ray cluster.

The driver expands the inputs and names the outputs exactly as ``realscale upscale`` does
(with its own functions), reads each input when a worker is free for it, and writes each
returned file atomically. Workers run ``realscale upscale``'s per-file step, so every output
file is the one a single machine of the worker's kind writes, byte for byte.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import Cancelled, RealscaleError
from ..options import EngineOptions
from .options import ray_options
from .run import cluster_pool
from .session import import_ray
from .worker import FileJob, FileResult

_NOT_SENT = ("inputs", "handler")
"""Left out of the command line each worker gets: the whole list of inputs (large) and
the command's function."""


def run_upscale_batch(args: argparse.Namespace) -> int:
    """``realscale upscale`` with ``--ray``: the same arguments, the same exit codes."""
    from .. import cli, formats
    from ..upscale import DEFAULT_MODEL

    options = ray_options(args)
    assert options is not None, "run_upscale_batch needs --ray"
    import_ray()  # without Ray, the way to install it before anything else
    if args.height is not None and args.scale is not None:
        raise RealscaleError("give either --scale or --width/--height, not both")
    max_pixels = args.max_pixels or formats.DEFAULT_MAX_PIXELS
    inputs = cli._unique(cli._expand_inputs(args.inputs))
    if not inputs:
        raise RealscaleError("no input images found")
    many = len(inputs) > 1
    cli._check_clashes(inputs, [cli._output_path(p, args.output, many, args.format,
                                                 cli._tag(args, cli._UNKNOWN_SCALE))
                                for p in inputs])
    resolved = {p.resolve() for p in inputs if p.exists()}
    step_options = argparse.Namespace(**{name: value for name, value in vars(args).items()
                                         if name not in _NOT_SENT})
    engine = EngineOptions.from_args(args)
    with cluster_pool(options, engine, default_model=DEFAULT_MODEL,
                      quiet=args.quiet) as pool, cli.stop_on_signals(), \
            _interrupt_noted() as interrupted:
        assert pool.info is not None
        scale_tag = cli._tag(args, str(pool.info.scale))
        jobs = [(source, cli._output_path(source, args.output, many, args.format, scale_tag))
                for source in inputs]
        progress = _Progress(len(jobs), enabled=not args.quiet)

        def submit(worker: Any, job: tuple[Path, Path]) -> Any:
            source, target = job
            _check_target(target, resolved)
            data = _read(source, max_pixels)
            return worker.upscale_file.remote(
                FileJob(str(source), data, str(target), step_options, max_pixels))

        failures = 0
        outcomes = pool.map(jobs, submit, ordered=False, cancelled=interrupted.is_set)
        for outcome in _until_interrupted(outcomes, interrupted):
            source, target = outcome.item
            error = outcome.error
            if error is None:
                result: FileResult = outcome.value
                error = _write(target, result, args.format)
                # After the write: a finished line names a file that is there.
                if result.messages:
                    progress.line(result.messages.rstrip("\n"))
            if error is not None:
                failures += 1
                progress.line(f"realscale: {source}: {error}")
            progress.step()
        progress.close()
    if failures == 0:
        return cli.EXIT_OK
    return cli.EXIT_FAILED if not many else cli.EXIT_SOME_FAILED


@contextlib.contextmanager
def _interrupt_noted() -> Iterator[threading.Event]:
    """Ctrl-C as a flag the batch loop reads between files: the pool then cancels what the
    workers hold and the command unwinds as KeyboardInterrupt (exit 130, "interrupted"),
    never in the middle of writing a file. A SIGINT the command was started ignoring (a
    background job of a script) stays ignored, as for every other command."""
    noted = threading.Event()
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield noted
        return
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: noted.set())
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)


def _until_interrupted(outcomes: Iterator[Any], interrupted: threading.Event) -> Iterator[Any]:
    """The pool's outcomes; Ctrl-C (the pool's Cancelled) unwinds as KeyboardInterrupt, so the
    command reports "interrupted" and exits 130 as on one machine."""
    try:
        yield from outcomes
    except Cancelled:
        if interrupted.is_set():
            raise KeyboardInterrupt from None
        raise


def _check_target(target: Path, inputs: set[Path]) -> None:
    """The output checks of ``realscale upscale``'s per-file step, made here: the workers only
    see copies."""
    if target.resolve() in inputs:
        msg = f"the output {target} is an input; choose another output path or folder"
        raise RealscaleError(msg)
    if not target.parent.is_dir():
        msg = f"the output folder {target.parent} does not exist; create it first"
        raise RealscaleError(msg)


def _read(source: Path, max_pixels: int) -> bytes:
    try:
        return source.read_bytes()
    except OSError as exc:
        from .. import formats

        # The reader's own message for a missing or unreadable file, as on one machine.
        formats.read_image(source, max_pixels=max_pixels)
        msg = f"cannot read {source}: {exc.strerror or exc}"
        raise RealscaleError(msg) from None


def _write(target: Path, result: FileResult, fmt: str | None) -> str | None:
    """Write a worker's file atomically; the error to report instead, if any."""
    from ..formats import output_format
    from ..formats.atomic import write_atomically

    if result.error is not None:
        return result.error
    data = result.data
    assert data is not None

    def write(handle: BinaryIO) -> None:
        handle.write(data)

    try:
        write_atomically(str(target), write, output_format(target, fmt))
    except RealscaleError as exc:
        return str(exc)
    return None


class _Progress:
    """Files done across the cluster: a bar on a terminal, nothing else (each finished file
    prints its own line, as on one machine)."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self.total = total
        self.done = 0
        self.enabled = enabled and sys.stderr.isatty()
        self.started = time.monotonic()

    def line(self, text: str) -> None:
        self._clear()
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def step(self) -> None:
        self.done += 1
        if not self.enabled:
            return
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        elapsed = time.monotonic() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(f"\rRay cluster [{bar}] {self.done}/{self.total} files, "
                         f"ETA {eta:4.0f}s")
        sys.stderr.flush()

    def close(self) -> None:
        self._clear()

    def _clear(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\033[K")
