"""The Ray workers of one run and the items they work on.

A bounded number of items is in flight (two per worker: one running, the next one's input
already there), counting results that wait for an earlier one in ordered mode, so the
driver's memory does not grow with the batch or the video. When a worker dies (its process
killed, its machine gone) its items go back to the front of the queue and run on the others;
the driver keeps only the first result of each item, so nothing is lost or written twice.
A lost worker is replaced while replacements last.
"""

from __future__ import annotations

import heapq
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Generic, TypeVar

from .. import __version__
from ..errors import Cancelled, RealscaleError
from ..options import EngineOptions
from .models import ModelFiles
from .placement import Slot
from .session import ClusterError
from .worker import Worker, WorkerInfo

T = TypeVar("T")

PER_WORKER = 2
"""Items in flight per worker."""
MAX_ATTEMPTS = 3
"""Workers an item may see die under it before it counts as failed."""
START_TIMEOUT = 600.0
"""Seconds to wait for a first worker (Ray may first have to free room for it)."""
CLOSE_GRACE = 5.0
"""Seconds a finished run waits for workers still loading the model."""
_POLL = 0.2


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """An item and its result, or the one-line reason it failed."""

    item: T
    value: Any = None
    error: str | None = None


@dataclass(eq=False)
class _Member:
    handle: Any
    slot: Slot
    starting: Any = None
    """The ObjectRef of its start() call until it has answered."""
    info: WorkerInfo | None = None
    busy: int = 0

    def label(self) -> str:
        if self.info is not None:
            return f"{self.info.host} (pid {self.info.pid})"
        return f"machine {self.slot.node_id[:8]}"


@dataclass(order=True)
class _Queued(Generic[T]):
    index: int
    item: T = field(compare=False)


