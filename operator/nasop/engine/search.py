"""One experiment being searched: the Ax experiment, its generation strategy, a runner, a store.

`Search.tick()` is the whole control loop in one non-blocking step: poll running trials, fetch
their metrics, stop weak ones early, launch what the last generation proposed, and start the
next generation in a worker thread. The CLI calls it in a loop; the operator's daemon calls it
from kopf. Generation never runs on the caller's thread, and it works on a copy of the
experiment taken when it starts, so the loop goes on polling and stopping trials meanwhile
(a generation step takes seconds on a loaded machine, longer than a small model's epoch; early
stopping that waited for it would come an epoch or more late). While a generation runs the loop
launches nothing and defers saving: the worker is updating the generation strategy.
"""

from __future__ import annotations

import concurrent.futures
import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from ax.core.base_trial import BaseTrial, TrialStatus
from ax.core.experiment import Experiment
from ax.core.generator_run import GeneratorRun
from ax.core.trial import Trial
from ax.exceptions.core import DataRequiredError, OptimizationComplete
from ax.exceptions.generation_strategy import MaxParallelismReachedException
from ax.generation_strategy.generation_strategy import GenerationStrategy
from ax.utils.common.result import Ok

from nasop import errors, spec
from nasop.engine import experiment as experiment_mod
from nasop.engine import pareto, status as status_mod, stopping, strategy as strategy_mod
from nasop.engine import warmstart
from nasop.state.base import ExperimentStore, Snapshot
from nasop.trials import metric as metric_mod
from nasop.trials import packs
from nasop.trials.runner import APP_HANDLE, TorchXTrialRunner

log = logging.getLogger(__name__)

PROPS = "nasop"
MAX_INFRA_RETRIES = 2
_WAIT_FOR_DATA = (DataRequiredError, MaxParallelismReachedException)


@dataclass(frozen=True)
class Event:
    """Something a user should hear about (the operator turns these into Kubernetes Events)."""

    reason: str  # TrialLaunched | TrialCompleted | TrialFailed | TrialEarlyStopped | Phase...
    message: str
    trial: int | None = None
    warning: bool = False


@dataclass
class TickReport:
    events: list[Event] = field(default_factory=list)
    changed: bool = False
    generating: bool = False


