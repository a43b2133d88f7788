"""How trials end, recorded: completed with their metrics, failed, stopped early, interrupted.

Every outcome writes the Ax trial's status, the reason in the search state and an event, in
that order, so the status, `nasop report` and the Kubernetes Events tell the same story.
"""

from __future__ import annotations

import logging
from typing import Any

from ax.core.base_trial import BaseTrial, TrialStatus
from ax.utils.common.result import Ok

from nasop import formatting, spec
from nasop.engine import starting, stopping, strategy
from nasop.engine.events import Event, TickReport
from nasop.engine.ledger import Ledger
from nasop.trials.metric import fetch_problem
from nasop.trials.runner import TorchXTrialRunner

MAX_INFRA_RETRIES = 2  # an arm interrupted more often than this is not run again
FOLLOW_SECONDS = 10.0  # a running cluster trial's output is read this often (at least)

log = logging.getLogger(__name__)


def poll(book: Ledger, runner: TorchXTrialRunner, report: TickReport, now: float) -> None:
    """Record the trials that started or ended since the last tick, why the others wait, and
    whether the search is stalled (starting.py)."""
    running = book.trials_in(TrialStatus.RUNNING)
    timeout = book.spec.trial.start_timeout_seconds
    seen = runner.observe(running) if running else {}
    for index, obs in seen.items():
        trial = book.experiment.trials[index]
        if obs.status is TrialStatus.RUNNING:
            late = starting.track(book.state, index, obs, now, timeout, report)
            if late:
                runner.stop(trial, reason=late)
                starting.forget(book.state, index)
                book.state.unstarted.append(index)
                record_infra(book, trial, late, report, retry=False)
            continue
        starting.forget(book.state, index)
        report.changed = True
        if obs.status is TrialStatus.COMPLETED:
            complete(book, trial, report)
        elif obs.status is TrialStatus.EARLY_STOPPED:  # a pack member that honoured a stop
            trial.mark_early_stopped(unsafe=True)  # asked before a restart
            book.state.reasons[index] = obs.reason
        elif obs.status is TrialStatus.ABANDONED:
            record_infra(book, trial, obs.reason or "cancelled", report, abandon=True)
        elif obs.infrastructure:
            record_infra(book, trial, obs.reason, report, retry=obs.retry)
        else:
            fail(book, trial, obs.reason, report)
        refused = runner.forget_output(trial)
        if refused:  # nothing a trial printed is dropped silently
            report.events.append(
                Event(
                    "TrialOutputRefused",
                    f"trial {index}: output refused: {refused}",
                    index,
                    warning=True,
                )
            )
    pending = book.pending()
    started_running = len(book.trials_in(TrialStatus.RUNNING)) - len(pending)
    report.changed |= starting.update_stall(book.state, pending, started_running, now, timeout)


def complete(book: Ledger, trial: BaseTrial, report: TickReport) -> None:
    """Fetch the trial's metrics; a trial that logged no objective metric failed."""
    results = book.experiment.fetch_trials_data_results(trial_indices=[trial.index])
    per_metric = results.get(trial.index, {})
    problems = [
        p for o in book.spec.objectives if (p := fetch_problem(o.metric, per_metric.get(o.metric)))
    ]
    if problems:
        fail(
            book,
            trial,
            f"trial exited 0 but {'; '.join(problems)}",
            report,
            detail=f" (log dir {trial.run_metadata.get('tb_log_dir')})",
        )
        return
    attach(book, results)
    trial.mark_completed()
    values = _last_values(per_metric)
    shown = ", ".join(f"{k}={formatting.number(v)}" for k, v in values.items())
    report.events.append(
        Event("TrialCompleted", f"trial {trial.index} completed: {shown}", trial.index)
    )


def _last_values(per_metric: dict[str, Any]) -> dict[str, float]:
    """The value at the highest step of each fetched metric, by name: what the Event shows,
    taken from the fetch itself (a lookup in the experiment's data cost as much as the fetch)."""
    values: dict[str, float] = {}
    for res in per_metric.values():
        if not isinstance(res, Ok) or res.ok.empty:
            continue
        df = res.ok.full_df
        last = int(df["step"].to_numpy().argmax()) if "step" in df.columns else len(df) - 1
        values[str(df["metric_name"].iloc[last])] = float(df["mean"].iloc[last])
    return dict(sorted(values.items()))


def fail(book: Ledger, trial: BaseTrial, reason: str, report: TickReport, detail: str = "") -> None:
    """`reason` is kept (and counted: the most common one names a failed search); `detail`,
    specific to this trial, goes only into the event."""
    book.state.reasons[trial.index] = reason
    trial.mark_failed(reason=reason, unsafe=True)
    report.events.append(
        Event("TrialFailed", f"trial {trial.index} failed: {reason}{detail}", trial.index, True)
    )