class WorkerPool:
    """Start with ``start()`` (returns the first worker's info), run items with ``map()``,
    and always ``close()``."""

    def __init__(self, ray: ModuleType, slots: list[Slot], settings: EngineOptions,
                 model: ModelFiles, *, per_worker: int = PER_WORKER,
                 start_timeout: float = START_TIMEOUT,
                 notify: Callable[[str], None] | None = None) -> None:
        self.ray = ray
        self.slots = slots
        self.settings = settings
        self.per_worker = per_worker
        self.window = per_worker * len(slots)
        self.start_timeout = start_timeout
        self.notify = notify or _to_stderr
        self.members: list[_Member] = []
        self.replacements = len(slots)
        self.info: WorkerInfo | None = None
        self._actor = ray.remote(Worker)
        self._model = ray.put(model)
        self._lost = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                      ray.exceptions.NodeDiedError, ray.exceptions.OutOfMemoryError,
                      ray.exceptions.LocalRayletDiedError)

    # Workers.

    def start(self) -> WorkerInfo:
        """Start every worker; return once one has loaded the model."""
        for slot in self.slots:
            self._launch(slot)
        deadline = time.monotonic() + self.start_timeout
        while self.info is None:
            self._poll_starting(_POLL)
            if not self.members:
                msg = ("every Ray worker stopped while loading the model; see the workers' "
                       "logs (`ray logs`) and `ray status`")
                raise ClusterError(msg)
            if time.monotonic() > deadline:
                msg = (f"no Ray worker started within {self.start_timeout:.0f} s: the cluster "
                       "has no free CPUs or GPUs for them (see `ray status`); free some or "
                       "ask for fewer with --ray-workers")
                raise ClusterError(msg)
        return self.info

    def ready_workers(self) -> int:
        return sum(1 for member in self.members if member.info is not None)

    def _launch(self, slot: Slot) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        handle = self._actor.options(
            num_cpus=slot.cpus, num_gpus=slot.gpus, max_restarts=0, max_task_retries=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(slot.node_id, soft=True),
        ).remote(self.settings)
        self.members.append(_Member(handle, slot, starting=handle.start.remote(self._model)))

    def _poll_starting(self, timeout: float) -> None:
        starting = {member.starting: member for member in self.members
                    if member.starting is not None}
        if not starting:
            return
        ready, _ = self.ray.wait(list(starting), num_returns=len(starting), timeout=timeout)
        for ref in ready:
            member = starting[ref]
            member.starting = None
            try:
                answer = self.ray.get(ref)
            except self._lost as exc:
                self._drop(member, f"stopped while loading the model ({_first_line(exc)})")
                continue
            if isinstance(answer, str):
                raise RealscaleError(answer)  # the model cannot load there: nor anywhere else
            if answer.version != __version__:
                msg = (f"the Ray worker on {answer.host} runs realscale {answer.version}, this "
                       f"machine {__version__}; install the same version on every machine")
                raise ClusterError(msg)
            member.info = answer
            if self.info is None:
                self.info = answer

    def _drop(self, member: _Member, why: str) -> None:
        """Forget a dead worker and start another in its place while replacements last."""
        self.members.remove(member)
        self.ray.kill(member.handle, no_restart=True)
        if self.replacements > 0:
            self.replacements -= 1
            self._launch(member.slot)
            self.notify(f"a Ray worker on {member.label()} {why}; starting another")
        else:
            self.notify(f"a Ray worker on {member.label()} {why}")

    def close(self, *, finished: bool = False) -> None:
        """End every worker. After a ``finished`` run, workers still loading the model get a
        few seconds to finish (so that they leave no copy of it behind); otherwise (Ctrl-C, an
        error) they end at once, whatever they are doing: the driver has written nothing that
        is not complete."""
        members, self.members = self.members, []
        starting = [member.starting for member in members if member.starting is not None]
        if finished and starting:
            self.ray.wait(starting, num_returns=len(starting), timeout=CLOSE_GRACE)
        for member in members:
            self.ray.kill(member.handle, no_restart=True)

    # Items.

    def map(self, items: Iterable[T], submit: Callable[[Any, T], Any], *, ordered: bool,
            cancelled: Callable[[], bool] | None = None) -> Iterator[Outcome[T]]:
        """Run ``submit(worker, item)`` (which returns the ObjectRef of a worker call) for each
        item and yield the outcomes: as they finish, or in the items' order. A RealscaleError
        raised by ``submit`` is that item's outcome without a worker."""
        source = iter(items)
        exhausted = False
        queue: list[_Queued[T]] = []  # items to run again, earliest first
        flight: dict[Any, tuple[_Queued[T], _Member]] = {}
        finished: dict[int, Outcome[T]] = {}
        attempts: dict[int, int] = {}
        taken = 0
        yielded = 0
        waiting_since: float | None = None
        try:
            while True:
                self._poll_starting(0)
                # Fill: earlier items first, each to the least busy worker.
                while len(flight) + len(finished) < self.window:
                    member = self._idle_member()
                    if member is None:
                        break
                    if queue:
                        entry = heapq.heappop(queue)
                    elif not exhausted:
                        try:
                            entry = _Queued(taken, next(source))
                        except StopIteration:
                            exhausted = True
                            continue
                        taken += 1
                    else:
                        break
                    try:
                        ref = submit(member.handle, entry.item)
                    except RealscaleError as exc:
                        finished[entry.index] = Outcome(entry.item, error=str(exc))
                    else:
                        flight[ref] = (entry, member)
                        member.busy += 1
                # Hand over what is done.
                if ordered:
                    while yielded in finished:
                        yield finished.pop(yielded)
                        yielded += 1
                else:
                    for index in sorted(finished):
                        yield finished.pop(index)
                if exhausted and not flight and not queue and not finished:
                    return
                if cancelled is not None and cancelled():
                    raise Cancelled("the upscale on the Ray cluster was cancelled")
                if not flight:
                    # Every worker is gone; wait for a replacement, for a while.
                    waiting_since = waiting_since or time.monotonic()
                    if not self.members or \
                            time.monotonic() - waiting_since > self.start_timeout:
                        msg = ("every Ray worker stopped and none could replace them; see "
                               "`ray status` and the workers' logs (`ray logs`)")
                        raise ClusterError(msg)
                    self._poll_starting(_POLL)
                    continue
                waiting_since = None
                ready, rest = self.ray.wait(list(flight), num_returns=1, timeout=_POLL)
                if ready and rest:
                    more, _ = self.ray.wait(rest, num_returns=len(rest), timeout=0)
                    ready += more
                for ref in ready:
                    if ref not in flight:
                        continue  # requeued when its worker was lost a moment ago
                    entry, member = flight.pop(ref)
                    member.busy -= 1
                    try:
                        value = self.ray.get(ref)
                    except self._lost as exc:
                        # The worker is gone: its other items will fail too; run them all
                        # again elsewhere now.
                        lost = [entry]
                        for other in [r for r, (_, m) in flight.items() if m is member]:
                            lost.append(flight.pop(other)[0])
                        if member in self.members:
                            self._drop(member, f"stopped ({_first_line(exc)}); it had "
                                               f"{len(lost)} in hand, which go to the others")
                        for again in lost:
                            self._retry(again, attempts, queue, finished, exc)
                    except self.ray.exceptions.ObjectLostError as exc:
                        self._retry(entry, attempts, queue, finished, exc)
                    except self.ray.exceptions.RayTaskError as exc:
                        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                        finished[entry.index] = Outcome(
                            entry.item, error=f"the Ray worker on {member.label()} failed: "
                                              f"{_first_line(cause)}")
                    else:
                        finished[entry.index] = Outcome(entry.item, value=value)
        finally:
            for ref in flight:
                self.ray.cancel(ref)

    def _idle_member(self) -> _Member | None:
        ready = [m for m in self.members if m.info is not None and m.busy < self.per_worker]
        return min(ready, key=lambda m: m.busy) if ready else None

    def _retry(self, entry: _Queued[T], attempts: dict[int, int], queue: list[_Queued[T]],
               finished: dict[int, Outcome[T]], exc: BaseException) -> None:
        count = attempts[entry.index] = attempts.get(entry.index, 0) + 1
        if count >= MAX_ATTEMPTS:
            msg = (f"{count} Ray workers stopped while working on it (last: "
                   f"{_first_line(exc)}); see the workers' logs (`ray logs`)")
            finished[entry.index] = Outcome(entry.item, error=msg)
        else:
            heapq.heappush(queue, entry)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _to_stderr(message: str) -> None:
    sys.stderr.write(f"realscale: {message}\n")
    sys.stderr.flush()
