"""How many Ray workers to start, and where: decided from the cluster's CPUs and GPUs.

Pure arithmetic on what ``ray.nodes()`` reports, so it is tested without a cluster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import RealscaleError


@dataclass(frozen=True)
class Node:
    """A live machine of the cluster and what it offers."""

    node_id: str
    address: str
    cpus: float
    gpus: float


@dataclass(frozen=True)
class Slot:
    """One worker to start: on which machine (preferred, not required: a replacement for a
    worker whose machine left goes wherever there is room) and what it reserves."""

    node_id: str
    cpus: float
    gpus: float


def plan_workers(nodes: list[Node], *, workers: int | None, gpus_per_worker: float | None,
                 device: str) -> list[Slot]:
    """The workers to start.

    With GPUs (and ``device`` not ``cpu``), each worker takes ``gpus_per_worker`` of a GPU (1
    by default; a fraction puts several on one GPU) and one CPU, and by default the GPUs are
    all used. Without, each worker shares its machine's CPUs with the others there (the model's
    threads use them all), and by default there is one worker per machine.
    """
    if not nodes:
        raise RealscaleError("the Ray cluster has no live machines; check `ray status`")
    total_gpus = sum(node.gpus for node in nodes)
    use_gpus = device not in ("cpu", "mps") and total_gpus > 0
    if device == "cuda" and total_gpus == 0:
        msg = ("--device cuda, but the Ray cluster has no GPUs (ray start --num-gpus tells Ray "
               "about them); leave --device at auto to run on the CPUs")
        raise RealscaleError(msg)
    if gpus_per_worker is not None and not use_gpus:
        reason = "runs on CPUs" if device in ("cpu", "mps") else "has no GPUs"
        msg = f"--ray-gpus-per-worker was given, but the run {reason}; leave it out"
        raise RealscaleError(msg)
    if use_gpus:
        return _gpu_slots(nodes, workers, gpus_per_worker or 1.0)
    return _cpu_slots(nodes, workers)


def _gpu_slots(nodes: list[Node], workers: int | None, share: float) -> list[Slot]:
    room = {node.node_id: int(math.floor(node.gpus / share + 1e-9)) for node in nodes}
    capacity = sum(room.values())
    if capacity == 0:
        msg = (f"no machine of the Ray cluster has {share:g} GPUs for one worker (Ray counts "
               "a partly used GPU as a fraction); lower --ray-gpus-per-worker")
        raise RealscaleError(msg)
    wanted = capacity if workers is None else workers
    if wanted > capacity:
        msg = (f"the Ray cluster has room for {capacity} workers of {share:g} GPU each, not "
               f"{wanted}; ask for fewer with --ray-workers or lower --ray-gpus-per-worker")
        raise RealscaleError(msg)
    counts = _spread(wanted, [(node.node_id, room[node.node_id]) for node in nodes])
    slots = []
    for node in nodes:
        count = counts.get(node.node_id, 0)
        # One CPU each for the worker's own Python, less where a machine has fewer CPUs.
        cpus = _share(node.cpus, count, at_most=1.0)
        slots += [Slot(node.node_id, cpus, share)] * count
    return slots


def _cpu_slots(nodes: list[Node], workers: int | None) -> list[Slot]:
    usable = [node for node in nodes if node.cpus > 0]
    if not usable:
        raise RealscaleError("the Ray cluster offers no CPUs; check `ray status`")
    wanted = len(usable) if workers is None else workers
    limit = int(sum(node.cpus for node in usable) / 0.01)
    if wanted > limit:
        msg = f"{wanted} workers are more than the Ray cluster's CPUs can hold; ask for fewer"
        raise RealscaleError(msg)
    # Round robin, larger machines first: any number of workers is placed.
    ordered = sorted(usable, key=lambda node: -node.cpus)
    counts = _spread(wanted, [(node.node_id, wanted) for node in ordered])
    slots = []
    for node in ordered:
        count = counts.get(node.node_id, 0)
        slots += [Slot(node.node_id, _share(node.cpus, count), 0.0)] * count
    return slots


def _spread(wanted: int, room: list[tuple[str, int]]) -> dict[str, int]:
    """``wanted`` workers over machines in turn, each up to its room: spread, not packed."""
    counts: dict[str, int] = {}
    left = wanted
    while left > 0:
        placed = False
        for node_id, space in room:
            if left > 0 and counts.get(node_id, 0) < space:
                counts[node_id] = counts.get(node_id, 0) + 1
                left -= 1
                placed = True
        if not placed:  # pragma: no cover - callers check the capacity first
            raise RealscaleError("the Ray cluster has no room for that many workers")
    return counts


def _share(cpus: float, count: int, at_most: float | None = None) -> float:
    """A worker's share of ``cpus`` split ``count`` ways: whole CPUs, or a fraction below one
    (Ray accepts no fractions above one)."""
    if count == 0:
        return 0.0
    share = cpus / count
    if at_most is not None:
        share = min(share, at_most)
    if share >= 1:
        return float(math.floor(share))
    return math.floor(share * 100) / 100
