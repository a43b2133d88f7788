"""Starting trials exactly once: one by one, as packs, retried, or adopted after a crash.

A trial is saved as a CANDIDATE before its job is submitted (the trials of one batch in one
write, then submitted one by one); after a crash the next tick finds each candidate and adopts
its job if it was submitted, or submits it now.
"""

from __future__ import annotations

from collections.abc import Callable

from ax.core.base_trial import TrialStatus
from ax.core.generator_run import GeneratorRun
from ax.core.trial import Trial

from nasop.engine import outcomes
from nasop.engine.events import Event, TickReport
from nasop.engine.ledger import Ledger
from nasop.trials import packs
from nasop.trials.runner import APP_HANDLE, TorchXTrialRunner

Save = Callable[[], None]


def recover_candidates(
    book: Ledger, runner: TorchXTrialRunner, save: Save, report: TickReport
) -> None:
    """Trials saved just before launch: adopt the app if it exists, else launch it now."""
    relaunch: list[Trial] = []
    for trial in book.trials_in(TrialStatus.CANDIDATE):
        meta = runner.adopt(trial)
        report.changed = True
        if meta:
            trial.update_run_metadata(meta)
            trial.mark_running(no_runner_required=True)
            report.events.append(
                Event(
                    "TrialAdopted",
                    f"trial {trial.index} re-attached to {meta['app_handle']}",
                    trial.index,
                )
            )
        else:
            relaunch.append(trial)  # type: ignore[arg-type]  # nasop makes only Trials
    launch_all(book, runner, save, relaunch, report)


def relaunch_requeued(
    book: Ledger, runner: TorchXTrialRunner, save: Save, report: TickReport
) -> None:
    """Run interrupted arms again (same parameters, new trial index) before new ones."""
    queue = book.state.requeue
    retries: list[Trial] = []
    notes: dict[int, str] = {}
    room = min(book.capacity(), book.budget_left())
    while queue and len(retries) < room and not book.spec.suspend:
        old = book.experiment.trials[queue.pop(0)]
        arm = old.arm  # type: ignore[attr-defined]  # nasop makes only Trials
        trial = book.experiment.new_trial(
            generator_run=GeneratorRun(arms=[arm.clone()], generator_key="Retry")
        )
        notes[trial.index] = f" (retry of trial {old.index})"
        retries.append(trial)
        report.changed = True
    launch_all(book, runner, save, retries, report, notes)


def launch_all(
    book: Ledger,
    runner: TorchXTrialRunner,
    save: Save,
    trials: list[Trial],
    report: TickReport,
    notes: dict[int, str] | None = None,
) -> None:
    """Launch new trials: one by one, or with `trial.pack` as packs (saved first, as one)."""
    notes = notes or {}
    if book.spec.trial.pack is None:
        if trials:  # record them all first, in one write: a crash now leaves CANDIDATEs
            save()
        for trial in trials:
            _launch(book, trial, report, note=notes.get(trial.index, ""))
    else:
        _launch_packs(book, runner, save, trials, report, notes)


def _launch(book: Ledger, trial: Trial, report: TickReport, note: str) -> None:
    """Submit one trial saved as a CANDIDATE (by launch_all)."""
    try:
        trial.run()
    except Exception as e:  # e.g. the API server said 500: not the trainer's fault
        if trial.status is TrialStatus.CANDIDATE:
            trial.mark_running(no_runner_required=True)
        outcomes.record_infra(book, trial, f"launch failed: {e}", report)
        return
    handle = trial.run_metadata.get(APP_HANDLE, "")
    report.events.append(
        Event("TrialLaunched", f"trial {trial.index} launched as {handle}{note}", trial.index)
    )


def _launch_packs(
    book: Ledger,
    runner: TorchXTrialRunner,
    save: Save,
    trials: list[Trial],
    report: TickReport,
    notes: dict[int, str],
) -> None:
    """A pack that finds all `parallelism` slots taken stays a set of candidates, launched by
    `recover_candidates` once a pack ends."""
    pack = book.spec.trial.pack
    waiting = [
        t for t in book.trials_in(TrialStatus.CANDIDATE) if isinstance(t, Trial) and t not in trials
    ]
    trials = waiting + trials  # the oldest first
    if not trials or pack is None:
        return
    save()  # record the trials first: a crash now leaves CANDIDATEs
    by_index = {t.index: t for t in trials}
    groups = packs.group({t.index: dict(t.arms[0].parameters) for t in trials}, pack)
    for indices in groups[: max(0, book.spec.budget.parallelism - book.running_packs())]:
        members = [by_index[i] for i in indices]
        try:
            metadata = runner.run_pack(members)
        except Exception as e:  # e.g. the API server said 500: not the trainer's fault
            for trial in members:
                trial.mark_running(no_runner_required=True)
                outcomes.record_infra(book, trial, f"launch failed: {e}", report)
            continue
        for trial in members:
            trial.update_run_metadata(metadata[trial.index])
            trial.mark_running(no_runner_required=True)
            report.events.append(
                Event(
                    "TrialLaunched",
                    f"trial {trial.index} launched in pack "
                    f"{metadata[trial.index][APP_HANDLE]}{notes.get(trial.index, '')}",
                    trial.index,
                )
            )


__all__ = ["launch_all", "recover_candidates", "relaunch_requeued"]
