"""Joining a Ray cluster for one run, and what its machines offer."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import ModuleType

from ..errors import RealscaleError
from .options import FIND_OR_START
from .placement import Node

INSTALL_HINT = ("--ray needs Ray, which is not installed here: pip install 'realscale[ray]' "
                "(on every machine of the cluster)")


class ClusterError(RealscaleError):
    """The Ray cluster could not be used (no connection, no room, every worker lost)."""


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise ClusterError(INSTALL_HINT) from None
    return ray


@contextlib.contextmanager
def joined(address: str) -> Iterator[ModuleType]:
    """Ray, connected to the cluster at ``address`` for the duration (or left as it is when
    the caller already initialised Ray: realscale inside someone's Ray program)."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    with _signal_handlers_kept():
        try:
            ray.init(address=address if address != FIND_OR_START else None,
                     logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"at {address}" if address not in (FIND_OR_START, "auto") else "here"
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            msg = (f"could not join a Ray cluster {where} ({first}); check the address "
                   "(`ray status` on the head shows it) and that this machine runs the "
                   "same Ray version")
            raise ClusterError(msg) from None
    try:
        yield ray
    finally:
        with _signal_handlers_kept():
            ray.shutdown()


def live_nodes(ray: ModuleType) -> list[Node]:
    nodes = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        resources = node.get("Resources", {})
        nodes.append(Node(node_id=node["NodeID"], address=node.get("NodeManagerAddress", ""),
                          cpus=float(resources.get("CPU", 0)),
                          gpus=float(resources.get("GPU", 0))))
    return nodes


@contextlib.contextmanager
def _signal_handlers_kept() -> Iterator[None]:
    """ray.init and ray.shutdown install their own SIGTERM handler (exit at once); realscale's
    commands have theirs (unwind, remove temporary files, exit 143 or 130), which must stay."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kinds = [getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP")
             if hasattr(signal, name)]
    previous = {kind: signal.getsignal(kind) for kind in kinds}
    try:
        yield
    finally:
        for kind, handler in previous.items():
            if handler is not None and signal.getsignal(kind) is not handler:
                signal.signal(kind, handler)
