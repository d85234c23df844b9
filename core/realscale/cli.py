"""The ``realscale`` command: upscale files, list and fetch models."""

from __future__ import annotations

import argparse
import contextlib
import glob
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .cluster.options import add_ray_arguments, ray_options
from .errors import RealscaleError
from .options import EngineOptions, add_engine_arguments

if TYPE_CHECKING:
    from .upscale import Upscaler

IMAGE_SUFFIXES = {
    ".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".tga", ".ppm", ".pgm",
}
FORMAT_SUFFIX = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp", "tiff": ".tif"}
EXIT_OK, EXIT_SOME_FAILED, EXIT_FAILED = 0, 1, 2
# Each module has add_commands(subparsers): sub-commands owned by other parts of realscale.
COMMAND_MODULES = (
    "realscale.worker.commands",
    "realscale.install.commands",
    "realscale.video.commands",
    "realscale.onnx.commands",
)


# Signals that stop `realscale upscale` cleanly (SIGINT arrives as KeyboardInterrupt).
STOP_SIGNALS = ("SIGTERM", "SIGHUP")


class Stopped(BaseException):
    """A stop signal arrived: unwinds like KeyboardInterrupt (never caught as an ordinary
    error), so the temporary file being written is removed on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="realscale: %(message)s")
    if args.command is None:
        parser.print_help()
        return EXIT_FAILED
    if hasattr(signal, "SIGXFSZ") and _in_main_thread():
        # Past the file size limit (ulimit -f) a write must fail with EFBIG, which the
        # writers report, instead of the signal killing the process mid-file.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        return int(args.handler(args))
    except RealscaleError as exc:
        print(f"realscale: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("realscale: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except Stopped as exc:
        print(f"realscale: stopped by {signal.Signals(exc.signum).name}", file=sys.stderr)
        return 128 + exc.signum


def _in_main_thread() -> bool:
    """Signal handlers can only be set from the main thread (main() may run in another)."""
    import threading

    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise Stopped in the main thread, once: the work in progress
    unwinds and leaves no temporary file; later signals are ignored while it does. A signal
    the command was started ignoring (``nohup``) stays ignored."""
    if not _in_main_thread():
        yield
        return
    kinds = [getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)]
    kinds = [kind for kind in kinds if signal.getsignal(kind) is not signal.SIG_IGN]

    def stop(signum: int, _frame: object) -> None:
        for kind in kinds:
            signal.signal(kind, signal.SIG_IGN)
        raise Stopped(signum)

    previous = {kind: signal.signal(kind, stop) for kind in kinds}
    try:
        yield
    finally:
        for kind, handler in previous.items():
            signal.signal(kind, handler)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="realscale", description="Real-ESRGAN upscaling for files, GIMP, Krita and Resolve."
    )
    parser.add_argument("--version", action="version", version=f"realscale {__version__}")
    sub = parser.add_subparsers(dest="command")

    up = sub.add_parser("upscale", help="upscale image files")
    up.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    up.add_argument("-o", "--output", help="output file (one input) or folder")
    add_engine_arguments(up, default_model=None,
                         model_help="catalogue name or weights file (default: the catalogue's "
                                    "default, marked * by `realscale models`)")
    size = up.add_mutually_exclusive_group()
    size.add_argument("-s", "--scale", type=float, help="output scale factor (default: model's)")
    size.add_argument("--width", type=int, help="fit the output to this width")
    up.add_argument("--height", type=int, help="fit the output to this height")
    up.add_argument("-f", "--format", choices=sorted(FORMAT_SUFFIX), help="output format")
    up.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality (1-100)")
    up.add_argument("--max-pixels", type=_positive_int, default=None,
                    help="refuse inputs and results with more pixels than this "
                    "(default 256,000,000)")
    up.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_ray_arguments(up)
    up.set_defaults(handler=_cmd_upscale)

    models = sub.add_parser("models", help="list the models and where each comes from")
    models.set_defaults(handler=_cmd_models)

    dl = sub.add_parser("download", help="download official weights that are not embedded")
    dl.add_argument("names", nargs="+")
    dl.set_defaults(handler=_cmd_download)

    for module_name in COMMAND_MODULES:
        _add_commands(module_name, sub)
    return parser


def _add_commands(module_name: str, sub: argparse._SubParsersAction) -> None:
    """Let a feature package (worker, video, ...) add its own sub-commands."""
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name or module_name.startswith(f"{exc.name}."):
            return  # that feature is not part of this installation
        raise
    module.add_commands(sub)


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        msg = f"must be a whole number of at least 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _cmd_models(_args: argparse.Namespace) -> int:
    from . import catalogue

    rows = []
    for entry in catalogue.entries():
        where = "embedded" if entry.embedded else "download"
        for source in entry.sources:
            if isinstance(source, catalogue.UrlSource):
                cached = (catalogue.cache_dir() / source.filename).is_file()
                where += " (cached)" if cached and not entry.embedded else ""
                break
        mark = "*" if entry.default else " "
        rows.append((f"{mark} {entry.name}", entry.architecture, f"x{entry.scale}", where,
                     entry.licence))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print("\n* default. Official Real-ESRGAN weights by Xintao Wang et al., BSD-3-Clause "
          "(https://github.com/xinntao/Real-ESRGAN).")
    return EXIT_OK


def _cmd_download(args: argparse.Namespace) -> int:
    from . import catalogue
    from .download import ensure_weights

    for name in args.names:
        entry = catalogue.get(name)
        path = ensure_weights(entry, allow_download=True)
        print(f"{entry.name}: {path}")
    return EXIT_OK


