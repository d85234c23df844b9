"""One run on the cluster: join Ray, decide the workers, send the model, start them."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator

from .models import model_files
from .options import RayOptions
from .placement import plan_workers
from .pool import WorkerPool
from .session import joined, live_nodes
from .worker import WorkerSettings


@contextlib.contextmanager
def cluster_pool(options: RayOptions, *, model: str, args: argparse.Namespace,
                 tile: int | str, quiet: bool) -> Iterator[WorkerPool]:
    """Started workers with ``model`` loaded the way ``args`` (device, precision, backend,
    download) asks; they are ended and Ray left when the block ends, however it ends."""
    files = model_files(model, allow_download=args.download)
    settings = WorkerSettings(device=args.device, precision=args.precision, tile=tile,
                              backend=args.backend, allow_download=args.download)
    with joined(options.address) as ray:
        nodes = live_nodes(ray)
        slots = plan_workers(nodes, workers=options.workers,
                             gpus_per_worker=options.gpus_per_worker, device=args.device)
        pool = WorkerPool(ray, slots, settings, files)
        finished = False
        try:
            info = pool.start()
            if not quiet:
                machines = len({slot.node_id for slot in slots})
                kind = "GPU" if any(slot.gpus for slot in slots) else "CPU"
                sys.stderr.write(
                    f"realscale: {len(slots)} Ray workers on {machines} machines ({kind}); "
                    f"{info.model} x{info.scale}, {info.precision} on {info.device}\n")
                sys.stderr.flush()
            yield pool
            finished = True
        finally:
            pool.close(finished=finished)
