"""A finished search is not ticked until its spec changes (driver.IDLE_SECONDS, RESPECS)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import loop_stubs
import pytest

from nasop.controller import handlers
from nasop.engine.search import TickReport


def _drive(monkeypatch: pytest.MonkeyPatch, finished: bool) -> list[float]:
    """Tick times of a search that is `finished` from its first tick on; its spec changes
    0.4 s in, and it is deleted at the tick after that."""

    async def main() -> list[float]:
        respec, deleted, ticks = asyncio.Event(), asyncio.Event(), []
        changed: list[float] = []

        async def tick() -> TickReport:
            ticks.append(time.monotonic())
            if changed:
                deleted.set()
            return TickReport(events=[])

        async def change_spec() -> None:
            await asyncio.sleep(0.4)
            changed.append(time.monotonic())
            respec.set()

        loop_stubs.stub_loop(monkeypatch, SimpleNamespace(finished=finished), tick)
        changing = asyncio.create_task(change_spec())
        await loop_stubs.drive(api=object(), deleted=deleted, respec=respec)
        await changing
        return [t - changed[0] for t in ticks]

    return asyncio.run(main())


def test_a_finished_search_ticks_again_only_when_its_spec_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ticks = _drive(monkeypatch, finished=True)
    assert len(ticks) == 2  # the one that found it finished, then the one the change woke
    assert ticks[0] < 0 <= ticks[1] < 0.3


def test_a_running_search_ticks_every_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = _drive(monkeypatch, finished=False)
    assert len(ticks) >= 5  # 0.05 s apart over the 0.4 s before its spec changed


def test_the_spec_change_filter_passes_a_new_generation_only() -> None:
    uid = "test-uid"
    handlers.RESPECS.pop(uid, None)
    handlers._GENERATIONS.pop(uid, None)
    body: Any = {"metadata": {"generation": 1}}
    try:
        assert handlers._spec_changed(type="ADDED", body=body, uid=uid)  # first sight
        asyncio.run(handlers.notice_spec_change(body=body, uid=uid))
        assert handlers.RESPECS[uid].is_set()
        handlers.RESPECS[uid].clear()
        assert not handlers._spec_changed(type="MODIFIED", body=body, uid=uid)  # a status write
        body = {"metadata": {"generation": 2}}
        assert handlers._spec_changed(type="MODIFIED", body=body, uid=uid)
        assert not handlers._spec_changed(type="DELETED", body=body, uid=uid)
    finally:
        handlers.RESPECS.pop(uid, None)
        handlers._GENERATIONS.pop(uid, None)
