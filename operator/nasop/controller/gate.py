"""A bound on the experiments' ticks running at once, with the reconciling ones first.

One operator process drives every experiment, and each tick is CPU work under the process's one
GIL (completing trials in Ax, saving the state, building the status). With hundreds of
experiments ticking at once, every tick got a sliver of the CPU and took the sum of all of
them: a trial that finished during a burst of new experiments waited up to 47 s to show in its
experiment's status (bench/operator_scale.py, 500 experiments, docs/benchmarks.md). The gate lets
a few ticks run at once and hands a free slot to the most urgent waiter: a tick woken by a trial's
change (RECONCILE) before a periodic one (TICK), and both before a search opening (OPEN), so a
burst of new experiments waits for the running ones instead of slowing them. A waiter that has
waited `max_wait` seconds goes first whatever its priority, so ticks that keep the slots busy
cannot keep a search from opening for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import AsyncIterator

RECONCILE = 0  #: a tick woken by a change of the experiment's trial jobs or pods
TICK = 1  #: a periodic tick, or a tick while the search generates
OPEN = 2  #: reading (or creating) a search's state before its first tick


class PriorityGate:
    """At most `slots` holders at once; a freed slot goes to the waiter with the lowest
    priority number, first come first served within one priority, unless the longest waiter
    has waited `max_wait` seconds: then to it."""

    def __init__(self, slots: int, max_wait: float = 10.0) -> None:
        if slots < 1:
            raise ValueError("a gate needs at least one slot")
        self.slots, self.max_wait = slots, max_wait
        self._free = slots
        # (priority, order, since, future); an entry whose future is done is skipped
        self._waiters: list[tuple[int, int, float, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for *_, f in self._waiters if not f.done())

    @contextlib.asynccontextmanager
    async def held(self, priority: int) -> AsyncIterator[None]:
        await self._acquire(priority)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: int) -> None:
        if self._free > 0:  # then nobody waits: a freed slot goes to a waiter before it is free
            self._free -= 1
            return
        handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), time.monotonic(), handed))
        try:
            await handed
        except asyncio.CancelledError:
            # handed a slot in the same moment as cancelled: pass it on; else the entry is
            # skipped when reached (its future is done)
            if handed.done() and not handed.cancelled():
                self._release()
            raise

    def _release(self) -> None:
        live = [w for w in self._waiters if not w[3].done()]
        if live:
            oldest = min(live, key=lambda w: w[1])
            if time.monotonic() - oldest[2] >= self.max_wait:
                oldest[3].set_result(None)  # its entry is skipped when reached
                return
        while self._waiters:
            *_, handed = heapq.heappop(self._waiters)
            if not handed.done():
                handed.set_result(None)  # the slot passes to it without being freed
                return
        self._free += 1


def held(gate: PriorityGate | None, priority: int) -> contextlib.AbstractAsyncContextManager[None]:
    """`gate.held(priority)`, or nothing to wait for without a gate."""
    return gate.held(priority) if gate is not None else contextlib.nullcontext()


__all__ = ["OPEN", "RECONCILE", "TICK", "PriorityGate", "held"]
