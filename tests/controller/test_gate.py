"""The operator's bound on ticks at once, reconciling ones first (controller/gate.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import loop_stubs
import pytest

from nasop.controller import gate
from nasop.controller.settings import Settings
from nasop.engine.search import TickReport


def test_tick_slots_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NASOP_TICK_SLOTS", raising=False)
    assert Settings.load().tick_slots == 2
    monkeypatch.setenv("NASOP_TICK_SLOTS", "0")
    assert Settings.load().tick_slots == 0  # no bound
    with pytest.raises(ValueError, match="at least one slot"):
        gate.PriorityGate(0)


def test_no_more_holders_than_slots() -> None:
    async def main() -> int:
        g, now, most = gate.PriorityGate(2), [0], [0]

        async def hold() -> None:
            async with g.held(gate.TICK):
                now[0] += 1
                most[0] = max(most[0], now[0])
                await asyncio.sleep(0.01)
                now[0] -= 1

        await asyncio.gather(*(hold() for _ in range(6)))
        return most[0]

    assert asyncio.run(main()) == 2


def test_a_freed_slot_goes_to_the_most_urgent_waiter_first_come_first_served() -> None:
    async def main() -> list[str]:
        g, order = gate.PriorityGate(1), []

        async def wait(name: str, priority: int) -> None:
            async with g.held(priority):
                order.append(name)

        async with g.held(gate.TICK):  # the one slot is taken while they line up
            tasks = []
            for name, priority in [
                ("open", gate.OPEN),
                ("tick-1", gate.TICK),
                ("reconcile", gate.RECONCILE),
                ("tick-2", gate.TICK),
            ]:
                tasks.append(asyncio.create_task(wait(name, priority)))
                await asyncio.sleep(0)  # queued in this order
            assert g.waiting == 4
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(main()) == ["reconcile", "tick-1", "tick-2", "open"]


def test_a_waiter_waiting_past_max_wait_goes_first_whatever_its_priority() -> None:
    async def main() -> list[str]:
        g, order = gate.PriorityGate(1, max_wait=0.2), []

        async def wait(name: str, priority: int) -> None:
            async with g.held(priority):
                order.append(name)

        async with g.held(gate.TICK):
            opening = asyncio.create_task(wait("open", gate.OPEN))
            await asyncio.sleep(0.3)  # the opening search has waited past max_wait
            ticking = asyncio.create_task(wait("tick", gate.TICK))
            await asyncio.sleep(0)
        await asyncio.gather(opening, ticking)
        return order

    assert asyncio.run(main()) == ["open", "tick"]


def test_a_cancelled_waiter_loses_no_slot() -> None:
    async def main() -> bool:
        g = gate.PriorityGate(1)
        async with g.held(gate.TICK):
            waiter = asyncio.create_task(g.held(gate.RECONCILE).__aenter__())
            await asyncio.sleep(0)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
        # the slot is free again: entering does not wait
        async with asyncio.timeout(1), g.held(gate.OPEN):
            return g.waiting == 0

    assert asyncio.run(main())


class _RecordingGate(gate.PriorityGate):
    def __init__(self) -> None:
        super().__init__(1)
        self.priorities: list[int] = []

    def held(self, priority: int) -> Any:
        self.priorities.append(priority)
        return super().held(priority)


def test_a_tick_woken_by_a_trial_change_enters_as_reconcile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """drive(): the tick after a wake (a watched job or pod changed) asks for RECONCILE, the
    periodic ones for TICK."""

    async def main() -> list[int]:
        woken, deleted, ticks = asyncio.Event(), asyncio.Event(), [0]

        async def tick() -> TickReport:
            ticks[0] += 1
            if ticks[0] == 1:
                woken.set()  # a trial's job changed during the first tick
            if ticks[0] == 3:
                deleted.set()
            return TickReport(events=[])

        loop_stubs.stub_loop(monkeypatch, SimpleNamespace(finished=False), tick)
        watches = SimpleNamespace(waker=lambda uid: woken, forget=lambda uid: None, api=object())
        g = _RecordingGate()
        await loop_stubs.drive(deleted=deleted, watches=watches, gate=g)
        return g.priorities

    assert asyncio.run(main()) == [gate.TICK, gate.RECONCILE, gate.TICK]