def _expand_inputs(specs: Sequence[str]) -> list[Path]:
    found: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found += sorted(p for p in path.iterdir()
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif any(ch in spec for ch in "*?[") and not path.exists():
            matches = sorted(Path(p) for p in glob.glob(spec, recursive=True))
            if not matches:
                msg = f"{spec}: no files match this pattern"
                raise RealscaleError(msg)
            found += [p for p in matches if p.is_file()]
        else:
            found.append(path)
    return found


def _output_path(source: Path, output: str | None, many: bool, fmt: str | None,
                 scale_tag: str) -> Path:
    suffix = FORMAT_SUFFIX[fmt] if fmt else (source.suffix or ".png")
    if output is None:
        return source.with_name(f"{source.stem}_{scale_tag}{suffix}")
    out = Path(output)
    if many or out.is_dir() or output.endswith(("/", os.sep)):
        return out / f"{source.stem}{suffix}"
    if fmt and out.suffix.lower() != suffix:
        return out.with_suffix(suffix)
    return out


class _ProgressBar:
    def __init__(self, enabled: bool, label: str) -> None:
        self.enabled = enabled
        self.label = label
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or not self.tty:
            return
        width = 30
        filled = int(width * done / max(total, 1))
        elapsed = time.monotonic() - self.started
        eta = elapsed / done * (total - done) if done else 0.0
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(f"\r{self.label} [{bar}] {done}/{total} tiles, ETA {eta:4.0f}s")
        sys.stderr.flush()

    def finish(self, message: str) -> None:
        if not self.enabled:
            return
        if self.tty:
            sys.stderr.write("\r\033[K")
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def _cmd_upscale(args: argparse.Namespace) -> int:
    from . import formats
    from .upscale import DEFAULT_MODEL

    if ray_options(args) is not None:
        from .cluster.batch import run_upscale_batch

        return run_upscale_batch(args)
    if args.height is not None and args.scale is not None:
        raise RealscaleError("give either --scale or --width/--height, not both")
    max_pixels = args.max_pixels or formats.DEFAULT_MAX_PIXELS
    inputs = _unique(_expand_inputs(args.inputs))
    if not inputs:
        raise RealscaleError("no input images found")
    many = len(inputs) > 1
    # Every name carries the same tag, so clashes do not depend on it: checked before the
    # model is loaded, with a stand-in for the model's scale.
    _check_clashes(inputs, [_output_path(p, args.output, many, args.format,
                                         _tag(args, _UNKNOWN_SCALE)) for p in inputs])
    with stop_on_signals():
        upscaler = EngineOptions.from_args(args).upscaler(DEFAULT_MODEL)
        scale_tag = _tag(args, str(upscaler.scale))
        resolved_inputs = {p.resolve() for p in inputs if p.exists()}
        failures = 0
        for source in inputs:
            target = _output_path(source, args.output, many, args.format, scale_tag)
            try:
                _upscale_one(upscaler, source, target, args, max_pixels, resolved_inputs)
            except RealscaleError as exc:
                failures += 1
                print(f"realscale: {source}: {exc}", file=sys.stderr)
            except MemoryError:
                failures += 1
                print(f"realscale: {source}: there is not enough memory to upscale it; "
                      "choose a smaller size or --tile, or close other programs",
                      file=sys.stderr)
    if failures == 0:
        return EXIT_OK
    return EXIT_FAILED if not many else EXIT_SOME_FAILED


_UNKNOWN_SCALE = "@scale@"  # stands for the model's scale in names before the model is loaded


def _tag(args: argparse.Namespace, model_scale: str) -> str:
    """What output names get when no -o is given: x2.5, 800x, x600 or the model's x4."""
    if args.scale:
        return f"x{args.scale:g}"
    if args.width or args.height:
        return f"{args.width or ''}x{args.height or ''}"
    return f"x{model_scale}"


def _unique(paths: list[Path]) -> list[Path]:
    """The inputs in order, each file once (a file named twice, or by a glob and by name,
    is one input)."""
    seen: set[str] = set()
    kept = []
    for path in paths:
        key = _key(path)
        if key not in seen:
            seen.add(key)
            kept.append(path)
    return kept


def _key(path: Path) -> str:
    return os.path.normcase(str(path.resolve()))


def _check_clashes(inputs: list[Path], targets: list[Path]) -> None:
    """Two inputs that would write the same output: refused before anything is done, since
    one result would silently replace the other."""
    first: dict[str, Path] = {}
    for source, target in zip(inputs, targets, strict=True):
        other = first.setdefault(_key(target), source)
        if other is not source:
            where = (f"the same file in {target.parent}" if _UNKNOWN_SCALE in target.name
                     else str(target))
            msg = (f"{other} and {source} would both be written to {where}; give them "
                   "separate output folders, rename one, or upscale them one at a time")
            raise RealscaleError(msg)


def _upscale_one(upscaler: Upscaler, source: Path, target: Path, args: argparse.Namespace,
                 max_pixels: int, inputs: set[Path]) -> None:
    from . import formats

    if target.resolve() in inputs:
        msg = f"the output {target} is an input; choose another output path or folder"
        raise RealscaleError(msg)
    if not target.parent.is_dir():
        msg = f"the output folder {target.parent} does not exist; create it first"
        raise RealscaleError(msg)
    image = formats.read_image(source, max_pixels=max_pixels)
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        print(f"realscale: {source}: animated image, only the first of {frames} frames "
              "is upscaled", file=sys.stderr)
    bar = _ProgressBar(not args.quiet, source.name)
    result = upscaler.upscale(image.pixels, scale=args.scale, width=args.width,
                              height=args.height, progress=bar, max_pixels=max_pixels)
    formats.write_image(target, result, like=image, format=args.format, quality=args.quality)
    bar.finish(f"{source} -> {target} ({result.shape[1]}x{result.shape[0]}, "
               f"{time.monotonic() - bar.started:.1f}s)")
