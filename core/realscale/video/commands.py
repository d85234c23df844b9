"""``realscale video``: the command line of the video pipeline.

This module is imported whenever ``realscale`` starts, so it imports nothing heavy (torch,
numpy) until the command actually runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from ..cluster.options import add_ray_arguments, ray_options
from ..options import EngineOptions, add_engine_arguments
from .codecs import CODECS

if TYPE_CHECKING:
    from ..upscale import CancelToken, Upscaler
    from .pipeline import FrameUpscaler, Progress
    from .plan import Plan

EXIT_OK, EXIT_FAILED, EXIT_CANCELLED = 0, 2, 130
DEFAULT_MODEL = "realesr-animevideov3"  # = pipeline.DEFAULT_VIDEO_MODEL (not imported: torch)


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``realscale video``."""
    codecs = ", ".join(f"{c.name} ({c.label})" for c in CODECS.values())
    parser = subparsers.add_parser(
        "video", help="upscale a video file (audio and subtitles copied)",
        description=(
            "Upscale every frame of a video with a Real-ESRGAN model. ffmpeg decodes and "
            "encodes (decode, inference and encode overlap); frames keep their order and "
            "timestamps, audio and subtitle streams are copied. The output is written under a "
            "hidden temporary name and appears only when complete."
        ),
        epilog=f"codecs: {codecs}. Default codec by output suffix: .mov ProRes 422 HQ, "
               ".mp4/.mkv H.264, a folder 16-bit PNG.",
    )
    parser.add_argument("input", help="video file")
    parser.add_argument("-o", "--output", required=True,
                        help="output file (.mov, .mp4, .mkv), or a folder (or a pattern "
                             "like out/frame_%%06d.png) for an image sequence")
    add_engine_arguments(parser, default_model=DEFAULT_MODEL)
    parser.add_argument("-s", "--scale", type=float,
                        help="output scale factor (default: the model's)")
    parser.add_argument("-c", "--codec", help="prores, prores4444, h264, h265, png or tiff")
    parser.add_argument("--crf", type=int,
                        help="H.264/H.265 quality: lower is better and bigger "
                             "(default 18 for H.264, 20 for H.265)")
    parser.add_argument("--preset", help="H.264/H.265 encoder preset (default medium)")
    parser.add_argument("--temporal", action="store_true",
                        help="temporally consistent output: blend each frame with the previous "
                             "output moved along the input's motion where that motion is "
                             "reliable (no flicker on still content; per-frame result on new "
                             "content and after scene cuts; needs OpenCV)")
    parser.add_argument("--start-frame", type=int, default=0,
                        help="first frame to upscale (0-based, in presentation order)")
    parser.add_argument("--frames", type=int, default=None,
                        help="how many frames to upscale (default: to the end)")
    parser.add_argument("--no-audio", action="store_true", help="do not copy audio streams")
    parser.add_argument("--no-subtitles", action="store_true",
                        help="do not copy subtitle streams")
    parser.add_argument("--start-number", type=int, default=1,
                        help="number of the first file of an image sequence (default 1)")
    parser.add_argument("-y", "--overwrite", action="store_true",
                        help="replace an existing output")
    parser.add_argument("--progress", choices=("auto", "bar", "lines", "json", "none"),
                        default="auto",
                        help="how to report progress: a bar (terminal), plain lines, JSON "
                             "lines on stdout (for programs; 'cancel' on stdin stops), or "
                             "nothing (default: bar on a terminal, else lines)")
    parser.add_argument("-q", "--quiet", action="store_true", help="same as --progress none")
    add_ray_arguments(parser)
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    from ..errors import Cancelled, RealscaleError
    from ..upscale import CancelToken
    from .pipeline import VideoJob, check_job, upscale_video

    cluster = ray_options(args)
    if cluster is not None:
        from ..cluster.session import import_ray

        import_ray()  # without Ray, the way to install it before anything else
    mode = "none" if args.quiet else args.progress
    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() else "lines"
    report = _Reporter(mode, os.path.basename(args.input))
    engine = EngineOptions.from_args(args)
    token = CancelToken()
    restore = _cancel_on_signals(token, watch_stdin=mode == "json")
    try:
        job = VideoJob(
            source=args.input, output=args.output, codec=args.codec, scale=args.scale,
            crf=args.crf, preset=args.preset, start_frame=args.start_frame, frames=args.frames,
            audio=not args.no_audio, subtitles=not args.no_subtitles,
            overwrite=args.overwrite, start_number=args.start_number,
            temporal=args.temporal,
        )
        check_job(job)
        report.starting()
        with contextlib.ExitStack() as stack:
            if cluster is not None:
                from ..cluster.video import cluster_upscaler

                upscaler: Upscaler | FrameUpscaler = stack.enter_context(
                    cluster_upscaler(args))
            else:
                upscaler = engine.upscaler(DEFAULT_MODEL)
            result = upscale_video(job, upscaler, progress=report.progress, cancel=token,
                                   on_plan=report.plan)
    except Cancelled as exc:
        report.error(str(exc), cancelled=True)
        return EXIT_CANCELLED
    except KeyboardInterrupt:
        report.error("interrupted", cancelled=True, quiet=True)
        raise
    except RealscaleError as exc:
        report.error(str(exc))
        raise
    finally:
        restore()
    report.done(result.output, result.frames, result.size, result.seconds)
    return EXIT_OK


