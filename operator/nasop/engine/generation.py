"""Generation in a worker thread, on a copy of the experiment, one step at a time.

A generation step takes seconds on a loaded machine, longer than a small model's epoch; early
stopping that waited for it would come an epoch or more late. So the step runs on a copy of
the experiment taken when it starts, the search goes on polling and stopping trials
meanwhile, and the proposals land on the live experiment only when the search says so (they
are dropped when the search stopped launching in the meantime).
"""

from __future__ import annotations

import concurrent.futures
import copy
import enum
import logging
import os
import threading
import time
from dataclasses import dataclass, field

import torch
from ax.core.experiment import Experiment
from ax.core.generator_run import GeneratorRun
from ax.core.trial import Trial
from ax.exceptions.core import DataRequiredError, OptimizationComplete
from ax.exceptions.generation_strategy import MaxParallelismReachedException
from ax.generation_strategy.generation_strategy import GenerationStrategy

log = logging.getLogger(__name__)

_WAIT_FOR_DATA = (DataRequiredError, MaxParallelismReachedException)


def configure_torch() -> None:
    """One torch thread for the Ax process: with two, generation is several times slower
    beside a trial training on the other core."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


class Result(enum.Enum):
    PROPOSED = "proposed"
    WAITING = "waiting"  # the strategy needs data from running trials first
    EXHAUSTED = "exhausted"  # the strategy has nothing more to propose
    FAILED = "failed"


@dataclass
class Outcome:
    result: Result
    proposals: list[list[GeneratorRun]] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0


_POOL: list[concurrent.futures.ThreadPoolExecutor] = []
_POOL_LOCK = threading.Lock()


def workers() -> int:
    """Generation steps that run at once in this process, for all its searches together:
    NASOP_GENERATION_WORKERS, else one per core (at most 4; each step is CPU work under one
    torch thread)."""
    n = int(os.environ.get("NASOP_GENERATION_WORKERS") or min(4, os.cpu_count() or 1))
    if n < 1:
        raise ValueError("NASOP_GENERATION_WORKERS must be >= 1")
    return n


def pool() -> concurrent.futures.ThreadPoolExecutor:
    """The one bounded pool every search's generation runs in (an operator drives hundreds).

    Fair across experiments: each search has at most one step queued or running, and the pool
    takes steps first in, first out, so a step waits behind at most one step of each other
    search, however long any search's steps are.
    """
    with _POOL_LOCK:
        if not _POOL:
            _POOL.append(
                concurrent.futures.ThreadPoolExecutor(workers(), thread_name_prefix="nasop-gen")
            )
        return _POOL[0]


class Generation:
    """At most one step at a time; `take()` binds the strategy to the live experiment again."""

    def __init__(self, strategy: GenerationStrategy) -> None:
        self.strategy = strategy
        self._future: concurrent.futures.Future[list[list[GeneratorRun]]] | None = None
        self._started = 0.0
        self._ran = 0.0  # seconds the last step ran (not counting its wait in the pool)

    @property
    def running(self) -> bool:
        return self._future is not None

    def done(self) -> bool:
        return self._future is not None and self._future.done()

    def wait(self) -> None:
        """Until the running step (if any) has finished; it lands on the next `take()`."""
        if self._future is not None:
            concurrent.futures.wait([self._future])

    def start(self, experiment: Experiment, n: int, seed: int | None) -> None:
        """`seed` (optimizer.seed) seeds Sobol in the strategy; here, BoTorch's raw samples
        and MC draws, which come from torch's global generator."""
        self._future = pool().submit(self._generate, n, generation_copy(experiment), seed)

    def _generate(
        self, n: int, experiment: Experiment, seed: int | None
    ) -> list[list[GeneratorRun]]:
        self._started = time.perf_counter()
        try:
            configure_torch()
            if seed is not None:
                torch.manual_seed(seed + len(experiment.trials))
            return self.strategy.gen(experiment=experiment, n=1, num_trials=n)
        finally:
            self._ran = time.perf_counter() - self._started

    def take(self, experiment: Experiment) -> Outcome:
        """Wait for the step and say how it went."""
        future, self._future = self._future, None
        if future is None:
            raise RuntimeError("no generation step is running")
        concurrent.futures.wait([future])  # at once, or when a search is stopped mid-step
        self.strategy.experiment = experiment  # the copy had the same name: allowed
        seconds = self._ran
        if future.cancelled():
            return Outcome(Result.WAITING)
        try:
            return Outcome(Result.PROPOSED, future.result(), seconds=seconds)
        except _WAIT_FOR_DATA as e:
            log.debug("generation waits for data: %s", e)
            return Outcome(Result.WAITING, seconds=seconds)
        except OptimizationComplete as e:
            log.info("generation strategy completed: %s", e)
            return Outcome(Result.EXHAUSTED, seconds=seconds)
        except Exception as e:  # a bug or a numerical failure: the next tick tries again
            log.exception("generation failed")
            return Outcome(Result.FAILED, error=str(e), seconds=seconds)

    def close(self) -> None:
        """Drop a step still queued; wait for one that runs (it uses the strategy)."""
        if self._future is not None and not self._future.cancel():
            concurrent.futures.wait([self._future])


def land(
    experiment: Experiment, proposals: list[list[GeneratorRun]], room: int
) -> tuple[list[Trial], str | None]:
    """New trials from at most `room` proposals (maxTrials/parallelism may have been lowered
    while the step ran), with the name of the node that proposed them."""
    trials: list[Trial] = []
    node = None
    for grs in proposals[: max(0, room)]:
        if not grs or not grs[0].arms:
            continue
        trials.append(experiment.new_trial(generator_run=grs[0]))
        node = grs[0]._generation_node_name or grs[0]._generator_key
    return trials, node


def generation_copy(experiment: Experiment) -> Experiment:
    """A copy of the experiment for one generation step, sharing its runner (which holds
    processes, sockets and API clients; generation never calls it; trials use the experiment's)."""
    runner = experiment.runner
    return copy.deepcopy(experiment, memo={} if runner is None else {id(runner): runner})


__all__ = ["Generation", "Outcome", "Result", "configure_torch", "generation_copy", "land"]
