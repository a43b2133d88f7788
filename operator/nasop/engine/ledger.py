"""Questions about a search's trials, answered from the Ax experiment and the search's state.

Budgets, capacity, final metric values, the front and the status counts are all read here, so
the rules that use them (phases, launching, status) never walk Ax's trials themselves.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ax.core.base_trial import BaseTrial, TrialStatus
from ax.core.experiment import Experiment

from nasop.engine import pareto, phases
from nasop.engine.state import SearchState
from nasop.spec import NASExperimentSpec, TrialCounts
from nasop.trials.runner import APP_HANDLE


@dataclass
class Ledger:
    """A view of one search's trials; `spec` follows the search's spec as it changes."""

    experiment: Experiment
    state: SearchState
    spec: NASExperimentSpec
    starts_at_once: bool = False  # local processes: never pending

    def pending(self) -> list[int]:
        """Launched trials not seen started yet (their pods wait), in launch order."""
        if self.starts_at_once:
            return []
        started = self.state.started
        return [t.index for t in self.trials_in(TrialStatus.RUNNING) if t.index not in started]

    def trials_in(self, *statuses: TrialStatus) -> list[BaseTrial]:
        return [t for t in self.experiment.trials.values() if t.status in statuses]

    def budget_left(self) -> int:
        """Trials budget.maxTrials still allows: infrastructure failures and warm-started
        copies do not count."""
        free = set(self.state.infra) | set(self.state.warm)
        counted = sum(
            1
            for t in self.experiment.trials.values()
            if t.index not in free and t.status is not TrialStatus.ABANDONED
        )
        return max(0, self.spec.budget.max_trials - counted)

    def user_failures(self) -> list[BaseTrial]:
        infra = set(self.state.infra)
        return [t for t in self.trials_in(TrialStatus.FAILED) if t.index not in infra]

    def completed_here(self) -> int:
        """Completed trials this search ran (warm-started ones were copied, not run)."""
        return sum(
            1 for t in self.trials_in(TrialStatus.COMPLETED) if t.index not in self.state.warm
        )

    def failure_summary(self) -> str:
        """In the order the trials failed, so that a tie names the first reason seen."""
        failed = {t.index for t in self.user_failures()}
        return most_common_reason([r for i, r in self.state.reasons.items() if i in failed])

    def running_packs(self) -> int:
        return len({t.run_metadata.get(APP_HANDLE) for t in self.trials_in(TrialStatus.RUNNING)})

    def capacity(self) -> int:
        """Trials that may start now; with packing, parallelism counts packs (processes)."""
        pack = self.spec.trial.pack
        if pack is None:
            return self.spec.budget.parallelism - len(self.trials_in(TrialStatus.RUNNING))
        waiting = len(self.trials_in(TrialStatus.CANDIDATE))  # packs that found no free slot
        return (self.spec.budget.parallelism - self.running_packs()) * pack.max_trials - waiting

    def room_for_new(self) -> int:
        """New trials to propose now: capacity, less the budget the retries will take."""
        return min(self.capacity(), self.budget_left() - len(self.state.requeue))

    def phase_counts(self) -> phases.Counts:
        failures = self.user_failures()
        return phases.Counts(
            running=len(self.trials_in(TrialStatus.RUNNING, TrialStatus.CANDIDATE)),
            user_failures=len(failures),
            completed_here=self.completed_here(),
            budget_left=self.budget_left(),
            failure_summary=self.failure_summary() if failures else "",
        )

    def counts(self) -> TrialCounts:
        by = Counter(t.status for t in self.experiment.trials.values())
        pending = len(self.pending())
        return TrialCounts(
            total=len(self.experiment.trials),
            pending=pending,
            running=by[TrialStatus.RUNNING] - pending,
            completed=by[TrialStatus.COMPLETED],
            failed=by[TrialStatus.FAILED] + by[TrialStatus.ABANDONED],
            early_stopped=by[TrialStatus.EARLY_STOPPED],
            warm_started=len(self.state.warm),
        )

    def timings(self, now: float) -> dict[int, tuple[float | None, float | None]]:
        """Per launched trial, seconds it waited to start and seconds it ran (None: unknown,
        or never started), so a slow cluster can be told from a slow model."""
        out: dict[int, tuple[float | None, float | None]] = {}
        for idx, trial in self.experiment.trials.items():
            if trial.time_run_started is None or idx in self.state.warm:
                continue
            launched = trial.time_run_started.timestamp()
            ended = trial.time_completed.timestamp() if trial.time_completed else None
            started = self.state.started.get(idx)
            if (
                started is None
                and trial.status is not TrialStatus.RUNNING
                and (idx not in self.state.unstarted)
            ):
                out[idx] = (None, None)  # ended before start times were recorded
                continue
            waited = (started or ended or now) - launched
            ran = (ended or now) - started if started is not None else None
            out[idx] = (max(0.0, waited), None if ran is None else max(0.0, ran))
        return out

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
                parameters=dict(trial.arms[0].parameters),
                metrics=values.get(idx, {}),
                job=trial.run_metadata.get(APP_HANDLE),
            )
            for idx, trial in sorted(completed.items())
        ]

    def front(self) -> pareto.Front:
        return pareto.front(
            self.spec.objectives,
            self.spec.parsed_outcome_constraints,
            self.observations(),
            reference=self.state.reference,
        )


def most_common_reason(reasons: list[str]) -> str:
    """E.g. "most common reason (4 of 6): val_acc is NaN at step 2"."""
    if not reasons:
        return "no reason recorded"
    reason, n = Counter(reasons).most_common(1)[0]
    return f"most common reason ({n} of {len(reasons)}): {reason}"


__all__ = ["Ledger", "most_common_reason"]