def record_infra(
    book: Ledger,
    trial: BaseTrial,
    reason: str,
    report: TickReport,
    abandon: bool = False,
    retry: bool = True,
) -> None:
    """Not the trainer's fault: does not count against budgets; the arm runs again (unless
    `retry` is False: a trial that could not start would not start again either)."""
    book.state.reasons[trial.index] = reason
    book.state.infra.append(trial.index)
    if abandon:
        trial.mark_abandoned(reason=reason, unsafe=True)
    else:
        trial.mark_failed(reason=reason, unsafe=True)
    arm = _arm_name(trial)
    retries = len([i for i in book.state.infra if _arm_name(book.experiment.trials[i]) == arm])
    if not retry:
        what = "not retried"
    elif retries <= MAX_INFRA_RETRIES and not book.spec.suspend:
        book.state.requeue.append(trial.index)
        what = "will be retried"
    else:
        what = f"not retried ({retries} infrastructure failures)"
    report.events.append(
        Event("TrialInterrupted", f"trial {trial.index}: {reason}; {what}", trial.index, True)
    )


def _arm_name(trial: BaseTrial) -> str | None:
    """nasop's trials are single-arm `Trial`s: the arm names the parameters that ran."""
    return trial.arms[0].name if trial.arms else None


def attach(book: Ledger, results: dict[int, dict[str, Any]]) -> None:
    """Keep what was fetched; a metric not logged yet is simply absent."""
    for per_metric in results.values():
        for res in per_metric.values():
            if isinstance(res, Ok):
                book.experiment.attach_data(res.ok)


def follow(book: Ledger, runner: TorchXTrialRunner, now: float, last: dict[int, float]) -> None:
    """Read each running cluster trial's output every FOLLOW_SECONDS, when no early-stopping rule
    reads it every tick. The kubelet serves only the current file of a rotated log: what was
    not read before a rotation is gone (then counted as a gap), so reading as the trial runs
    keeps its curve. The points wait in the trial's reader until it ends. Never raises."""
    if runner.is_local or book.spec.early_stopping is not None:
        return
    running = {t.index: t for t in book.trials_in(TrialStatus.RUNNING)}
    for index in [i for i in last if i not in running]:
        del last[index]
    for index, trial in running.items():
        if now - last.get(index, float("-inf")) < FOLLOW_SECONDS:
            continue
        last[index] = now
        try:
            runner.read_output(trial)
        except Exception as e:  # the API server or kubelet cannot answer now: next time
            log.warning("reading the output of trial %d failed: %s", index, e)


def early_stop(book: Ledger, runner: TorchXTrialRunner, report: TickReport, now: float) -> None:
    """Fetch the running trials' curves and stop those spec.earlyStopping judges weak."""
    running = book.trials_in(TrialStatus.RUNNING)
    if book.spec.early_stopping is None or not running:
        return
    indices = [t.index for t in running]
    attach(book, book.experiment.fetch_trials_data_results(trial_indices=indices))
    priced = any(r.gain_ratio is not None for r in book.spec.early_stopping.all_rules)
    ran = {i: r for i, (_, r) in book.timings(now).items()} if priced else None
    decisions = stopping.trials_to_stop(
        book.spec, book.experiment, indices, reference=book.state.reference, ran=ran
    )
    for index, why in decisions.items():
        trial = book.experiment.trials[index]
        runner.stop(trial, reason=f"stopped early: {why}")
        trial.mark_early_stopped(unsafe=True)
        book.state.reasons[index] = why
        report.changed = True
        report.events.append(
            Event("TrialEarlyStopped", f"trial {index} stopped early: {why}", index)
        )


def abandon_running(book: Ledger, runner: TorchXTrialRunner, reason: str) -> None:
    """The search failed: its running trials stop and are not retried."""
    for t in book.trials_in(TrialStatus.RUNNING):
        runner.stop(t, reason=reason)
        t.mark_abandoned(reason=reason, unsafe=True)


def fix_reference(book: Ledger, report: TickReport) -> None:
    """An inferred reference point moves with the front until the initial trials have
    ended; from then on it stays (saved with the experiment), so hypervolumes compare."""
    if book.state.reference is not None or all(
        o.threshold is not None for o in book.spec.objectives
    ):
        return
    ended = len(book.trials_in(TrialStatus.COMPLETED, TrialStatus.EARLY_STOPPED))
    if ended + len(book.user_failures()) < strategy.initial_trials(book.spec):
        return
    ref = book.front().reference
    if len(ref) == len(book.spec.objectives):
        book.state.reference, book.state.reference_time = ref, spec.now_rfc3339()
        report.changed = True
        shown = ", ".join(f"{k}={formatting.number(v)}" for k, v in ref.items())
        report.events.append(Event("ReferencePointFixed", f"reference point fixed: {shown}"))


def check_convergence(book: Ledger, report: TickReport) -> None:
    """Global stopping: no new trials once the hypervolume has stalled (running ones finish)."""
    if book.spec.budget.stop_when_improvement_below is None or book.state.converged:
        return
    if not any(e.reason == "TrialCompleted" for e in report.events):
        return
    why = stopping.improvement_stall(
        book.spec, book.observations(), strategy.initial_trials(book.spec), book.state.reference
    )
    if why:
        book.state.converged = why
        book.state.requeue = []
        report.changed = True
        report.events.append(Event("SearchConverged", why))


__all__ = [
    "MAX_INFRA_RETRIES",
    "abandon_running",
    "attach",
    "check_convergence",
    "complete",
    "early_stop",
    "fail",
    "fix_reference",
    "poll",
    "record_infra",
]