def configure_torch() -> None:
    """One torch thread for the Ax process: with two, generation is 3-10x slower beside a trial."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


class Search:
    """Drives one NASExperiment to its end; all state lives in the Ax experiment."""

    def __init__(
        self,
        spec_: spec.NASExperimentSpec,
        name: str,
        snapshot: Snapshot,
        runner: TorchXTrialRunner,
        store: ExperimentStore | None,
        clock: Any = time.time,
    ) -> None:
        self.spec = spec_
        self.name = name
        self.experiment: Experiment = snapshot.experiment
        self.strategy: GenerationStrategy = snapshot.strategy
        self.version = snapshot.version
        self.runner = runner
        self.experiment.runner = runner
        self.store = store
        self.clock = clock
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="nasop-gen")
        self._future: concurrent.futures.Future[list[list[GeneratorRun]]] | None = None
        self._gen_started = 0.0
        self.last_generation_seconds: float | None = None
        self._pending_events: list[Event] = []
        self._unsaved = False  # changed while a generation ran; saved once it lands
        configure_torch()
        props = self.props
        props.setdefault("startTime", spec.now_rfc3339())
        props.setdefault("startEpoch", self.clock())
        props.setdefault("reasons", {})
        props.setdefault("infra", [])
        props.setdefault("requeue", [])
        props.setdefault("phase", spec.Phase.RUNNING.value)
        props.setdefault("warm", {})
        self._set_deadline()

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        spec_: spec.NASExperimentSpec,
        name: str,
        runner: TorchXTrialRunner,
        store: ExperimentStore | None,
        **kw: Any,
    ) -> Search:
        """Resume the stored experiment of this name, or create a new one."""
        snapshot = store.load(name=name) if store else None
        warm: warmstart.WarmStartResult | None = None
        if snapshot is None:
            experiment = experiment_mod.experiment_from_spec(spec_, name, runner)
            experiment._properties[PROPS] = {"fingerprint": spec_.search_fingerprint()}
            if spec_.warm_start:
                sources = warmstart.load_sources(spec_.warm_start, store)
                warm = warmstart.seed(experiment, spec_, sources)
                experiment._properties[PROPS]["warm"] = {
                    str(i): src for i, src in warm.copied.items()
                }
            snapshot = Snapshot(experiment, strategy_mod.strategy_from_spec(spec_))
        else:
            stored = snapshot.experiment._properties.get(PROPS, {}).get("fingerprint")
            if stored is not None and stored != spec_.search_fingerprint():
                raise errors.SpecError(
                    "spec.searchSpace/objectives/constraints differ from the stored experiment "
                    f"{name!r}; they cannot change once a search has started",
                    hint="revert the change, or use a new name (or state dir) for a new search",
                )
            # states saved before these settings existed get them on resume
            strategy_mod.use_warm_start_surrogate(snapshot.strategy)
            strategy_mod.model_last_values(snapshot.strategy)
        search = cls(spec_, name, snapshot, runner, store, **kw)
        if warm is not None:
            search._pending_events.append(Event("WarmStarted", f"warm start: {warm.summary()}"))
        if store and snapshot.version is None:
            search.save()
        return search

    def _recover_candidates(self, report: TickReport) -> None:
        """Trials saved just before launch: adopt the app if it exists, else launch it now.
        This is what makes a launch exactly-once across crashes."""
        relaunch: list[Trial] = []
        for trial in self.trials_in(TrialStatus.CANDIDATE):
            meta = self.runner.adopt(trial)
            report.changed = True
            if meta:
                trial.update_run_metadata(meta)
                trial.mark_running(no_runner_required=True)
                report.events.append(Event(
                    "TrialAdopted", f"trial {trial.index} re-attached to {meta['app_handle']}",
                    trial.index))
            else:
                relaunch.append(trial)  # type: ignore[arg-type]
        self._launch_all(relaunch, report)

    @property
    def props(self) -> dict[str, Any]:
        return self.experiment._properties.setdefault(PROPS, {})

    def update_spec(self, spec_: spec.NASExperimentSpec) -> None:
        """Budget, parallelism and suspend may change mid-search; the search space may not."""
        if spec_.search_fingerprint() != self.spec.search_fingerprint():
            raise errors.SpecError(
                "spec.searchSpace/objectives/constraints cannot change once a search has started",
                hint="revert the change, or create a new NASExperiment",
            )
        if spec_.budget.stop_when_improvement_below != self.spec.budget.stop_when_improvement_below \
                or spec_.budget.improvement_window != self.spec.budget.improvement_window:
            self.props.pop("converged", None)  # judged again under the new rule
        self.spec = spec_
        self._set_deadline()
        if self.phase in (spec.Phase.SUCCEEDED,) and self._budget_left() > 0 \
                and not self.props.get("converged"):
            self.props["phase"] = spec.Phase.RUNNING.value  # maxTrials raised after the end
            self.props.pop("completionTime", None)

    # -- queries --------------------------------------------------------------------------

    @property
    def phase(self) -> spec.Phase:
        return spec.Phase(self.props.get("phase", spec.Phase.RUNNING.value))

    @property
    def finished(self) -> bool:
        return self.phase in (spec.Phase.SUCCEEDED, spec.Phase.FAILED)

    def trials_in(self, *statuses: TrialStatus) -> list[BaseTrial]:
        return [t for t in self.experiment.trials.values() if t.status in statuses]

    def _counted_trials(self) -> int:
        """Trials that use budget: infrastructure failures and interruptions are retried free."""
        free = set(self.props["infra"]) | {int(i) for i in self.props["warm"]}
        return sum(
            1
            for t in self.experiment.trials.values()
            if t.index not in free and t.status is not TrialStatus.ABANDONED
        )

    def _budget_left(self) -> int:
        return max(0, self.spec.budget.max_trials - self._counted_trials())

    def _user_failures(self) -> int:
        infra = set(self.props["infra"])
        return sum(1 for t in self.trials_in(TrialStatus.FAILED) if t.index not in infra)

    def final_values(self, trial_indices: list[int] | None = None) -> dict[int, dict[str, float]]:
        """The last logged value (highest step) of every metric, per trial."""
        df = self.experiment.lookup_data(trial_indices=trial_indices).full_df
        if df.empty:
            return {}
        if "step" in df.columns:
            df = df.sort_values("step")
        out: dict[int, dict[str, float]] = {}
        for (idx, metric), v in df.groupby(["trial_index", "metric_name"])["mean"].last().items():
            out.setdefault(int(idx), {})[str(metric)] = float(v)
        return out

    def observations(self) -> list[pareto.Observation]:
        """Final metric values of completed trials."""
        completed = {t.index: t for t in self.trials_in(TrialStatus.COMPLETED)}
        values = self.final_values() if completed else {}
        if not values:
            return []
        return [
            pareto.Observation(
                trial=idx,
                parameters=dict(trial.arm.parameters),  # type: ignore[attr-defined]
                metrics=values.get(idx, {}),
                job=trial.run_metadata.get(APP_HANDLE),
            )
            for idx, trial in sorted(completed.items())
        ]

    def front(self) -> pareto.Front:
        return pareto.front(
            self.spec.objectives, self.spec.parsed_outcome_constraints, self.observations(),
            reference=self.props.get("reference"),
        )

    def status(self) -> spec.NASExperimentStatus:
        return status_mod.build(self)

    # -- the loop -------------------------------------------------------------------------

    def tick(self) -> TickReport:
        """One non-blocking step; returns what happened."""
        report = TickReport(events=self._pending_events)
        self._pending_events = []
        if self._future is not None and self._future.done():
            self._finish_generation(report)
        if self.finished:
            return report
        generating = self._future is not None
        if not generating:  # launching saves first, which must not race the worker
            self._recover_candidates(report)
        self._poll(report)
        self._fix_reference(report)
        self._early_stop(report)
        self._check_convergence(report)
        if not generating:
            self._relaunch_requeued(report)
        self._update_phase(report)
        if generating:
            self._unsaved |= report.changed
            if self.finished:  # no tick follows: let the step land (its proposals are dropped)
                concurrent.futures.wait([self._future])  # type: ignore[list-item]
                self._finish_generation(report)
            else:
                report.generating = True
            return report
        if report.changed or self._unsaved:
            self.save()  # before the worker starts changing the strategy
        if self.phase is spec.Phase.RUNNING:
            self._start_generation(report)
        return report

    def _poll(self, report: TickReport) -> None:
        running = self.trials_in(TrialStatus.RUNNING)
        if not running:
            return
        for index, obs in self.runner.observe(running).items():
            trial = self.experiment.trials[index]
            if obs.status is TrialStatus.RUNNING:
                continue
            report.changed = True
            if obs.status is TrialStatus.COMPLETED:
                self._complete(trial, report)
            elif obs.status is TrialStatus.EARLY_STOPPED:  # a pack member that honoured a stop
                trial.mark_early_stopped(unsafe=True)      # asked before a restart
                self.props["reasons"][str(index)] = obs.reason
            elif obs.status is TrialStatus.ABANDONED:
                self._record_infra(trial, obs.reason or "cancelled", report, abandon=True)
            elif obs.infrastructure:
                self._record_infra(trial, obs.reason, report)
            else:
                self._fail(trial, obs.reason, report)

    def _complete(self, trial: BaseTrial, report: TickReport) -> None:
        """Fetch the trial's metrics; a trial that logged no objective metric failed."""
        results = self.experiment.fetch_trials_data_results(trial_indices=[trial.index])
        per_metric = results.get(trial.index, {})
        problems = [p for o in self.spec.objectives
                    if (p := metric_mod.fetch_problem(o.metric, per_metric.get(o.metric)))]
        if problems:
            reason = f"trial exited 0 but {'; '.join(problems)}"
            self._fail(trial, reason, report,
                       detail=f" (log dir {trial.run_metadata.get('tb_log_dir')})")
            return
        self._attach(results)
        trial.mark_completed()
        values = self.final_values([trial.index]).get(trial.index, {})
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
        report.events.append(Event("TrialCompleted", f"trial {trial.index} completed: {shown}",
                                   trial.index))

    def _fix_reference(self, report: TickReport) -> None:
        """An inferred reference point moves with the front until the initial trials have
        ended; from then on it stays (saved with the experiment), so hypervolumes compare."""
        if "reference" in self.props or all(o.threshold is not None for o in self.spec.objectives):
            return
        ended = len(self.trials_in(TrialStatus.COMPLETED, TrialStatus.EARLY_STOPPED))
        if ended + self._user_failures() < strategy_mod.initial_trials(self.spec):
            return
        ref = self.front().reference
        if len(ref) == len(self.spec.objectives):
            self.props["reference"], self.props["referenceTime"] = ref, spec.now_rfc3339()
            report.changed = True
            shown = ", ".join(f"{k}={_fmt(v)}" for k, v in ref.items())
            report.events.append(Event("ReferencePointFixed", f"reference point fixed: {shown}"))

    def _fail(self, trial: BaseTrial, reason: str, report: TickReport, detail: str = "") -> None:
        """`reason` is kept (and counted: the most common one names a failed search); `detail`,
        specific to this trial, goes only into the event."""
        self.props["reasons"][str(trial.index)] = reason
        trial.mark_failed(reason=reason, unsafe=True)
        report.events.append(
            Event("TrialFailed", f"trial {trial.index} failed: {reason}{detail}", trial.index, True)
        )

    def _record_infra(
        self, trial: BaseTrial, reason: str, report: TickReport, abandon: bool = False
    ) -> None:
        """Not the trainer's fault: does not count against budgets; the arm runs again."""
        self.props["reasons"][str(trial.index)] = reason
        self.props["infra"].append(trial.index)
        if abandon:
            trial.mark_abandoned(reason=reason, unsafe=True)
        else:
            trial.mark_failed(reason=reason, unsafe=True)
        arm = trial.arm  # type: ignore[attr-defined]
        retries = sum(
            1 for i in self.props["infra"]
            if self.experiment.trials[i].arm.name == arm.name  # type: ignore[attr-defined]
        )
        if retries <= MAX_INFRA_RETRIES and not self.spec.suspend:
            self.props["requeue"].append(trial.index)
            what = "will be retried"
        else:
            what = f"not retried ({retries} infrastructure failures)"
        report.events.append(
            Event("TrialInterrupted", f"trial {trial.index}: {reason}; {what}", trial.index, True)
        )

    def _attach(self, results: dict[int, dict[str, Any]]) -> None:
        """Keep what was fetched; a metric not logged yet is simply absent."""
        for per_metric in results.values():
            for res in per_metric.values():
                if isinstance(res, Ok):
                    self.experiment.attach_data(res.ok)

    def _early_stop(self, report: TickReport) -> None:
        es = self.spec.early_stopping
        running = self.trials_in(TrialStatus.RUNNING)
        if es is None or not running:
            return
        self._attach(self.experiment.fetch_trials_data_results(
            trial_indices=[t.index for t in running]
        ))
        decisions = stopping.trials_to_stop(
            self.spec, self.experiment, [t.index for t in running]
        )
        for index, why in decisions.items():
            trial = self.experiment.trials[index]
            self.runner.stop(trial, reason=f"stopped early: {why}")
            trial.mark_early_stopped(unsafe=True)
            self.props["reasons"][str(index)] = why
            report.changed = True
            report.events.append(
                Event("TrialEarlyStopped", f"trial {index} stopped early: {why}", index)
            )

    def _check_convergence(self, report: TickReport) -> None:
        """Global stopping: no new trials once the hypervolume has stalled (running ones finish)."""
        if self.spec.budget.stop_when_improvement_below is None or self.props.get("converged"):
            return
        if not any(e.reason == "TrialCompleted" for e in report.events):
            return
        why = stopping.improvement_stall(
            self.spec, self.observations(), strategy_mod.initial_trials(self.spec),
            self.props.get("reference"),
        )
        if why:
            self.props["converged"] = why
            self.props["requeue"] = []
            report.changed = True
            report.events.append(Event("SearchConverged", why))

    def _relaunch_requeued(self, report: TickReport) -> None:
        """Run interrupted arms again (same parameters, new trial index) before new ones."""
        queue: list[int] = self.props["requeue"]
        retries: list[Trial] = []
        notes: dict[int, str] = {}
        room, budget = self._capacity(), self._budget_left()
        while queue and len(retries) < min(room, budget) and not self.spec.suspend:
            old = self.experiment.trials[queue.pop(0)]
            arm = old.arm  # type: ignore[attr-defined]
            trial = self.experiment.new_trial(
                generator_run=GeneratorRun(arms=[arm.clone()], generator_key="Retry")
            )
            notes[trial.index] = f" (retry of trial {old.index})"
            retries.append(trial)
            report.changed = True
        self._launch_all(retries, report, notes)

    def _capacity(self) -> int:
        """Trials that may start now; with packing, parallelism counts packs (processes)."""
        running = self.trials_in(TrialStatus.RUNNING)
        pack = self.spec.trial.pack
        if pack is None:
            return self.spec.budget.parallelism - len(running)
        waiting = len(self.trials_in(TrialStatus.CANDIDATE))  # packs that found no free slot
        return (self.spec.budget.parallelism - self._running_packs()) * pack.max_trials - waiting

    def _running_packs(self) -> int:
        return len({t.run_metadata.get(APP_HANDLE) for t in self.trials_in(TrialStatus.RUNNING)})

    def _launch_all(self, trials: list[Trial], report: TickReport,
                    notes: dict[int, str] | None = None) -> None:
        """Launch new trials: one by one, or with `trial.pack` as packs (saved first, as one).
        A pack that finds all `parallelism` slots taken stays a set of candidates, launched by
        `_recover_candidates` once a pack ends."""
        pack, notes = self.spec.trial.pack, notes or {}
        if pack is None:
            for trial in trials:
                self._launch(trial, report, note=notes.get(trial.index, ""))
            return
        waiting = [t for t in self.trials_in(TrialStatus.CANDIDATE) if t not in trials]
        trials = waiting + trials  # type: ignore[operator]  # the oldest first
        if not trials:
            return
        if self.store is not None:  # record the trials first: a crash now leaves CANDIDATEs
            self.save()
        by_index = {t.index: t for t in trials}
        groups = packs.group({t.index: dict(t.arm.parameters) for t in trials}, pack)
        for indices in groups[:max(0, self.spec.budget.parallelism - self._running_packs())]:
            members = [by_index[i] for i in indices]
            try:
                metadata = self.runner.run_pack(members)
            except Exception as e:  # e.g. the API server said 500: not the trainer's fault
                for trial in members:
                    trial.mark_running(no_runner_required=True)
                    self._record_infra(trial, f"launch failed: {e}", report)
                continue
            for trial in members:
                trial.update_run_metadata(metadata[trial.index])
                trial.mark_running(no_runner_required=True)
                report.events.append(Event(
                    "TrialLaunched", f"trial {trial.index} launched in pack "
                    f"{metadata[trial.index][APP_HANDLE]}{notes.get(trial.index, '')}",
                    trial.index))

    def _launch(self, trial: Trial, report: TickReport, note: str = "") -> None:
        if self.store is not None:  # record the trial first: a crash now leaves a CANDIDATE
            self.save()
        try:
            trial.run()
        except Exception as e:  # e.g. the API server said 500: not the trainer's fault
            reason = f"launch failed: {e}"
            if trial.status is TrialStatus.CANDIDATE:
                trial.mark_running(no_runner_required=True)
            self._record_infra(trial, reason, report)
            return
        handle = trial.run_metadata.get(APP_HANDLE, "")
        report.events.append(
            Event("TrialLaunched", f"trial {trial.index} launched as {handle}{note}", trial.index)
        )

    def _update_phase(self, report: TickReport) -> None:
        old = self.phase
        new, message = old, self.props.get("message", "")
        running = len(self.trials_in(TrialStatus.RUNNING, TrialStatus.CANDIDATE))  # + waiting packs
        failures = self._user_failures()
        out_of_time = self._out_of_time()
        infra = len(self.props["infra"])
        if infra > max(10, 2 * self.spec.budget.max_trials) and not running:
            last = self.props["reasons"].get(str(self.props["infra"][-1]), "")
            new = spec.Phase.FAILED
            message = f"{infra} trials could not run for infrastructure reasons; last: {last}"
        elif failures > self.spec.budget.max_failed_trials:
            new = spec.Phase.FAILED
            message = (
                f"{failures} trials failed, more than budget.maxFailedTrials="
                f"{self.spec.budget.max_failed_trials}; {self._failure_summary()}"
            )
            for t in self.trials_in(TrialStatus.RUNNING):
                self.runner.stop(t, reason="search failed")
                t.mark_abandoned(reason="search failed", unsafe=True)
        elif (self._budget_left() == 0 or out_of_time or self.props.get("exhausted")
              or self.props.get("converged")) and not running and not self.props["requeue"]:
            new = spec.Phase.SUCCEEDED
            message = (
                self.props["converged"] if self.props.get("converged") else
                "budget.maxDuration reached" if out_of_time and self._budget_left() else
                "search space exhausted" if self.props.get("exhausted") else
                f"all {self.spec.budget.max_trials} trials done"
            )
            if failures and not self._completed_here():  # nothing to show for the search
                new, message = spec.Phase.FAILED, (
                    f"no trial completed ({failures} failed); {self._failure_summary()}")
        elif self.spec.suspend:
            new, message = spec.Phase.SUSPENDED, "spec.suspend is true: no new trials are launched"
        else:
            new, message = spec.Phase.RUNNING, ""
        if new is not old or message != self.props.get("message", ""):
            self.props["phase"], self.props["message"] = new.value, message
            report.changed = True
            if new is not old:
                if new in (spec.Phase.SUCCEEDED, spec.Phase.FAILED):
                    self.props["completionTime"] = spec.now_rfc3339()
                report.events.append(
                    Event(f"Search{new.value}", message or f"phase {new.value}",
                          warning=new is spec.Phase.FAILED)
                )
        status_mod.track_conditions(self)

    def _completed_here(self) -> int:
        """Completed trials this search ran (warm-started ones were copied, not run)."""
        warm = {int(i) for i in self.props["warm"]}
        return sum(1 for t in self.trials_in(TrialStatus.COMPLETED) if t.index not in warm)

    def _failure_summary(self) -> str:
        infra = set(self.props["infra"])
        reasons = [r for i, r in self.props["reasons"].items()
                   if int(i) not in infra
                   and self.experiment.trials[int(i)].status is TrialStatus.FAILED]
        return status_mod.most_common_reason(reasons)

    def _set_deadline(self) -> None:
        """Tell the runner when budget.maxDuration ends (a Job gets the time left)."""
        limit = self.spec.budget.max_duration_seconds
        self.runner.deadline = math.inf if limit is None else self.props["startEpoch"] + limit

    def _out_of_time(self) -> bool:
        limit = self.spec.budget.max_duration_seconds
        return limit is not None and self.clock() - self.props["startEpoch"] > limit

    def _start_generation(self, report: TickReport) -> None:
        if self._out_of_time():
            return
        n = min(self._capacity(), self._budget_left() - len(self.props["requeue"]))
        if n <= 0 or self.props.get("exhausted") or self.props.get("converged"):
            return
        self._gen_started = time.perf_counter()
        self._future = self._pool.submit(self._generate, n, generation_copy(self.experiment))
        report.generating = True

    def _generate(self, n: int, experiment: Experiment) -> list[list[GeneratorRun]]:
        configure_torch()
        if self.spec.optimizer.seed is not None:  # optimizer.seed seeds Sobol only; BoTorch's
            # raw samples and MC draws come from torch's global generator
            torch.manual_seed(self.spec.optimizer.seed + len(experiment.trials))
        return self.strategy.gen(experiment=experiment, n=1, num_trials=n)

    def _end_generation(self) -> concurrent.futures.Future[list[list[GeneratorRun]]]:
        """Take the finished future, bind the strategy to the live experiment again, and save
        what changed while the worker ran."""
        future, self._future = self._future, None
        assert future is not None  # noqa: S101 - internal invariant, not input validation
        self.strategy.experiment = self.experiment  # the copy had its name: allowed
        if self._unsaved:
            self._unsaved = False
            self.save()
        return future

    def _finish_generation(self, report: TickReport) -> None:
        future = self._end_generation()
        self.last_generation_seconds = time.perf_counter() - self._gen_started
        try:
            proposals = future.result()
        except _WAIT_FOR_DATA as e:
            log.debug("generation waits for data: %s", e)
            return
        except OptimizationComplete as e:
            self.props["exhausted"] = True
            report.changed = True
            log.info("generation strategy completed: %s", e)
            return
        except Exception as e:
            report.events.append(Event("GenerationFailed", f"generation failed: {e}", warning=True))
            log.exception("generation failed")
            return
        if self.spec.suspend or self.props.get("converged") or self.finished:
            log.info("dropping %d proposals: the search stopped launching meanwhile", len(proposals))
            return  # proposals are not part of the experiment until a trial is made of them
        room = min(self._capacity(), self._budget_left() - len(self.props["requeue"]))
        new_trials: list[Trial] = []
        for grs in proposals[:max(0, room)]:  # maxTrials/parallelism may have been lowered
            if not grs or not grs[0].arms:
                continue
            new_trials.append(self.experiment.new_trial(generator_run=grs[0]))
            self.props["generator"] = grs[0]._generation_node_name or grs[0]._generator_key
            report.changed = True
        self._launch_all(new_trials, report)
        if report.changed:
            self.save()

    # -- lifecycle ------------------------------------------------------------------------

    def save(self) -> None:
        if self.store is None:
            return
        snapshot = Snapshot(self.experiment, self.strategy, self.version)
        self.store.save(name=self.name, snapshot=snapshot)
        self.version = snapshot.version

    def cancel_running(self, reason: str = "interrupted") -> list[int]:
        """Cancel every running trial (Ctrl-C, delete); they are retried on resume."""
        if self._future is not None:  # proposals not yet launched are dropped, not run
            concurrent.futures.wait([self._future])
            self._end_generation()
        stopped = []
        for t in self.trials_in(TrialStatus.RUNNING):
            self.runner.stop(t, reason=reason)
            self._record_infra(t, reason, TickReport(), abandon=True)
            stopped.append(t.index)
        self.save()
        return stopped

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def generation_copy(experiment: Experiment) -> Experiment:
    """A copy of the experiment for one generation step, sharing its runner (which holds
    processes, sockets and API clients; generation never calls it; trials use the experiment's).
    About 12 ms for 48 trials."""
    runner = experiment.runner
    return copy.deepcopy(experiment, memo={} if runner is None else {id(runner): runner})


def _fmt(v: float) -> str:
    return f"{v:.4g}"


__all__ = ["Event", "Search", "TickReport", "configure_torch", "generation_copy"]
