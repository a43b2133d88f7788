"""The operator reports the edge results as `nasop run` does (one status builder): through the
real API server (so the CRD's schema must keep the fields), a search whose trials all failed is
Failed naming the most common reason (a NaN final value here), and a search without thresholds
shows its inferred reference point, fixed once the initial trials ended. Trials run
tests/edge_trainer.py, played by `volcano.VolcanoPlayer` as in test_operator.py.
"""

from __future__ import annotations

import os
import sys

import pytest
import volcano
from scenario import EXP, HANDLERS, resource, wait_phase

from stubs import HERE

pytestmark = [
    pytest.mark.operator,
    pytest.mark.cluster,
    pytest.mark.timeout(240),
    pytest.mark.usefixtures("record_api_calls"),
    pytest.mark.rbac_scopes("namespaced"),
]


def _edge(tmp_path, name: str, plan: str, **spec):
    res = resource(tmp_path, name, **{"optimizer": {"method": "sobol", "seed": 4}, **spec})
    res["spec"]["trial"]["command"] = [sys.executable, os.path.join(HERE, "edge_trainer.py")]
    res["spec"]["trial"]["args"] = [f"--plan={plan}"]
    return res


@pytest.mark.asyncio
async def test_failed_search_and_inferred_reference_point_in_the_resource_status(
    cluster, kubeconfig, run_operator, fast_ticks, tmp_path
):
    hopeless = _edge(
        tmp_path,
        "hopeless",
        "nan,fail,nan",
        budget={"maxTrials": 3, "parallelism": 3, "maxFailedTrials": 5},
    )
    open_ended = _edge(
        tmp_path,
        "open-ended",
        "ok",
        objectives=[
            {"metric": "val_acc", "goal": "maximize"},
            {"metric": "num_params", "goal": "minimize"},
        ],
        budget={"maxTrials": 3, "parallelism": 1},
        optimizer={"method": "sobol", "seed": 4, "initialTrials": 2},
    )
    with volcano.VolcanoPlayer(cluster, volcano.run_command()):
        await run_operator(modules=HANDLERS, watching=[EXP])
        cluster.create_object(EXP, hopeless)
        cluster.create_object(EXP, open_ended)
        failed = (await wait_phase(cluster, "hopeless", {"Succeeded", "Failed"}))["status"]
        done = (await wait_phase(cluster, "open-ended", {"Succeeded", "Failed"}))["status"]

    assert failed["phase"] == "Failed" and failed["trials"]["failed"] == 3
    assert failed["message"] == (
        "no trial completed (3 failed); most common reason (2 of 3): "
        "trial exited 0 but val_acc is NaN at step 2"
    )

    assert done["phase"] == "Succeeded" and done["trials"]["completed"] == 3
    assert done["inferredThresholds"] == ["val_acc", "num_params"]
    assert set(done["objectiveThresholds"]) == {"val_acc", "num_params"}
    assert done["hypervolume"] > 0
    cond = next(c for c in done["conditions"] if c["type"] == "ThresholdsInferred")
    assert cond["status"] == "True" and cond["reason"] == "Fixed"
