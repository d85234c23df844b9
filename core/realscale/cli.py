"""The ``realscale`` command: upscale files, list and fetch models."""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import RealscaleError

IMAGE_SUFFIXES = {
    ".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".tga", ".ppm", ".pgm",
}
FORMAT_SUFFIX = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp", "tiff": ".tif"}
EXIT_OK, EXIT_SOME_FAILED, EXIT_FAILED = 0, 1, 2
# Each module has add_commands(subparsers): sub-commands owned by other parts of realscale.
COMMAND_MODULES = (
    "realscale.worker.commands",
    "realscale.video.commands",
    "realscale.onnx.commands",
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="realscale: %(message)s")
    if args.command is None:
        parser.print_help()
        return EXIT_FAILED
    try:
        return int(args.handler(args))
    except RealscaleError as exc:
        print(f"realscale: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("realscale: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="realscale", description="Real-ESRGAN upscaling for files, GIMP, Krita and Resolve."
    )
    parser.add_argument("--version", action="version", version=f"realscale {__version__}")
    sub = parser.add_subparsers(dest="command")

    up = sub.add_parser("upscale", help="upscale image files")
    up.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    up.add_argument("-o", "--output", help="output file (one input) or folder")
    up.add_argument("-m", "--model", default=None, help="catalogue name or weights file")
    size = up.add_mutually_exclusive_group()
    size.add_argument("-s", "--scale", type=float, help="output scale factor (default: model's)")
    size.add_argument("--width", type=int, help="fit the output to this width")
    up.add_argument("--height", type=int, help="fit the output to this height")
    up.add_argument("--tile", default="auto", help="tile size in pixels, or auto")
    up.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    up.add_argument("--precision", default="auto", help="auto, fp32, fp16 or bf16")
    up.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime"),
                    help="auto (torch if installed, else onnxruntime), torch or onnxruntime")
    up.add_argument("-f", "--format", choices=sorted(FORMAT_SUFFIX), help="output format")
    up.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality (1-100)")
    up.add_argument("--max-pixels", type=int, default=None,
                    help="refuse inputs with more pixels than this (decompression bombs)")
    up.add_argument("--download", action="store_true",
                    help="allow downloading official weights that are not embedded")
    up.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
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


def parse_tile(text: str) -> int | str:
    """``--tile``: a number of pixels, or ``auto``."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        msg = f"--tile must be a number of pixels or auto, got {text!r}"
        raise RealscaleError(msg) from None


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
    from .upscale import DEFAULT_MODEL, Upscaler

    if args.height is not None and args.scale is not None:
        raise RealscaleError("give either --scale or --width/--height, not both")
    tile = parse_tile(args.tile)
    max_pixels = args.max_pixels or formats.DEFAULT_MAX_PIXELS
    inputs = _expand_inputs(args.inputs)
    if not inputs:
        raise RealscaleError("no input images found")
    many = len(inputs) > 1
    upscaler = Upscaler(args.model or DEFAULT_MODEL, device=args.device,
                        precision=args.precision, tile=tile, allow_download=args.download,
                        backend=args.backend)
    scale_tag = f"x{args.scale:g}" if args.scale else (
        f"{args.width or ''}x{args.height or ''}" if (args.width or args.height)
        else f"x{upscaler.scale}")
    resolved_inputs = {p.resolve() for p in inputs if p.exists()}
    failures = 0
    for source in inputs:
        target = _output_path(source, args.output, many, args.format, scale_tag)
        try:
            _upscale_one(upscaler, source, target, args, max_pixels, resolved_inputs)
        except RealscaleError as exc:
            failures += 1
            print(f"realscale: {source}: {exc}", file=sys.stderr)
    if failures == 0:
        return EXIT_OK
    return EXIT_FAILED if not many else EXIT_SOME_FAILED


def _upscale_one(upscaler: object, source: Path, target: Path, args: argparse.Namespace,
                 max_pixels: int, inputs: set[Path]) -> None:
    from . import formats
    from .upscale import Upscaler

    assert isinstance(upscaler, Upscaler)
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
                              height=args.height, progress=bar)
    formats.write_image(target, result, like=image, format=args.format, quality=args.quality)
    bar.finish(f"{source} -> {target} ({result.shape[1]}x{result.shape[0]}, "
               f"{time.monotonic() - bar.started:.1f}s)")
