"""The report's history views read back from their figures: hypervolume after each completed
trial (model switch marked), every trial's learning curve (early-stopped ones cut), and Ax's
parameter sensitivity; a real Search whose trials and per-epoch data are attached by hand."""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np
import pytest
from ax.core.base_trial import TrialStatus
from test_report import MANIFEST, synthetic

from nasop import report
from nasop.engine import pareto
from nasop.engine.search import Search
from nasop.report import history as report_history
from synthetic_trials import SyntheticTrial, search_with_trials

EPOCHS = 4
SOBOL = 6
STOPPED = {4, 9}  # early-stopped after 2 epochs


def curve(final: float, epochs: int) -> list[float]:
    """Accuracy per epoch rising to `final` at the last of EPOCHS epochs."""
    return [final - 0.2 * (EPOCHS - 1 - e) / EPOCHS for e in range(epochs)]


def _values(v: Any) -> list[float]:
    """A trace's numbers, also when Ax's figure holds them as a plotly typed array."""
    if isinstance(v, dict) and "bdata" in v:
        return list(np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]))
    return list(v)


def history_search(tmp_path: Any, completed: int = 12) -> Search:
    rng = np.random.default_rng(1)
    trials = []
    for i in range(completed):
        params = {
            "hidden_size_1": int(rng.integers(16, 129)),
            "hidden_size_2": int(rng.integers(16, 129)),
            "learning_rate": float(10 ** rng.uniform(-4, -2)),
        }
        values = synthetic(params)
        stopped = i in STOPPED
        trials.append(
            SyntheticTrial(
                params,
                {
                    "num_params": [values["num_params"]],
                    "val_acc": curve(values["val_acc"], 2 if stopped else EPOCHS),
                },
                status=TrialStatus.EARLY_STOPPED if stopped else TrialStatus.COMPLETED,
                node="Sobol" if i < SOBOL else "MBM",
            )
        )
    return search_with_trials(MANIFEST, str(tmp_path), trials)


def test_hypervolume_after_each_completed_trial_with_the_switch_marked(tmp_path):
    search = history_search(tmp_path)
    fig = report_history.hypervolume_figure(search)
    line = next(t for t in fig.data if t.name == "hypervolume")
    obs = search.observations()
    assert list(line.customdata) == [o.trial for o in obs] and len(obs) == 12 - len(STOPPED)
    ref = search.front().reference
    expected = [
        pareto.front(search.spec.objectives, [], obs[:k], reference=ref).hypervolume
        for k in range(1, len(obs) + 1)
    ]
    assert list(line.y) == pytest.approx(expected)
    assert all(b >= a for a, b in zip(line.y, line.y[1:])) and line.y[-1] > line.y[0]
    assert line.y[-1] == pytest.approx(search.front().hypervolume)
    sobol = next(t for t in fig.data if t.name.startswith("Sobol"))
    model = next(t for t in fig.data if t.name.startswith("model"))
    assert list(sobol.customdata) == [o.trial for o in obs if o.trial < SOBOL]
    assert list(model.customdata) == [o.trial for o in obs if o.trial >= SOBOL]
    # the switch: between the last Sobol trial and the first model trial on the x axis
    first_model = next(k for k, o in enumerate(obs, start=1) if o.trial >= SOBOL)
    assert fig.layout.meta["switch"] == first_model
    assert [s.x0 for s in fig.layout.shapes] == [first_model - 0.5]
    assert fig.layout.annotations[0].text == f"model from trial {SOBOL}"


def test_every_trial_has_its_learning_curve_and_early_stopped_ones_are_cut(tmp_path):
    search = history_search(tmp_path)
    figs = report_history.learning_curve_figures(search)
    assert len(figs) == 1  # num_params is logged once: a final value, not a curve
    traces = {t.meta["trial"]: t for t in figs[0].data}
    assert sorted(traces) == list(range(12))
    finals = {
        t: synthetic(dict(search.experiment.trials[t].arm.parameters))["val_acc"] for t in traces
    }
    for idx, t in traces.items():
        n = 2 if idx in STOPPED else EPOCHS
        assert list(t.x) == [float(e) for e in range(n)]
        assert list(t.y) == pytest.approx(curve(finals[idx], n))
        if idx in STOPPED:
            assert t.meta["status"] == "early stopped" and t.line.dash == "dash"
            assert list(t.marker.symbol)[-1] == "x"
        else:
            assert t.meta["status"] == "completed" and t.line.dash is None
    assert "val_acc" in figs[0].layout.title.text


def test_no_curves_before_any_metric_has_two_steps(tmp_path):
    from test_report import make_search

    search = make_search(tmp_path, completed=3)  # final values only, no step column
    assert report_history.learning_curve_figures(search) == []
    page = report.render_html(search)
    assert "No metric was logged at more than one step yet" in page
    assert 'id="importance-note"' in page and 'id="plot-hypervolume"' in page


@pytest.mark.slow
def test_parameter_importance_from_ax_sensitivity(tmp_path):
    """num_params depends on the hidden sizes only: the learning rate must not matter to it."""
    search = history_search(tmp_path, completed=14)
    adapter = report.fitted_model(search)
    assert not isinstance(adapter, str), adapter
    imp = report.importance(search, adapter)
    assert not isinstance(imp, str), imp
    assert [title for title, _, _ in imp] == [
        "Sensitivity Analysis for val_acc",
        "Sensitivity Analysis for num_params",
    ]
    for _, fig, shares in imp:
        assert set(shares) == {"hidden_size_1", "hidden_size_2", "learning_rate"}
        assert sum(abs(v) for v in shares.values()) == pytest.approx(1.0)
        plotted = sorted(abs(float(x)) for t in fig.data for x in _values(t.x))
        assert plotted == pytest.approx(sorted(abs(v) for v in shares.values()))
    num_params = imp[1][2]
    assert abs(num_params["learning_rate"]) < 0.05
    assert abs(num_params["hidden_size_1"]) > abs(num_params["learning_rate"])
    page = report.render_html(search)
    assert 'id="plot-importance-0"' in page and 'id="plot-importance-1"' in page
    assert 'id="plot-curves-0"' in page and 'id="plot-cv-0"' in page
    assert math.isfinite(search.front().hypervolume)
