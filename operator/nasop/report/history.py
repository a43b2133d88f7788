"""The report's views of how a search got where it is, and whether it is worth running longer.

- Hypervolume against completed trials: the front's hypervolume after each completed trial (by
  trial index), against the final reference point, with the trial where the model (BoTorch or
  SAASBO) took over from Sobol marked. A curve that flattened says more trials buy little.
- Learning curves: every trial's per-epoch values of each metric logged more than once, as the
  trial's TensorBoard metric read them from its log directory into the experiment's data.
  Early-stopped trials are dashed and end in a cross where they were cut.
- Parameter importance: Ax's total-order Sobol sensitivity of each objective under the fitted
  model (`SensitivityAnalysisPlot`), normalised to sum to 1.

Each figure keeps its numbers in its traces (`x`, `y`, `customdata`), so tests read them back.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ax.core.base_trial import TrialStatus

from nasop.engine import pareto, strategy

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from nasop.engine.search import Search

log = logging.getLogger(__name__)

MODEL_NODES = {strategy.MODEL_NODE, "SAASBO"}
CUT_COLOR = "#ff7f0e"


def generator_of(trial: Any) -> str:
    """The generation node that proposed `trial` ("manual" for attached or warm-start trials)."""
    for gr in getattr(trial, "generator_runs", []):
        name = gr._generation_node_name or gr._generator_key
        if name:
            return str(name)
    return "manual"


def hypervolume_trace(search: Search) -> list[tuple[int, float, str]]:
    """(trial, hypervolume of the front of the completed trials up to it, its generator)."""
    obs = search.observations()
    reference = search.front().reference
    out: list[tuple[int, float, str]] = []
    for k, ob in enumerate(obs, start=1):
        f = pareto.front(
            search.spec.objectives,
            search.spec.parsed_outcome_constraints,
            obs[:k],
            reference=reference,
        )
        out.append((ob.trial, f.hypervolume, generator_of(search.experiment.trials[ob.trial])))
    return out


def hypervolume_figure(search: Search) -> go.Figure:
    import plotly.graph_objects as go

    points = hypervolume_trace(search)
    fig = go.Figure()
    for name, model in (("Sobol (initial)", False), ("model (BoTorch)", True)):
        sel = [(k, p) for k, p in enumerate(points, start=1) if (p[2] in MODEL_NODES) is model]
        fig.add_trace(
            go.Scatter(
                name=name,
                mode="markers",
                x=[k for k, _ in sel],
                y=[p[1] for _, p in sel],
                customdata=[p[0] for _, p in sel],
                marker={"size": 8, "symbol": "diamond" if model else "circle"},
                hovertemplate="after trial %{customdata} (%{x} completed)<br>"
                "hypervolume %{y:.6g}<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            name="hypervolume",
            mode="lines",
            x=list(range(1, len(points) + 1)),
            y=[p[1] for p in points],
            customdata=[p[0] for p in points],
            line={"shape": "hv", "color": "#444"},
            hoverinfo="skip",
        )
    )
    switch = next((k for k, p in enumerate(points, start=1) if p[2] in MODEL_NODES), None)
    if switch is not None:
        fig.add_vline(
            x=switch - 0.5,
            line={"dash": "dash", "color": "#d62728"},
            annotation_text=f"model from trial {points[switch - 1][0]}",
            annotation_position="top left",
        )
    fig.update_layout(
        title="Hypervolume against completed trials",
        xaxis_title="completed trials (by trial index)",
        yaxis_title="hypervolume",
        legend={"orientation": "h", "y": -0.2},
        height=420,
        template="plotly_white",
        meta={"switch": switch},
    )
    return fig


def curves(search: Search) -> dict[str, dict[int, list[tuple[float, float]]]]:
    """metric -> trial -> [(step, value)], for every metric some trial logged at several steps."""
    df = search.experiment.lookup_data().full_df
    if df.empty or "step" not in df.columns:
        return {}
    df = (
        df.dropna(subset=["step"])
        .sort_values(["trial_index", "step"])
        .drop_duplicates(["trial_index", "metric_name", "step"], keep="last")
    )  # re-fetches
    out: dict[str, dict[int, list[tuple[float, float]]]] = {}
    for metric, rows in df.groupby("metric_name"):
        if rows.groupby("trial_index")["step"].nunique().max() < 2:
            continue  # logged once per trial: a final value, not a curve
        out[str(metric)] = {
            int(idx): [(float(s), float(v)) for s, v in zip(g["step"], g["mean"])]
            for idx, g in rows.groupby("trial_index")
        }
    return out


def learning_curve_figures(search: Search) -> list[go.Figure]:
    """One figure per curve metric: a line per trial; early-stopped ones dashed, cut with a x."""
    import plotly.graph_objects as go

    figs = []
    for metric, by_trial in curves(search).items():
        fig = go.Figure()
        legend_shown: set[str] = set()
        for idx, pts in sorted(by_trial.items()):
            status = search.experiment.trials[idx].status
            cut = status is TrialStatus.EARLY_STOPPED
            group = "early stopped" if cut else status.name.lower().replace("_", " ")
            fig.add_trace(
                go.Scatter(
                    name=f"trial {idx}",
                    legendgroup=group,
                    mode="lines+markers",
                    x=[s for s, _ in pts],
                    y=[v for _, v in pts],
                    customdata=[idx] * len(pts),
                    line={"dash": "dash", "color": CUT_COLOR} if cut else {"width": 1.5},
                    marker={
                        "symbol": ["circle"] * (len(pts) - 1) + ["x"] if cut else "circle",
                        "size": [5] * (len(pts) - 1) + [13] if cut else 5,
                    },
                    opacity=1.0 if cut else 0.75,
                    meta={"trial": idx, "status": group},
                    hovertemplate=f"trial {idx} ({group})<br>step %{{x}}<br>{metric} %{{y:.6g}}"
                    "<extra></extra>",
                )
            )
            legend_shown.add(group)
        fig.update_layout(
            title=f"Learning curves: {metric} per epoch ({len(by_trial)} trials; early-stopped "
            "trials dashed, cut at the cross)",
            xaxis_title="step (epoch)",
            yaxis_title=metric,
            height=460,
            template="plotly_white",
            legend={"font": {"size": 10}},
        )
        figs.append(fig)
    return figs


def importance(search: Search, adapter: Any) -> list[tuple[str, go.Figure, dict[str, float]]]:
    """Ax's sensitivity analysis per objective: (title, figure, parameter -> signed share)."""
    from ax.analysis.plotly.sensitivity import SensitivityAnalysisPlot

    out = []
    for o in search.spec.objectives:
        card = SensitivityAnalysisPlot(metric_name=o.metric, order="total", top_k=None).compute(
            experiment=search.experiment, generation_strategy=search.strategy, adapter=adapter
        )
        shares = {
            str(p): float(s) for p, s in zip(card.df["parameter_name"], card.df["sensitivity"])
        }
        out.append((card.title, card.get_figure(), shares))
    return out


__all__ = [
    "curves",
    "generator_of",
    "hypervolume_figure",
    "hypervolume_trace",
    "importance",
    "learning_curve_figures",
]
