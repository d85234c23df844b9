"""Engine options: which model runs where, how precisely, through which backend, in which
tiles. One type for the command line (``realscale upscale`` and ``realscale video`` share
their flags and help), the worker's requests and the Ray workers, and one tile check.

Imported whenever ``realscale`` starts, so it imports nothing heavy (no torch, no numpy).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import RealscaleError
from .wire import AUTO, wire_tile

if TYPE_CHECKING:
    from .upscale import Upscaler

# AUTO ("auto", from wire.py) is the one spelling of "let realscale choose", on the command
# line and on the wire.
DEVICES_HELP = "auto, cpu, cuda (or cuda:N) or mps"
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
BACKENDS = ("auto", "torch", "onnxruntime")


def min_tile() -> int:
    """The smallest tile the tiler takes (``tiling.MIN_TILE``; imported late: numpy)."""
    from .tiling import MIN_TILE

    return MIN_TILE


def check_tile(value: object) -> int | str:
    """A tile size as given on the command line, in a request or to the API: ``"auto"``, or a
    whole number of pixels of at least ``tiling.MIN_TILE`` (as an int or its digits).
    Returns ``"auto"`` or the int; raises RealscaleError with what to give instead."""
    if value == AUTO:
        return AUTO
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is not None and number >= min_tile():
        return number
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    msg = (f"the tile size must be auto or a whole number of at least {min_tile()} pixels, "
           f"got {shown}")
    raise RealscaleError(msg)


@dataclass(frozen=True)
class EngineOptions:
    """How to build an Upscaler. ``model`` None means the command's default model."""

    model: str | None = None
    device: str = AUTO
    precision: str = AUTO
    backend: str = AUTO
    tile: int | str = AUTO
    download: bool = False
    """Whether official weights that are not embedded may be downloaded."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tile", check_tile(self.tile))
        if self.precision not in PRECISIONS:
            msg = (f"the precision must be one of {', '.join(PRECISIONS)}, "
                   f"got {self.precision!r}")
            raise RealscaleError(msg)
        if self.backend not in BACKENDS:
            msg = f"the backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}"
            raise RealscaleError(msg)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EngineOptions:
        """The options of a command line parsed with add_engine_arguments."""
        return cls(model=args.model, device=args.device, precision=args.precision,
                   backend=args.backend, tile=args.tile, download=args.download)

    @classmethod
    def from_request(cls, request: Mapping[str, Any]) -> EngineOptions:
        """The options of a worker request (fields ``model``, ``device``, ``precision``,
        ``backend``, ``tile``, ``download``; a missing or null one is ``auto``, and a ``tile``
        of 0 too: older clients of protocol 1 sent that). Raises RealscaleError naming the
        field that is wrong."""
        model = request.get("model")
        if model is not None and not isinstance(model, str):
            msg = f"'model' must name a catalogue model or a weights file, got {_shown(model)}"
            raise RealscaleError(msg)
        texts: dict[str, str] = {}
        for name in ("device", "precision", "backend"):
            value = request.get(name)
            if value is None or value == "":
                value = AUTO
            if not isinstance(value, str) or len(value) > 64:
                msg = f"'{name}' must be a string such as \"auto\", got {_shown(value)}"
                raise RealscaleError(msg)
            texts[name] = value
        # Missing, null or 0 (how clients of protocol 1 wrote it) is "auto".
        tile = wire_tile(request.get("tile"))
        checked: int | str | None = None
        if not isinstance(tile, bool) and (tile == AUTO or isinstance(tile, int)):
            with contextlib.suppress(RealscaleError):
                checked = check_tile(tile)
        if checked is None:
            msg = (f"'tile' must be \"auto\" or a whole number of at least {min_tile()}, "
                   f"got {_shown(tile)}")
            raise RealscaleError(msg)
        download = request.get("download", False)
        if not isinstance(download, bool):
            msg = f"'download' must be true or false, got {_shown(download)}"
            raise RealscaleError(msg)
        try:
            return cls(model=model, tile=checked, download=download, **texts)
        except RealscaleError as exc:
            raise RealscaleError(str(exc).replace("the precision", "'precision'")
                                 .replace("the backend", "'backend'")) from None

    def upscaler(self, default_model: str) -> Upscaler:
        """An Upscaler built from these options (``default_model`` when ``model`` is None)."""
        from .upscale import Upscaler

        return Upscaler(self.model or default_model, device=self.device,
                        precision=self.precision, tile=self.tile,
                        allow_download=self.download, backend=self.backend)


def add_engine_arguments(parser: argparse.ArgumentParser, *, default_model: str | None,
                         model_help: str = "catalogue name or weights file") -> None:
    """Add ``-m/--model``, ``--tile``, ``--device``, ``--precision``, ``--backend`` and
    ``--download``: the same flags, checks and help on every command that upscales."""
    shown = f" (default: {default_model})" if default_model else ""
    parser.add_argument("-m", "--model", default=default_model, help=model_help + shown)
    parser.add_argument("--tile", default=AUTO, type=_tile_argument,
                        help="tile size in pixels (smaller needs less memory), or auto")
    parser.add_argument("--device", default=AUTO, help=DEVICES_HELP)
    parser.add_argument("--precision", default=AUTO, choices=PRECISIONS,
                        help="auto, fp32, fp16 or bf16 (auto: fp16 on GPUs, bf16 on CPUs "
                             "where that is fast and accurate, else fp32)")
    parser.add_argument("--backend", default=AUTO, choices=BACKENDS,
                        help="auto (torch if installed, else onnxruntime), torch or onnxruntime")
    parser.add_argument("--download", action="store_true",
                        help="allow downloading official weights that are not embedded")


def _tile_argument(text: str) -> int | str:
    try:
        return check_tile(text)
    except RealscaleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
