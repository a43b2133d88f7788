"""The operator's bound on searches opening at once (NASOP_OPEN_WORKERS, driver._Loop.open)."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from nasop.controller import driver
from nasop.controller.settings import Settings


def test_open_workers_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NASOP_OPEN_WORKERS", raising=False)
    assert Settings.load().open_workers == 1
    monkeypatch.setenv("NASOP_OPEN_WORKERS", "0")
    assert Settings.load().open_workers == 0  # no bound


def _loop(name: str) -> Any:
    body = {"metadata": {"name": name, "namespace": "ns", "uid": name}, "spec": {}}
    return driver._Loop(body, Settings(), None, lambda *a: None, asyncio.Event(), None)  # type: ignore[arg-type]


@pytest.mark.parametrize(("bound", "expected"), [(1, 1), (2, 2), (None, 6)])
def test_no_more_searches_open_at_once_than_the_bound(
    monkeypatch: pytest.MonkeyPatch, bound: int | None, expected: int
) -> None:
    """Six experiments open together: with a bound of 2, never more than 2 build at once."""
    lock, now, most = threading.Lock(), [0], [0]

    def open_search(body: Any, *_: Any) -> Any:  # the blocking part, in a thread
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.1)
        with lock:
            now[0] -= 1
        return SimpleNamespace(name=body["metadata"]["name"], experiment=SimpleNamespace(trials={}))

    monkeypatch.setattr(driver, "open_search", open_search)

    async def main() -> list[Any]:
        gate = asyncio.Semaphore(bound) if bound else None
        loops = [_loop(f"e{i}") for i in range(6)]
        for loop in loops:
            loop.opening = gate
        await asyncio.gather(*(loop.open(None) for loop in loops))
        return [loop.search.name for loop in loops]

    assert asyncio.run(main()) == [f"e{i}" for i in range(6)]
    assert most[0] == expected
