"""`nasop status NAMESPACE/NAME` and `nasop report NAMESPACE/NAME` on an experiment the real
operator ran: a cluster user gets the same status block as the object's and the same page as a
local user, learning curves included, read from the cluster with a kubeconfig (the tests' admin,
as a person would have) and nothing else.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml
from scenario import resource, run_to

import browser
from nasop import cli

pytestmark = [
    pytest.mark.operator,
    pytest.mark.cluster,
    pytest.mark.timeout(240),
    pytest.mark.usefixtures("record_api_calls"),
    pytest.mark.rbac_scopes("namespaced"),
]

#: status fields the controller adds to what the search computes
CONTROLLER_FIELDS = {"observedGeneration", "conditions"}


@browser.NEEDS_CHROMIUM
@pytest.mark.asyncio
async def test_status_and_report_of_a_cluster_experiment_match_the_object(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path, capsys
):
    obj = await run_to(
        cluster,
        run_operator,
        resource(
            tmp_path,
            "reported",
            budget={"maxTrials": 4, "parallelism": 2},
            optimizer={"method": "sobol", "seed": 0},
        ),
        {"Succeeded", "Failed"},
    )
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    admin = tmp_path / "admin.kubeconfig"  # a person's kubeconfig, not the operator's
    admin.write_text(yaml.safe_dump(cluster.plane.admin_kubeconfig()))
    capsys.readouterr()

    argv = ["status", "default/reported", "-o", "json", "--kubeconfig", str(admin)]
    assert await asyncio.to_thread(cli.main, argv) == 0
    printed = json.loads(capsys.readouterr().out)
    want = cluster.get_object("nasop.dev/v1alpha1/nasexperiments", "default", "reported")["status"]
    shared = set(printed) & set(want) - CONTROLLER_FIELDS
    assert {"phase", "trials", "paretoFront", "paretoSize", "hypervolume"} <= shared, shared
    assert {k: printed[k] for k in shared} == {k: want[k] for k in shared}
    assert printed["trials"]["completed"] == 4 and printed["paretoFront"]

    argv = ["status", "-n", "default", "reported", "--kubeconfig", str(admin)]  # kubectl's way
    assert await asyncio.to_thread(cli.main, argv) == 0
    table = capsys.readouterr().out
    assert "Succeeded: 4 trials (4 completed, 0 failed" in table and "Trials" in table, table

    page = tmp_path / "report.html"
    argv = ["report", "default/reported", "-o", str(page), "--kubeconfig", str(admin)]
    assert await asyncio.to_thread(cli.main, argv) == 0
    assert f"wrote {page}" in capsys.readouterr().out
    drawn = tmp_path / "probed.html"
    drawn.write_text(browser.probed(page.read_text(encoding="utf-8")), encoding="utf-8")
    probe = await asyncio.to_thread(browser.draw, drawn)
    assert probe["plots"] == "ready" and probe["errors"] == [], probe
    figures = {f["id"]: f for f in probe["figures"]}
    assert {"plot-tradeoff", "plot-hypervolume", "plot-curves-0"} <= set(figures), sorted(figures)
    curves = figures["plot-curves-0"]
    assert curves["svg"] >= 1 and curves["points"] >= 8, curves  # 4 trials x 2 epochs drawn
    assert len(curves["y"]) == 4  # a curve per trial
    # the fake trainer logs val_acc = final * (1 - 0.5 ** (epoch + 1)) at epochs 0 and 1: the
    # second point is 1.5x the first, and the last is the value the front holds for the trial
    drawn_curves = dict(zip(curves["names"], curves["y"]))
    assert all(y[1] == pytest.approx(1.5 * y[0]) for y in drawn_curves.values()), drawn_curves
    for point in want["paretoFront"]:
        last = drawn_curves[f"trial {point['trial']}"][-1]
        assert last == pytest.approx(point["metrics"]["val_acc"]), (point, drawn_curves)
