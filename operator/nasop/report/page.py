"""`nasop report`: one self-contained HTML page with the views of the Ax multi-objective NAS
tutorial.

Why a single file: the report is read long after the search, often copied off a cluster or
attached to a ticket, and it must open without network access. So plotly.js is inlined once,
compressed (assets.py), and every figure is a `<div>` that uses it; the trial table is
plain HTML. The page ends with a sentence stating its size and what takes it.

The page shows, in order: a header (phase, counts, hypervolume, reference point); the trade-off
scatter of the first two objectives (x = objectives[1], y = objectives[0], as in the tutorial's
num_params vs val_acc), coloured by trial index with the Pareto front as a step line and the
reference point marked; a scatter matrix when there are 3-4 objectives; how the search got there
(hypervolume against completed trials, every trial's learning curves: history.py); the
parameter importance and Ax's cross-validation plot per objective; and a table of every trial.
Importance and cross-validation need a fitted model: the generation strategy is fit the way `gen`
would (moving on from Sobol once its trials are in), which mutates only the in-memory strategy;
before the model phase a note stands in their place.
"""

from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING, Any

from nasop import formatting
from nasop.report import assets, history

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from nasop.engine.search import Search
    from nasop.spec import NASExperimentStatus

log = logging.getLogger(__name__)

COLORSCALE = "Viridis"


# ----------------------------------------------------------------------------- figures


def _hover(trial: int, parameters: dict[str, Any], metrics: dict[str, float]) -> str:
    lines = [f"<b>trial {trial}</b>"]
    lines += [f"{k} = {_fmt(v)}" for k, v in sorted(metrics.items())]
    lines += [f"{k} = {_fmt(v)}" for k, v in parameters.items()]
    return "<br>".join(
        html.escape(line, quote=False) if i else line for i, line in enumerate(lines)
    )


def tradeoff_figure(search: Search, status: NASExperimentStatus | None = None) -> go.Figure:
    """Completed trials in objective space; Pareto points joined by a step line (2 objectives)."""
    import plotly.graph_objects as go

    objectives = search.spec.objectives
    status = status or search.status()
    obs = [o for o in search.observations() if all(m.metric in o.metrics for m in objectives)]
    y_obj = objectives[0]
    x_obj = objectives[1] if len(objectives) > 1 else None

    def xy(metrics: dict[str, float], trial: int) -> tuple[float, float]:
        return (metrics[x_obj.metric] if x_obj else trial), metrics[y_obj.metric]

    fig = go.Figure(_trials_trace(obs, [xy(o.metrics, o.trial) for o in obs]))
    front = sorted(status.pareto_front, key=lambda p: xy(p.metrics, p.trial))
    if front:
        # from one front point to the next (x ascending) through the corner both dominate
        shape = "hv" if x_obj is not None and x_obj.minimize else "vh"
        points = [xy(p.metrics, p.trial) for p in front]
        fig.add_trace(_front_trace(front, points, shape, lines=len(objectives) == 2))
    ref = status.objective_thresholds
    if x_obj is not None and x_obj.metric in ref and y_obj.metric in ref:
        fig.add_trace(_reference_trace(_ref_label(search), x_obj.metric, y_obj.metric, ref))
    fig.update_layout(
        title=f"{y_obj.metric} vs {x_obj.metric if x_obj else 'trial'} "
        f"({len(obs)} completed trials)",
        xaxis_title=_axis(x_obj) if x_obj else "trial index",
        yaxis_title=_axis(y_obj),
        legend={"orientation": "h", "y": -0.15},
        height=560,
        template="plotly_white",
    )
    return fig


def _trials_trace(obs: list[Any], pts: list[tuple[float, float]]) -> Any:
    import plotly.graph_objects as go

    return go.Scatter(
        name="trials",
        mode="markers",
        x=[p[0] for p in pts],
        y=[p[1] for p in pts],
        customdata=[o.trial for o in obs],
        text=[_hover(o.trial, o.parameters, o.metrics) for o in obs],
        hovertemplate="%{text}<extra></extra>",
        marker={
            "size": 10,
            "color": [o.trial for o in obs],
            "colorscale": COLORSCALE,
            "showscale": True,
            "colorbar": {"title": {"text": "trial"}},
            "line": {"width": 0.5, "color": "#333"},
        },
    )


