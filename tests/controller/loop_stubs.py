"""driver.drive() with its experiment's steps stubbed: what the tests of its loop share."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from nasop.controller import driver
from nasop.controller.settings import Settings
from nasop.engine.search import TickReport

BODY = {"metadata": {"name": "e", "namespace": "ns", "uid": "u"}, "spec": {}}


class NeverStopped:
    """kopf's DaemonStopped as it is until the daemon is stopped: false."""

    def __bool__(self) -> bool:
        return False


def stub_loop(
    monkeypatch: pytest.MonkeyPatch, search: Any, tick: Callable[[], Awaitable[TickReport]]
) -> None:
    """The loop opens `search` (spec unchanged), ticks with `tick`, publishes (the status is
    then current) and finishes without the API server."""

    async def read_spec(self: Any) -> str:
        self.search = search
        return "unchanged"

    async def tick_(self: Any) -> TickReport:
        return await tick()

    async def publish(self: Any, report: TickReport, written: bool) -> bool:
        self.stale = False
        return True

    async def finish(self: Any, stopped_by_deletion: bool) -> None:
        return None

    monkeypatch.setattr(driver._Loop, "read_spec", read_spec)
    monkeypatch.setattr(driver._Loop, "tick", tick_)
    monkeypatch.setattr(driver._Loop, "publish", publish)
    monkeypatch.setattr(driver._Loop, "finish", finish)


async def drive(**kwargs: Any) -> None:
    """driver.drive() of BODY, ticking every 0.05 s, never stopped, with `kwargs`."""
    await driver.drive(
        BODY,
        Settings(tick_seconds=0.05),
        NeverStopped(),
        logging.getLogger("test"),
        lambda *a: None,
        **kwargs,
    )
