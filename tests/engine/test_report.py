"""The HTML report on a real search whose trials are created and completed by hand (no training)."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
import yaml
from ax.core.base_trial import TrialStatus

from nasop import report, spec
from nasop.engine.search import Search
from synthetic_trials import SyntheticTrial, add_trial, search_with_trials

MANIFEST = yaml.safe_load(
    """
apiVersion: nasop.dev/v1alpha1
kind: NASExperiment
metadata: {name: report-test}
spec:
  searchSpace:
    - {name: hidden_size_1, type: int,   bounds: [16, 128], log: true}
    - {name: hidden_size_2, type: int,   bounds: [16, 128], log: true}
    - {name: learning_rate, type: float, bounds: [1.0e-4, 1.0e-2], log: true}
  objectives:
    - {metric: val_acc,    goal: maximize, threshold: 0.5}
    - {metric: num_params, goal: minimize, threshold: 20000}
  budget: {maxTrials: 20, parallelism: 2}
  optimizer: {initialTrials: 6, seed: 0}
"""
)
FAILURE = "trial exited 1: CUDA out of memory <oom>"


def synthetic(p: dict[str, Any]) -> dict[str, float]:
    """Bigger nets are more accurate; a learning rate far from 3e-3 costs accuracy."""
    h1, h2 = p["hidden_size_1"], p["hidden_size_2"]
    n = 784 * h1 + h1 * h2 + 10 * h2
    acc = 0.95 - 0.3 * math.exp(-n / 40000) - 0.1 * (math.log10(p["learning_rate"]) + 2.5) ** 2
    return {"val_acc": acc, "num_params": float(n)}


def make_search(tmp_path: Any, completed: int, manifest: dict[str, Any] = MANIFEST) -> Search:
    extra = [o.metric for o in spec.parse_manifest(manifest).spec.objectives[2:]]
    rng = np.random.default_rng(0)
    trials = []
    for _ in range(completed):
        params = {
            "hidden_size_1": int(rng.integers(16, 129)),
            "hidden_size_2": int(rng.integers(16, 129)),
            "learning_rate": float(10 ** rng.uniform(-4, -2)),
        }
        values = synthetic(params)
        values.update({metric: float(rng.uniform(0, 1)) for metric in extra})
        trials.append(SyntheticTrial(params, values))
    search = search_with_trials(manifest, str(tmp_path), trials)
    failed = add_trial(
        search.experiment,
        SyntheticTrial(
            {"hidden_size_1": 128, "hidden_size_2": 128, "learning_rate": 1e-3},
            status=TrialStatus.FAILED,
            reason=FAILURE,
        ),
    )
    search.state.reasons[failed] = FAILURE  # where the search keeps why a trial failed
    return search


def trace(fig: Any, name: str) -> Any:
    return next(t for t in fig.data if t.name == name)


def check_page(search: Search, page: str) -> None:
    assert '<script src="http' not in page and 'src="//' not in page
    assert "Plotly.newPlot" in page and len(page) > 1_000_000  # plotly.js itself is inlined
    assert page.count("plotlyjs-gz") == 2  # once, packed (and its one reader)
    assert search.name in page
    rows = re.findall(r'<tr class="(\w+)" data-trial="(\d+)">', page)
    assert [int(i) for _, i in rows] == sorted(search.experiment.trials)
    failed = [i for c, i in rows if c == "failed"]
    assert failed == [str(len(search.experiment.trials) - 1)]
    assert "CUDA out of memory &lt;oom&gt;" in page


def test_tradeoff_figure_has_every_completed_trial_front_and_threshold(tmp_path: Any) -> None:
    search = make_search(tmp_path, completed=12)
    fig = report.tradeoff_figure(search)
    points = trace(fig, "trials")
    completed = [o.trial for o in search.observations()]
    assert len(completed) == 12 and sorted(points.customdata) == completed
    obs = {o.trial: o.metrics for o in search.observations()}
    assert [(x, y) for x, y in zip(points.x, points.y)] == [
        (obs[i]["num_params"], obs[i]["val_acc"]) for i in points.customdata
    ]
    assert points.marker.showscale and list(points.marker.color) == list(points.customdata)
    assert "hidden_size_1" in points.text[0]

    front = trace(fig, "Pareto front")
    expected = {p.trial for p in search.status().pareto_front}
    assert sorted(front.customdata) == sorted(expected) and 1 < len(expected) < 12
    assert list(front.x) == sorted(front.x) and front.line.shape == "hv"

    ref = trace(fig, "objective thresholds")
    assert (ref.x[0], ref.y[0]) == (20000, 0.5)


def test_early_report_shows_note_instead_of_cross_validation(tmp_path: Any) -> None:
    search = make_search(tmp_path, completed=3)
    assert isinstance(report.cross_validation(search), str)
    out = tmp_path / "report.html"
    report.write_report(search, str(out))
    page = out.read_text(encoding="utf-8")
    check_page(search, page)
    assert 'id="cv-note"' in page and "Sobol" in page


def test_no_completed_trials_still_renders(tmp_path: Any) -> None:
    search = make_search(tmp_path, completed=0)
    page = report.render_html(search)
    assert "No completed trials yet" in page and 'id="cv-note"' in page


@pytest.mark.slow
def test_report_with_model_shows_cross_validation_per_objective(tmp_path: Any) -> None:
    search = make_search(tmp_path, completed=12)
    grs = search.strategy.gen(experiment=search.experiment, n=1, num_trials=1)
    assert grs[0][0]._generation_node_name == "MBM"
    cv = report.cross_validation(search)
    assert not isinstance(cv, str), cv
    assert [t.split(" (")[0] for t, _, _ in cv] == [
        "Cross Validation for val_acc",
        "Cross Validation for num_params",
    ]
    arms = {search.experiment.trials[o.trial].arm.name for o in search.observations()}
    assert all(set(fig.data[0].text) == arms for _, _, fig in cv)  # leave-one-out: every trial
    out = tmp_path / "report.html"
    report.write_report(search, str(out))
    page = out.read_text(encoding="utf-8")
    check_page(search, page)
    assert 'id="cv-note"' not in page and "Cross Validation for val_acc" in page


def test_three_objectives_add_a_scatter_matrix(tmp_path: Any) -> None:
    manifest = yaml.safe_load(yaml.safe_dump(MANIFEST))
    manifest["spec"]["objectives"].append({"metric": "latency", "goal": "minimize"})
    search = make_search(tmp_path, completed=5, manifest=manifest)  # no GP fit
    splom = report.splom_figure(search)
    assert [d.label for d in splom.data[0].dimensions] == ["val_acc", "num_params", "latency"]
    assert sorted(splom.data[0].customdata) == [o.trial for o in search.observations()]
    assert trace(report.tradeoff_figure(search), "Pareto front").mode == "markers"
    assert "reference point" in report.render_html(search)  # latency has no threshold


def test_page_states_its_size_and_carries_plotlyjs_once_packed(tmp_path: Any) -> None:
    import base64
    import gzip

    from plotly.offline import get_plotlyjs

    search = make_search(tmp_path, completed=12)
    page = report.render_html(search)
    size = len(page.encode("utf-8"))
    stated = re.search(
        r"This page is ([\d.]+) MB: plotly.js takes ([\d.]+) MB \(([\d.]+) MB "
        r"unpacked.*the figures and tables ([\d.]+) MB",
        page,
    )
    assert stated, page[-600:]
    total, packed, unpacked, rest = (float(g) * 1e6 for g in stated.groups())
    assert abs(total - size) <= 5_000 and abs(packed + rest - total) <= 10_000
    blob = re.search(
        r'<script id="plotlyjs-gz" type="application/octet-stream">([^<]+)</script>', page
    ).group(1)
    assert gzip.decompress(base64.b64decode(blob)).decode("utf-8") == get_plotlyjs()
    assert abs(unpacked - len(get_plotlyjs())) <= 5_000
    assert size < 0.5 * len(get_plotlyjs())  # smaller than plotly.js alone, unpacked


def test_the_trial_table_says_how_long_each_trial_waited_and_ran(tmp_path: Any) -> None:
    """A cluster search: trial 0 waited 90 s for its pod and trained 10 min; trial 2 still waits,
    with the scheduler's reason; trial 1 ended before start times were kept (shown blank)."""
    import datetime

    search = make_search(tmp_path, completed=2)
    search.ledger.starts_at_once = False  # a cluster runner: launched is not started
    launched = datetime.datetime(2026, 1, 5, 12, 0, 0)
    done = search.experiment.trials[0]
    done._time_run_started = launched
    done._time_completed = launched + datetime.timedelta(seconds=690)
    search.state.started[0] = launched.timestamp() + 90
    claim = 'Unschedulable: persistentvolumeclaim "nasop-logs" not found'
    waiting = add_trial(
        search.experiment,
        SyntheticTrial(
            {"hidden_size_1": 16, "hidden_size_2": 16, "learning_rate": 1e-3},
            status=TrialStatus.RUNNING,
        ),
    )
    search.experiment.trials[waiting]._time_run_started = launched
    search.state.waits[waiting] = claim
    search.clock = lambda: launched.timestamp() + 300
    table = report.trial_table(search)
    rows = {
        int(i): re.findall(r"<td>(.*?)</td>", row)
        for i, row in re.findall(r'data-trial="(\d+)">(.*?)</tr>', table)
    }
    assert "<th>waited</th><th>ran</th>" in table
    assert rows[0][1:4] == ["completed", "1m30s", "10m"]
    assert rows[1][1:4] == ["completed", "", ""]
    assert rows[waiting][1:4] == ["pending", "5m", ""]
    assert rows[waiting][-1] == "waiting: " + claim.replace('"', "&quot;")
    assert search.status().trials.pending == 1