def _front_trace(
    front: list[Any], points: list[tuple[float, float]], shape: str, lines: bool
) -> Any:
    import plotly.graph_objects as go

    return go.Scatter(
        name="Pareto front",
        mode="lines" if lines else "markers",
        x=[p[0] for p in points],
        y=[p[1] for p in points],
        customdata=[p.trial for p in front],
        line={"shape": shape, "color": "#d62728", "width": 2},
        marker={"symbol": "circle-open", "size": 16, "color": "#d62728"},
        hoverinfo="skip",
    )


def _reference_trace(label: str, x_metric: str, y_metric: str, ref: dict[str, float]) -> Any:
    import plotly.graph_objects as go

    return go.Scatter(
        name=label,
        mode="markers",
        x=[ref[x_metric]],
        y=[ref[y_metric]],
        marker={"symbol": "x", "size": 14, "color": "black"},
        hovertemplate=f"{label}<br>{x_metric} = %{{x}}<br>{y_metric} = %{{y}}<extra></extra>",
    )


def splom_figure(search: Search, status: NASExperimentStatus | None = None) -> go.Figure:
    """Scatter matrix of all objectives (used for 3-4 objectives)."""
    import plotly.graph_objects as go

    metrics = [o.metric for o in search.spec.objectives]
    obs = [o for o in search.observations() if all(m in o.metrics for m in metrics)]
    on_front = {p.trial for p in (status or search.status()).pareto_front}
    fig = go.Figure(
        go.Splom(
            dimensions=[{"label": m, "values": [o.metrics[m] for o in obs]} for m in metrics],
            customdata=[o.trial for o in obs],
            text=[_hover(o.trial, o.parameters, o.metrics) for o in obs],
            hovertemplate="%{text}<extra></extra>",
            diagonal_visible=False,
            marker={
                "size": [11 if o.trial in on_front else 7 for o in obs],
                "color": [o.trial for o in obs],
                "colorscale": COLORSCALE,
                "showscale": True,
                "colorbar": {"title": {"text": "trial"}},
                "line": {
                    "width": [2 if o.trial in on_front else 0.5 for o in obs],
                    "color": "#d62728",
                },
            },
        )
    )
    fig.update_layout(
        title="Objectives (Pareto points outlined in red)", height=720, template="plotly_white"
    )
    return fig


def fitted_model(search: Search) -> Any:
    """The strategy's model fitted to the data (an Ax adapter), or a note saying why there is none.

    Fits the way `gen` would (moving on from Sobol once its trials are in); only the in-memory
    strategy changes.
    """
    try:
        adapter = search.strategy.fit(experiment=search.experiment)
    except Exception as e:  # a report must not fail because the model cannot be fit yet
        log.info("model not fitted: %s", e, exc_info=True)
        return f"Not available: Ax could not fit the model ({type(e).__name__}: {e})."
    if adapter is None or not adapter.can_predict:
        node = search.strategy.current_node_name
        return (
            f"Not available yet: the generation strategy is in its {node} phase, which "
            "fits no model. This appears once the initial trials have completed and the "
            "BoTorch model takes over."
        )
    return adapter


