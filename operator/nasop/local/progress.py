"""The live view of `nasop run` (rich) and the Pareto-front table printed at the end."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from nasop import formatting, spec
from nasop.engine.search import Search, TickReport

_STYLE = {
    "TrialLaunched": "cyan",
    "TrialCompleted": "green",
    "TrialFailed": "red",
    "TrialEarlyStopped": "yellow",
    "TrialInterrupted": "yellow",
    "TrialWaiting": "yellow",
}


class SearchProgress:
    """Trials done/running/failed, the front's size and hypervolume, one line per event."""

    def __init__(self, search: Search, console: Console, quiet: bool = False) -> None:
        self.search = search
        self.console = console
        self.quiet = quiet
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            console=console,
            transient=False,
            disable=quiet,
        )
        self.task = self.progress.add_task(
            search.name, total=search.spec.budget.max_trials, detail=""
        )

    def __enter__(self) -> SearchProgress:
        self.progress.__enter__()
        self.update(TickReport(changed=True))
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def update(self, report: TickReport) -> None:
        for ev in report.events:
            style = _STYLE.get(ev.reason, "bold")
            line = f"[{style}]{ev.reason}[/] {ev.message}"
            if self.quiet:
                self.console.print(line)
            else:
                self.progress.console.print(line)
        if not report.changed:
            return
        st = self.search.status()
        t = st.trials
        hv = f"{st.hypervolume:.4g}" if st.hypervolume is not None else "-"
        detail = (
            f"running {t.running}  pending {t.pending}  failed {t.failed}  "
            f"stopped {t.early_stopped}  "
            f"front {st.pareto_size}  HV {hv}  [{st.generator or '-'}]"
        )
        done = t.completed + t.failed + t.early_stopped
        self.progress.update(
            self.task,
            completed=min(done, self.search.spec.budget.max_trials),
            detail=detail,
            total=self.search.spec.budget.max_trials,
        )


def print_trials(search: Search, console: Console, now: float) -> None:
    """Each launched trial: its state, how long it waited to start and how long it ran (a slow
    cluster shows in "waited", a slow model in "ran"), and why it waits or ended."""
    times = search.ledger.timings(now)
    if not times:
        return
    pending, state = set(search.ledger.pending()), search.state
    table = Table(title="Trials")
    for name in ("trial", "status", "waited", "ran"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("reason", overflow="fold")
    for idx, (waited, ran) in sorted(times.items()):
        trial = search.experiment.trials[idx]
        if idx in pending:
            shown, why = "pending", state.waits.get(idx, "")
        else:
            shown, why = trial.status.name.lower().replace("_", " "), state.reasons.get(idx, "")
        table.add_row(
            str(idx),
            shown,
            "-" if waited is None else formatting.seconds(waited),
            "-" if ran is None else formatting.seconds(ran),
            why,
        )
    console.print(table)


def print_front(
    status: spec.NASExperimentStatus, s: spec.NASExperimentSpec, console: Console
) -> None:
    """The Pareto front as a table with full column names, fitted to the console's width.

    One row per trial (objectives first, then the parameters) when that fits; otherwise
    transposed, one row per metric or parameter and one column per trial, split into as many
    tables as the trials need, so that an 80-column terminal truncates no name.
    """
    t = status.trials
    console.print(
        f"[bold]{status.phase.value}[/]: {t.total} trials ({t.completed} completed, "
        f"{t.failed} failed, {t.early_stopped} stopped early); "
        f"Pareto front {status.pareto_size} points, hypervolume {status.hypervolume or 0:.6g} "
        f"w.r.t. {status.objective_thresholds}"
        + (
            f" (inferred: {', '.join(status.inferred_thresholds)})"
            if status.inferred_thresholds
            else ""
        )
        + (f"\n{status.message}" if status.message else "")
    )
    if not status.pareto_front:
        return
    metrics = s.metric_names
    params = [p.name for p in s.search_space]
    names = ["trial"] + [f"{m} ({_goal(s, m)})" for m in metrics] + params
    rows = [
        [str(pt.trial)]
        + [formatting.number(pt.metrics[m]) if m in pt.metrics else "-" for m in metrics]
        + [formatting.number(pt.parameters.get(p)) for p in params]
        for pt in status.pareto_front
    ]
    bold = set(range(1, 1 + len(metrics)))
    widths = [max(len(n), *(len(r[i]) for r in rows)) for i, n in enumerate(names)]
    if _table_width(widths) <= console.width:
        table = Table(title="Pareto front")
        for i, name in enumerate(names):
            table.add_column(
                name, justify="right", style="bold" if i in bold else None, no_wrap=True
            )
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    for n, chunk in enumerate(_chunks(names, rows, console.width)):
        title = "Pareto front" + (" (continued)" if n else "")
        table = Table(title=title)
        table.add_column("", no_wrap=True)
        for row in chunk:
            table.add_column(f"#{row[0]}", justify="right", no_wrap=True)
        for i, name in enumerate(names[1:], start=1):
            table.add_row(name, *(r[i] for r in chunk), style="bold" if i in bold else None)
        console.print(table)


def _table_width(widths: list[int]) -> int:
    """Characters a rich Table with the default box needs: 2 of padding and a rule per column."""
    return sum(widths) + 3 * len(widths) + 1


def _chunks(names: list[str], rows: list[list[str]], width: int) -> list[list[list[str]]]:
    """Trials (rows) grouped so that each transposed table fits in `width` (one trial at least)."""
    label = max(len(n) for n in names[1:])
    chunks: list[list[list[str]]] = []
    used = _table_width([label])
    for row in rows:
        need = max(len(c) for c in [f"#{row[0]}", *row[1:]]) + 3
        if chunks and used + need <= width:
            chunks[-1].append(row)
            used += need
        else:
            chunks.append([row])
            used = _table_width([label]) + need
    return chunks


def _goal(s: spec.NASExperimentSpec, metric: str) -> str:
    return next((o.goal.value[:3] for o in s.objectives if o.metric == metric), "con")


__all__ = ["SearchProgress", "print_front"]