class _Reporter:
    """Progress for people (a bar or lines on stderr) or programs (JSON lines on stdout)."""

    def __init__(self, mode: str, label: str, stream: TextIO | None = None) -> None:
        self.mode = mode
        self.label = label
        self.stream = stream
        self.last_line = 0.0
        self.last_percent = -1

    def _err(self) -> TextIO:
        return self.stream or sys.stderr

    def _emit(self, event: dict[str, Any]) -> None:
        out = self.stream or sys.stdout
        out.write(json.dumps(event) + "\n")
        out.flush()

    def starting(self) -> None:
        if self.mode in ("bar", "lines"):
            self._err().write(f"{self.label}: loading the model and reading the frames...\n")
            self._err().flush()

    def plan(self, plan: Plan) -> None:
        width, height = plan.out_size
        if self.mode == "json":
            self._emit({"event": "start", "frames": plan.frames, "first_frame":
                        plan.first_frame, "width": width, "height": height,
                        "codec": plan.codec.name, "output": plan.output})
            for note in plan.notes:
                self._emit({"event": "note", "message": note})
            return
        if self.mode == "none":
            return
        err = self._err()
        err.write(f"{self.label}: {plan.frames} frames, {plan.in_size[0]}x{plan.in_size[1]} -> "
                  f"{width}x{height}, {plan.codec.label}\n")
        for note in plan.notes:
            err.write(f"realscale: note: {note}\n")
        err.flush()

    def progress(self, state: Progress) -> None:
        eta = _clock(state.eta) if state.eta is not None else "--:--"
        if self.mode == "json":
            self._emit({"event": "progress", "done": state.done, "total": state.total,
                        "fps": round(state.fps, 3),
                        "eta": None if state.eta is None else round(state.eta, 1)})
        elif self.mode == "bar":
            width = 30
            filled = int(width * state.done / max(state.total, 1))
            bar = "#" * filled + "-" * (width - filled)
            self._err().write(f"\r{self.label} [{bar}] {state.done}/{state.total} frames, "
                              f"{state.fps:5.2f} fps, ETA {eta}")
            self._err().flush()
        elif self.mode == "lines":
            percent = int(100 * state.done / max(state.total, 1))
            now = time.monotonic()
            if state.done == state.total or (percent // 5 > self.last_percent // 5
                                             and now - self.last_line > 2) \
                    or now - self.last_line > 30:
                self.last_line, self.last_percent = now, percent
                self._err().write(f"{self.label}: {state.done}/{state.total} frames "
                                  f"({percent}%), {state.fps:.2f} fps, ETA {eta}\n")
                self._err().flush()

    def done(self, output: str, frames: int, size: tuple[int, int], seconds: float) -> None:
        if self.mode == "json":
            self._emit({"event": "done", "output": output, "frames": frames,
                        "width": size[0], "height": size[1], "seconds": round(seconds, 2)})
            return
        if self.mode == "bar":
            self._err().write("\r\033[K")
        if self.mode != "none":
            rate = frames / seconds if seconds > 0 else 0.0
            self._err().write(f"{self.label} -> {output} ({size[0]}x{size[1]}, {frames} frames, "
                              f"{seconds:.1f}s, {rate:.2f} fps overall)\n")
            self._err().flush()

    def error(self, message: str, cancelled: bool = False, quiet: bool = False) -> None:
        """Report a failure; the command line prints errors itself, cancellations here."""
        if self.mode == "json":
            self._emit({"event": "cancelled" if cancelled else "error", "message": message})
        if self.mode == "bar":
            self._err().write("\n")
        if cancelled and not quiet:
            self._err().write(f"realscale: {message}\n")


def _clock(seconds: float) -> str:
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _cancel_on_signals(token: CancelToken, *, watch_stdin: bool) -> Callable[[], None]:
    """SIGTERM (and, for programs, a 'cancel' line on stdin) cancel cleanly: the pipeline
    stops, removes its temporary output and the command exits 130."""
    previous: signal._HANDLER = None
    installed = False
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGTERM"):
        previous = signal.signal(signal.SIGTERM, lambda *_: token.cancel())
        installed = True
    if watch_stdin and sys.stdin is not None:
        def watch() -> None:
            try:
                for line in sys.stdin:
                    if line.strip().lower() == "cancel":
                        token.cancel()
                        return
            except (OSError, ValueError):
                return

        threading.Thread(target=watch, name="realscale-cancel", daemon=True).start()

    def restore() -> None:
        if installed:
            signal.signal(signal.SIGTERM, previous)

    return restore
