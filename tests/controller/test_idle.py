"""A finished search is not ticked until its spec changes (driver.IDLE_SECONDS, RESPECS)."""

from __future__ import annotations

import asyncio
import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest

from nasop.controller import driver, handlers
from nasop.controller.settings import Settings
from nasop.engine.search import TickReport


class _NeverStopped:
    def __bool__(self) -> bool:
        return False


def _drive(monkeypatch: pytest.MonkeyPatch, finished: bool) -> list[float]:
    """Tick times of a search that is `finished` from its first tick on; its spec changes
    0.4 s in, and it is deleted at the tick after that."""

    async def main() -> list[float]:
        respec, deleted, ticks = asyncio.Event(), asyncio.Event(), []
        changed: list[float] = []

        async def read_spec(self: Any) -> str:
            self.search = SimpleNamespace(finished=finished)
            return "unchanged"

        async def tick(self: Any) -> TickReport:
            ticks.append(time.monotonic())
            if changed:
                deleted.set()
            return TickReport(events=[])

        async def publish(self: Any, report: TickReport, written: bool) -> bool:
            self.stale = False
            return True

        async def finish(self: Any, stopped_by_deletion: bool) -> None:
            return None

        async def change_spec() -> None:
            await asyncio.sleep(0.4)
            changed.append(time.monotonic())
            respec.set()

        for name, fn in [("read_spec", read_spec), ("tick", tick)]:
            monkeypatch.setattr(driver._Loop, name, fn)
        monkeypatch.setattr(driver._Loop, "publish", publish)
        monkeypatch.setattr(driver._Loop, "finish", finish)
        body = {"metadata": {"name": "e", "namespace": "ns", "uid": "u"}, "spec": {}}
        changing = asyncio.create_task(change_spec())
        await driver.drive(
            body,
            Settings(tick_seconds=0.05),
            _NeverStopped(),
            logging.getLogger("test"),
            lambda *a: None,
            api=object(),
            deleted=deleted,
            respec=respec,
        )
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