def cross_validation(search: Search, adapter: Any = None) -> list[tuple[str, str, go.Figure]] | str:
    """Ax's leave-one-out CV plot per objective, or a note saying why there is none yet."""
    adapter = fitted_model(search) if adapter is None else adapter
    if isinstance(adapter, str):
        return adapter
    try:
        from ax.analysis.plotly.cross_validation import CrossValidationPlot
        from ax.analysis.plotly.plotly_analysis import PlotlyAnalysisCard

        card = CrossValidationPlot(
            metric_names=[o.metric for o in search.spec.objectives], untransform=True
        ).compute(
            experiment=search.experiment, generation_strategy=search.strategy, adapter=adapter
        )
        return [
            (c.title, c.subtitle, c.get_figure())
            for c in card.flatten()
            if isinstance(c, PlotlyAnalysisCard) and c.title.startswith("Cross Validation")
        ] or "Ax produced no cross-validation plot for the objectives."
    except Exception as e:  # a report must not fail because the model cannot be fit yet
        log.info("cross-validation not computed: %s", e, exc_info=True)
        return f"Not available: Ax could not compute cross-validation ({type(e).__name__}: {e})."


def importance(search: Search, adapter: Any) -> list[tuple[str, go.Figure, dict[str, float]]] | str:
    """Parameter importance per objective (Ax's sensitivity analysis), or why there is none."""
    if isinstance(adapter, str):
        return adapter
    try:
        return history.importance(search, adapter)
    except Exception as e:
        log.info("sensitivity not computed: %s", e, exc_info=True)
        return f"Not available: Ax could not compute the sensitivity ({type(e).__name__}: {e})."


# ----------------------------------------------------------------------------- tables


def trial_table(search: Search, status: NASExperimentStatus | None = None) -> str:
    """Every trial as one row of a plain HTML table."""
    params = [p.name for p in search.spec.search_space]
    metrics = list(search.spec.metric_names)
    finals = search.ledger.final_values()
    front = {p.trial for p in (status or search.status()).pareto_front}
    reasons, waits = search.state.reasons, search.state.waits
    times = search.ledger.timings(search.clock())
    pending = set(search.ledger.pending())
    head = ["trial", "status", "waited", "ran", "generator", *params, *metrics, "Pareto", "reason"]
    rows = []
    for idx, trial in sorted(search.experiment.trials.items()):
        arm = getattr(trial, "arm", None)
        values = arm.parameters if arm is not None else {}
        reason = reasons.get(idx) or trial.status_reason or ""
        if idx in pending:
            reason = f"waiting: {waits[idx]}" if waits.get(idx) else "waiting to start"
        waited, ran = times.get(idx, (None, None))
        cells = [
            str(idx),
            "pending" if idx in pending else trial.status.name.lower().replace("_", " "),
            "" if waited is None else formatting.seconds(waited),
            "" if ran is None else formatting.seconds(ran),
            history.generator_of(trial),
        ]
        cells += [_fmt(values.get(p, "")) for p in params]
        cells += [_fmt(finals.get(idx, {}).get(m, "")) for m in metrics]
        cells += ["★" if idx in front else "", reason]
        css = trial.status.name.lower()
        rows.append(
            f'<tr class="{css}" data-trial="{idx}">'
            + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
            + "</tr>"
        )
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return (
        f'<table class="trials"><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _header(search: Search, st: NASExperimentStatus) -> str:
    c = st.trials
    objectives = ", ".join(f"{o.metric} ({o.goal.value})" for o in search.spec.objectives)
    ref = ", ".join(f"{k} = {_fmt(v)}" for k, v in st.objective_thresholds.items()) or "none"
    items = [
        ("phase", st.phase.value + (f" — {st.message}" if st.message else "")),
        ("objectives", objectives),
        (
            "trials",
            f"{c.total} total: {c.completed} completed, {c.running} running, "
            f"{c.failed} failed, {c.early_stopped} stopped early "
            f"(budget {search.spec.budget.max_trials})",
        ),
        ("generator", st.generator or "none yet"),
        ("hypervolume", f"{_fmt(st.hypervolume or 0.0)} ({st.pareto_size} Pareto points)"),
        (_ref_label(search), ref),
    ]
    dl = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items)
    return f"<h1>{html.escape(search.name)}</h1><dl>{dl}</dl>"


