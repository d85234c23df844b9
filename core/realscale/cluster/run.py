"""One run on the cluster: join Ray, decide the workers, send the model, start them."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from ..options import EngineOptions
from .models import model_files
from .options import RayOptions
from .placement import plan_workers
from .pool import WorkerPool
from .session import joined, live_nodes


@contextlib.contextmanager
def cluster_pool(options: RayOptions, engine: EngineOptions, *, default_model: str,
                 quiet: bool) -> Iterator[WorkerPool]:
    """Started workers with ``engine``'s model (``default_model`` when it names none) loaded
    the way it asks (device, precision, backend, tile, download); they are ended and Ray left
    when the block ends, however it ends."""
    files = model_files(engine.model or default_model, allow_download=engine.download)
    with joined(options.address) as ray:
        nodes = live_nodes(ray)
        slots = plan_workers(nodes, workers=options.workers,
                             gpus_per_worker=options.gpus_per_worker, device=engine.device)
        pool = WorkerPool(ray, slots, engine, files)
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
