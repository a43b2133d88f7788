"""The live view of `nasop run` (rich) and the Pareto-front table printed at the end."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from nasop import spec
from nasop.engine.search import Search, TickReport

_STYLE = {
    "TrialLaunched": "cyan",
    "TrialCompleted": "green",
    "TrialFailed": "red",
    "TrialEarlyStopped": "yellow",
    "TrialInterrupted": "yellow",
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
        self.task = self.progress.add_task(search.name, total=search.spec.budget.max_trials,
                                           detail="")

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
        detail = (f"running {t.running}  failed {t.failed}  stopped {t.early_stopped}  "
                  f"front {st.pareto_size}  HV {hv}  [{st.generator or '-'}]")
        done = t.completed + t.failed + t.early_stopped
        self.progress.update(self.task, completed=min(done, self.search.spec.budget.max_trials),
                             detail=detail, total=self.search.spec.budget.max_trials)


def print_front(status: spec.NASExperimentStatus, s: spec.NASExperimentSpec,
                console: Console) -> None:
    """The Pareto front as a table, objectives first, then the parameters."""
    t = status.trials
    console.print(
        f"[bold]{status.phase.value}[/]: {t.total} trials ({t.completed} completed, "
        f"{t.failed} failed, {t.early_stopped} stopped early); "
        f"Pareto front {status.pareto_size} points, hypervolume {status.hypervolume or 0:.6g} "
        f"w.r.t. {status.objective_thresholds}"
        + (f" (inferred: {', '.join(status.inferred_thresholds)})"
           if status.inferred_thresholds else "")
        + (f"\n{status.message}" if status.message else "")
    )
    if not status.pareto_front:
        return
    metrics = s.metric_names
    params = [p.name for p in s.search_space]
    table = Table(title="Pareto front", show_lines=False)
    table.add_column("trial", justify="right")
    for m in metrics:
        goal = next((o.goal.value[:3] for o in s.objectives if o.metric == m), "con")
        table.add_column(f"{m} ({goal})", justify="right", style="bold")
    for p in params:
        table.add_column(p, justify="right")
    for pt in status.pareto_front:
        row = [str(pt.trial)]
        row += [f"{pt.metrics[m]:.4g}" if m in pt.metrics else "-" for m in metrics]
        row += [_fmt(pt.parameters.get(p)) for p in params]
        table.add_row(*row)
    console.print(table)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


__all__ = ["SearchProgress", "print_front"]