# ----------------------------------------------------------------------------- page


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:600}
dd{margin:0}.note{background:#f6f6f6;border-left:4px solid #aaa;padding:.6em 1em}
table.trials{border-collapse:collapse;font-size:.85em;width:100%}
.trials th,.trials td{border:1px solid #ddd;padding:.25em .5em;text-align:right}
.trials th{background:#f0f0f0;position:sticky;top:0}.trials td:last-child{text-align:left}
tr.failed,tr.abandoned{background:#fdecea}tr.early_stopped{background:#fff6e0}
"""


def _div(fig: go.Figure, div_id: str) -> str:
    return fig.to_html(
        full_html=False, include_plotlyjs=False, default_width="100%", div_id=f"plot-{div_id}"
    )


def render_html(search: Search) -> str:
    """The whole report page as one string (plotly.js inlined; no network needed to view it)."""
    status = search.status()  # built once: it computes the front
    observed = bool(search.observations())
    parts = [_header(search, status), "<h2>Trade-off</h2>"]
    if observed:
        parts.append(_div(tradeoff_figure(search, status), "tradeoff"))
        if len(search.spec.objectives) >= 3:
            parts.append(_div(splom_figure(search, status), "splom"))
    else:
        parts.append('<p class="note">No completed trials yet.</p>')
    parts.append("<h2>Progress: hypervolume against trials</h2>")
    if observed:
        parts.append(_div(history.hypervolume_figure(search), "hypervolume"))
    else:
        parts.append('<p class="note">No completed trials yet.</p>')
    parts.append("<h2>Learning curves</h2>")
    curve_figs = history.learning_curve_figures(search)
    parts += [_div(fig, f"curves-{i}") for i, fig in enumerate(curve_figs)] or [
        '<p class="note">No metric was logged at more than one step yet.</p>'
    ]
    adapter = fitted_model(search)
    parts.append("<h2>Parameter importance (sensitivity analysis)</h2>")
    imp = importance(search, adapter)
    if isinstance(imp, str):
        parts.append(f'<p class="note" id="importance-note">{html.escape(imp)}</p>')
    else:
        for i, (title, fig, _) in enumerate(imp):
            parts.append(f"<h3>{html.escape(title)}</h3>{_div(fig, f'importance-{i}')}")
    parts.append("<h2>Model fit (cross-validation)</h2>")
    cv = cross_validation(search, adapter)
    if isinstance(cv, str):
        parts.append(f'<p class="note" id="cv-note">{html.escape(cv)}</p>')
    else:
        for i, (title, subtitle, fig) in enumerate(cv):
            parts.append(
                f"<h3>{html.escape(title)}</h3><p>{html.escape(subtitle)}</p>{_div(fig, f'cv-{i}')}"
            )
    parts += ["<h2>Trials</h2>", trial_table(search, status)]
    title = html.escape(f"nasop report: {search.name}")

    def page(note: str) -> str:
        return (
            f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{_CSS}</style>{assets.head_scripts()}</head>"
            f'<body>{"".join(parts)}<footer id="page-size">{html.escape(note)}</footer>'
            f"{assets.body_end_script()}</body></html>"
        )

    note = ""
    for _ in range(3):  # the note counts its own bytes: settle on a length
        note = assets.size_note(len(page(note).encode("utf-8")))
    return page(note)


def write_report(search: Search, path: str) -> None:
    """Render the report and write it to `path` (UTF-8)."""
    page = render_html(search)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(page)


def _ref_label(search: Search) -> str:
    all_set = all(o.threshold is not None for o in search.spec.objectives)
    return (
        "objective thresholds"
        if all_set
        else "reference point (thresholds, else inferred from the front)"
    )


def _axis(o: Any) -> str:
    return f"{o.metric} ({'lower' if o.minimize else 'higher'} is better)"


def _fmt(v: Any) -> str:
    return formatting.number(v, digits=6)


__all__ = [
    "cross_validation",
    "fitted_model",
    "importance",
    "render_html",
    "splom_figure",
    "tradeoff_figure",
    "trial_table",
    "write_report",
]
