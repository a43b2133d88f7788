"""One experiment being searched: the Ax experiment, its generation strategy, a runner, a store.

`Search.tick()` is the whole control loop in one non-blocking step: poll running trials, fetch
their metrics, stop weak ones early, launch what the last generation proposed, and start the
next generation in a worker thread (generation.py). The CLI calls it in a loop; the operator's
daemon calls it from kopf. While a generation runs the loop launches nothing and defers saving:
the worker is updating the generation strategy.

The pieces: state.py (what the search remembers), ledger.py (questions about its trials),
phases.py (the phase rules), outcomes.py (how trials end), launching.py (how they start),
status.py (the resource's status block).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ax.core.base_trial import BaseTrial, TrialStatus
from ax.core.experiment import Experiment
from ax.generation_strategy.generation_strategy import GenerationStrategy

from nasop import errors, spec
from nasop.engine import launching, outcomes, pareto, phases, status, strategy, warmstart
from nasop.engine.events import Event, TickReport
from nasop.engine.experiment import experiment_from_spec
from nasop.engine.generation import Generation, Result, configure_torch, generation_copy, land
from nasop.engine.ledger import Ledger
from nasop.engine.state import PROPS, SearchState
from nasop.state.base import ExperimentStore, Snapshot
from nasop.trials.runner import TorchXTrialRunner

log = logging.getLogger(__name__)

_FROZEN = "spec.searchSpace/objectives/constraints cannot change once a search has started"


class Search:
    """Drives one NASExperiment to its end; it owns its runner (closed by `close()`)."""

    def __init__(
        self,
        spec_: spec.NASExperimentSpec,
        name: str,
        snapshot: Snapshot,
        runner: TorchXTrialRunner,
        store: ExperimentStore | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec, self.name, self.store, self.clock = spec_, name, store, clock
        self.experiment: Experiment = snapshot.experiment
        self.strategy: GenerationStrategy = snapshot.strategy
        self.version = snapshot.version
        self.runner = self.experiment.runner = runner
        self.state: SearchState = SearchState.read(self.experiment)
        self.state.begin(spec.now_rfc3339(), self.clock())
        self.ledger = Ledger(self.experiment, self.state, spec_, starts_at_once=runner.is_local)
        self.generation = Generation(self.strategy)
        self.last_generation_seconds: float | None = None
        self._pending_events: list[Event] = []
        self._unsaved = False  # changed but not saved yet (while a generation ran, or launched)
        self._followed: dict[int, float] = {}  # trial index -> when its output was last read
        configure_torch()
        self.runner.deadline = phases.deadline(self.state, self.spec)

    @classmethod
    def open(
        cls,
        spec_: spec.NASExperimentSpec,
        name: str,
        runner: TorchXTrialRunner,
        store: ExperimentStore | None,
        clock: Callable[[], float] = time.time,
    ) -> Search:
        """Resume the stored experiment of this name, or create a new one."""
        snapshot = store.load(name=name) if store else None
        if snapshot is None:
            search = cls(spec_, name, _new_snapshot(spec_, name, runner), runner, store, clock)
            search._warm_start()
            search.save()
            return search
        stored = SearchState.read(snapshot.experiment).fingerprint
        if stored is not None and stored != spec_.search_fingerprint():
            raise errors.SpecError(
                "spec.searchSpace/objectives/constraints differ from the stored experiment "
                f"{name!r}; they cannot change once a search has started",
                hint="revert the change, or use a new name (or state dir) for a new search",
            )
        strategy.use_warm_start_surrogate(snapshot.strategy)  # a strategy saved before
        strategy.model_last_values(snapshot.strategy)  # these settings gets them on resume
        search = cls(spec_, name, snapshot, runner, store, clock)
        runner.release_harvested(search._ended)  # pods held past the save that recorded them
        return search

    def _warm_start(self) -> None:
        if self.spec.warm_start:
            sources = warmstart.load_sources(self.spec.warm_start, self.store)
            warm = warmstart.seed(self.experiment, self.spec, sources)
            self.state.warm = dict(warm.copied)
            self._pending_events.append(Event("WarmStarted", f"warm start: {warm.summary()}"))

    def update_spec(self, spec_: spec.NASExperimentSpec) -> None:
        """Budget, parallelism and suspend may change mid-search; the search space may not."""
        if spec_.search_fingerprint() != self.spec.search_fingerprint():
            raise errors.SpecError(_FROZEN, hint="revert the change, or create a new NASExperiment")
        rule = {"stop_when_improvement_below", "improvement_window"}
        if spec_.budget.model_dump(include=rule) != self.spec.budget.model_dump(include=rule):
            self.state.converged = None  # judged again under the new rule
        self.spec = self.ledger.spec = spec_
        self.runner.deadline = phases.deadline(self.state, self.spec)
        more = self.ledger.budget_left() > 0 and not self.state.converged
        if self.phase is spec.Phase.SUCCEEDED and more:  # maxTrials raised after the end
            self.state.phase, self.state.completion_time = spec.Phase.RUNNING, None

    # -- queries --------------------------------------------------------------------------

    @property
    def phase(self) -> spec.Phase:
        return self.state.phase

    @property
    def finished(self) -> bool:
        return self.phase in (spec.Phase.SUCCEEDED, spec.Phase.FAILED)

    def trials_in(self, *statuses: TrialStatus) -> list[BaseTrial]:
        return self.ledger.trials_in(*statuses)

    def observations(self) -> list[pareto.Observation]:
        return self.ledger.observations()

    def front(self) -> pareto.Front:
        return self.ledger.front()

    def status(self) -> spec.NASExperimentStatus:
        return status.build(self.ledger, self.front())

    # -- the loop -------------------------------------------------------------------------

    def tick(self) -> TickReport:
        """One non-blocking step; returns what happened."""
        report = TickReport(events=self._pending_events)
        self._pending_events = []
        if self.generation.done():
            self._land_generation(report)
        if self.finished:
            self._save_unsaved()
            return report
        generating = self.generation.running
        book, runner = self.ledger, self.runner
        if not generating:  # launching saves first, which must not race the worker
            launching.recover_candidates(book, runner, self.save, report)
        outcomes.poll(book, runner, report, self.clock())
        outcomes.fix_reference(book, report)
        outcomes.follow(book, runner, self.clock(), self._followed)
        outcomes.early_stop(book, runner, report, self.clock())
        outcomes.check_convergence(book, report)
        if not generating:
            launching.relaunch_requeued(book, runner, self.save, report)
        self._update_phase(report)
        if generating:
            self._unsaved |= report.changed
            if self.finished:  # no tick follows: let the step land (its proposals are dropped)
                self._land_generation(report)
                self._save_unsaved()
            else:
                report.generating = True
            return report
        self._unsaved |= report.changed
        self._save_unsaved()  # before the worker starts changing the strategy
        if self.phase is spec.Phase.RUNNING:
            self._start_generation(report)
        return report

    def _update_phase(self, report: TickReport) -> None:
        decision = phases.decide(self.state, self.ledger.phase_counts(), self.spec, self.clock())
        if decision.abandon_running:
            outcomes.abandon_running(self.ledger, self.runner, "search failed")
        report.changed |= phases.apply(self.state, decision, report.events)
        status.track_conditions(self.ledger)

    def _start_generation(self, report: TickReport) -> None:
        if phases.out_of_time(self.state, self.spec, self.clock()):
            return
        n = self.ledger.room_for_new()
        if n <= 0 or self.state.exhausted or self.state.converged:
            return
        self.generation.start(self.experiment, n, self.spec.optimizer.seed)
        report.generating = True

    def _land_generation(self, report: TickReport) -> None:
        outcome = self.generation.take(self.experiment)  # the strategy is the live one again
        if self._unsaved:  # what changed while the worker ran
            self._unsaved = False
            self.save()
        self.last_generation_seconds = outcome.seconds
        if outcome.result is Result.EXHAUSTED:
            self.state.exhausted = report.changed = True
        elif outcome.result is Result.FAILED:
            report.events.append(
                Event("GenerationFailed", f"generation failed: {outcome.error}", warning=True)
            )
        if outcome.result is not Result.PROPOSED:
            return
        if self.spec.suspend or self.state.converged or self.finished:
            log.info("dropping %d proposals: launching stopped", len(outcome.proposals))
            return  # proposals are not part of the experiment until a trial is made of them
        trials, node = land(self.experiment, outcome.proposals, self.ledger.room_for_new())
        if trials:
            self.state.generator, report.changed = node, True
        launching.launch_all(self.ledger, self.runner, self.save, trials, report)
        # the launched trials are saved once, by the tick (with what it polls) or right after
        self._unsaved |= report.changed

    def _save_unsaved(self) -> None:
        if self._unsaved:
            self._unsaved = False
            self.save()

    # -- lifecycle ------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """What a store saves: the experiment (with the search's state in it) and strategy."""
        self.state.write(self.experiment)
        return Snapshot(self.experiment, self.strategy, self.version)

    def save(self) -> None:
        if self.store is None:
            return
        snapshot = self.snapshot()
        self.store.save(name=self.name, snapshot=snapshot)
        self.version = snapshot.version
        # the ends are saved: the pods of those trials may go now (a cluster's harvest.py)
        self.runner.release_harvested(self._ended)

    def _ended(self, index: int) -> bool:
        """The trial's end is recorded (in the state just saved or loaded)."""
        trial = self.experiment.trials.get(index)
        return trial is not None and trial.status.is_terminal

    def cancel_running(self, reason: str = "interrupted") -> list[int]:
        """Cancel every running trial (Ctrl-C, delete); they are retried on resume."""
        if self.generation.running:  # proposals not yet launched are dropped, not run
            self.generation.take(self.experiment)
        stopped = []
        for t in self.ledger.trials_in(TrialStatus.RUNNING):
            self.runner.stop(t, reason=reason)
            outcomes.record_infra(self.ledger, t, reason, TickReport(), abandon=True)
            stopped.append(t.index)
        self.save()
        return stopped

    def close(self) -> None:
        """Wait for a running generation step, then close the runner (its fork server)."""
        self.generation.close()
        self.runner.close()


def _new_snapshot(spec_: spec.NASExperimentSpec, name: str, runner: TorchXTrialRunner) -> Snapshot:
    experiment = experiment_from_spec(spec_, name, runner)
    SearchState(fingerprint=spec_.search_fingerprint()).write(experiment)
    return Snapshot(experiment, strategy.strategy_from_spec(spec_))


__all__ = ["PROPS", "Event", "Search", "TickReport", "configure_torch", "generation_copy"]
