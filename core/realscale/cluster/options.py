"""The ``--ray`` options of ``realscale upscale`` and ``realscale video``.

Imported whenever ``realscale`` starts, so it imports nothing heavy (never Ray itself).
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass

from ..errors import RealscaleError

FIND_OR_START = ""
"""``--ray`` without an address: the cluster in $RAY_ADDRESS or the one ``ray start`` last
started on this machine, else a Ray instance of this machine's own for this run."""

_ADDRESS = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}")


@dataclass(frozen=True)
class RayOptions:
    address: str
    """What ``ray.init`` gets: host:port, ray://host:port, auto, local, or FIND_OR_START."""
    workers: int | None
    gpus_per_worker: float | None


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--ray [ADDRESS]``, ``--ray-workers N`` and ``--ray-gpus-per-worker F``."""
    group = parser.add_argument_group(
        "Ray cluster", "spread the work over a Ray cluster (pip install 'realscale[ray]' on "
        "every machine); the inputs are read and the outputs written here")
    group.add_argument(
        "--ray", nargs="?", const=FIND_OR_START, default=None, type=ray_address,
        metavar="ADDRESS",
        help="run on the Ray cluster at ADDRESS (host:port of its head, ray://host:port, "
             "auto or local); without one, the cluster in RAY_ADDRESS or the one `ray start` "
             "started on this machine, else a Ray instance for this run. Write --ray=ADDRESS "
             "or put --ray after the input files")
    group.add_argument(
        "--ray-workers", type=_workers, default=None, metavar="N",
        help="how many Ray workers (each loads the model once; default: one per GPU, or "
             "one per machine without GPUs)")
    group.add_argument(
        "--ray-gpus-per-worker", type=_gpu_share, default=None, metavar="F",
        help="the share of a GPU each worker takes: 1 (default), or a fraction such as 0.5 "
             "to put several workers on one GPU")


def ray_options(args: argparse.Namespace) -> RayOptions | None:
    """The Ray options of a parsed command line, or None when ``--ray`` was not given (then
    ``--ray-workers`` and ``--ray-gpus-per-worker`` are refused: they would do nothing)."""
    address = getattr(args, "ray", None)
    workers = getattr(args, "ray_workers", None)
    share = getattr(args, "ray_gpus_per_worker", None)
    if address is None:
        if workers is not None or share is not None:
            msg = ("--ray-workers and --ray-gpus-per-worker only apply with --ray; add --ray "
                   "(and an address) or leave them out")
            raise RealscaleError(msg)
        return None
    return RayOptions(address=address, workers=workers, gpus_per_worker=share)


def ray_address(text: str) -> str:
    """``--ray``'s value: an address Ray takes. Anything else (most likely an input file
    that argparse gave to ``--ray``) is refused with the way to write it."""
    value = text.strip()
    if value in (FIND_OR_START, "auto", "local") or _ADDRESS.fullmatch(value) or \
            re.fullmatch(r"ray://\S+", value):
        return value
    msg = (f"{text!r} is not a Ray address (host:port, ray://host:port, auto or local); "
           "write --ray=ADDRESS, or put --ray after the input files")
    raise argparse.ArgumentTypeError(msg)


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"must be a whole number of at least 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _gpu_share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    # A worker runs its model on one GPU: more would be reserved and left idle.
    if not 0 < value <= 1:
        msg = f"must be above 0 and at most 1 (a worker uses one GPU), got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value
