"""`nasop run` end to end: real Ax, real TorchX local_cwd processes, real TensorBoard files.

One search runs the real Lightning trainer on scikit-learn's digits; the kill/resume tests use the
instant fake trainer (tests/fake_trainer.py) with a sleep so that trials are in flight when the
run is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from nasop import spec
from nasop.engine.search import Search
from nasop.local.session import LocalPaths, local_runner, local_store
from nasop.trials import local_markers
from stubs import manifest, write_manifest

pytestmark = pytest.mark.slow

NASOP = [sys.executable, "-m", "nasop.cli"]


def _run(args, cwd, timeout=600, check=True):
    p = subprocess.run(NASOP + args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"nasop {args} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def _load(tmp_path, path):
    m = spec.load_manifest(path)
    paths = LocalPaths(str(tmp_path / "state"))
    return m, Search.open(m.spec, m.name, local_runner(m, paths), local_store(paths, None))


def _status(tmp_path, path):
    p = _run(["status", path, "--state-dir", str(tmp_path / "state"), "-o", "json"], tmp_path)
    return json.loads(p.stdout)


def test_real_trainer_search_on_digits(tmp_path):
    data = manifest(
        "digits-e2e",
        budget={"maxTrials": 6, "parallelism": 2, "maxFailedTrials": 1},
        optimizer={"initialTrials": 4, "seed": 1},
        trial={
            "command": ["python", "-m", "nasop_trainer"],
            "args": ["--dataset", "digits", "--subset", "800"],
        },
    )
    path = write_manifest(str(tmp_path / "m.yaml"), data)
    # the trainers are forked from a server that imported Lightning once (as the README's demo)
    p = _run(
        [
            "run",
            path,
            "--state-dir",
            str(tmp_path / "state"),
            "--quiet",
            "--preload",
            "lightning.pytorch",
        ],
        tmp_path,
    )
    assert "Pareto front" in p.stdout

    st = _status(tmp_path, path)
    t = st["trials"]
    assert st["phase"] == "Succeeded"
    assert t["total"] == 6 and t["running"] == 0
    assert t["completed"] + t["failed"] + t["earlyStopped"] == t["total"]
    assert t["completed"] >= 5
    assert st["hypervolume"] > 0
    assert st["objectiveThresholds"] == {"val_acc": 0.5, "num_params": 20000.0}
    assert st["paretoSize"] == len(st["paretoFront"]) > 0
    assert st["generator"] == "MBM"  # BoTorch (qLogNEHVI) proposed the last trials

    # the front is truly non-dominated among all completed trials, with exact model sizes
    _, search = _load(tmp_path, path)
    obs = search.observations()
    assert len(obs) == t["completed"]
    for o in obs:
        h1, h2 = o.parameters["hidden_size_1"], o.parameters["hidden_size_2"]
        assert o.metrics["num_params"] == 64 * h1 + h1 + h1 * h2 + h2 + h2 * 10 + 10
        assert 0 < o.metrics["val_acc"] <= 1
    for pt in st["paretoFront"]:
        a = (pt["metrics"]["val_acc"], -pt["metrics"]["num_params"])
        for o in obs:
            b = (o.metrics["val_acc"], -o.metrics["num_params"])
            assert not (b[0] >= a[0] and b[1] >= a[1] and b != a), (pt, o)
    search.close()

    # a second run of a finished search changes nothing
    p = _run(["run", path, "--state-dir", str(tmp_path / "state"), "--quiet"], tmp_path)
    assert _status(tmp_path, path)["trials"]["total"] == 6


def _slow_manifest(tmp_path, name, max_trials=6):
    data = manifest(
        name,
        budget={"maxTrials": max_trials, "parallelism": 2, "maxFailedTrials": 0},
        optimizer={"method": "sobol", "seed": 3},
    )
    data["spec"]["trial"]["args"] = ["--sleep=0.8"]
    return write_manifest(str(tmp_path / f"{name}.yaml"), data)


def _state_trials(tmp_path, name):
    """Trial -> status, read from the file store's JSON (state/layout.py: the core's tail and
    the chunks of ended trials) while nasop writes it."""
    folder = tmp_path / "state" / "state"
    try:
        docs = [json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))]
        docs += [json.loads(p.read_text()) for p in sorted(folder.glob(f"{name}.chunks/*.json"))]
    except (OSError, ValueError):
        return {}
    trials = [r["trial"] for d in docs for r in d.get("tail", d.get("records", []))]
    return {
        int(t["index"]): t["status"]["name"] if isinstance(t["status"], dict) else t["status"]
        for t in trials
    }


def _start(tmp_path, path, *extra):
    return subprocess.Popen(
        [*NASOP, "run", path, "--state-dir", str(tmp_path / "state"), "--quiet", *extra],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_completed(tmp_path, name, n, proc, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        trials = _state_trials(tmp_path, name)
        done = sum(1 for s in trials.values() if "COMPLETED" in str(s))
        running = sum(1 for s in trials.values() if "RUNNING" in str(s))
        if done >= n and running >= 1:
            return
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    raise AssertionError("search did not progress")


def _arms_run_to_completion(search):
    from ax.core.base_trial import TrialStatus

    done = search.trials_in(TrialStatus.COMPLETED)
    return [t.arm.signature for t in done]


@pytest.mark.parametrize(
    "preload",
    [(), ("--preload", "torch.utils.tensorboard")],
    ids=["fresh-processes", "fork-server"],
)
def test_kill_minus_9_then_resume_loses_and_repeats_nothing(tmp_path, preload):
    """With --preload the trials in flight are children of the fork server, which exits with
    the killed run: they must go on and be re-attached all the same."""
    path = _slow_manifest(tmp_path, "killed")
    proc = _start(tmp_path, path, *preload)
    _wait_for_completed(tmp_path, "killed", 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _state_trials(tmp_path, "killed")
    in_flight = [i for i, s in before.items() if "RUNNING" in str(s)]
    assert in_flight, before

    _run(["run", path, "--state-dir", str(tmp_path / "state"), "--quiet", *preload], tmp_path)
    _, search = _load(tmp_path, path)
    arms = _arms_run_to_completion(search)
    assert len(arms) == 6 and len(set(arms)) == 6  # every trial ran exactly once
    from ax.core.base_trial import TrialStatus

    # the trials in flight at the kill were re-attached (orphans finished), not re-run
    for i in in_flight:
        assert search.experiment.trials[i].status is TrialStatus.COMPLETED
    assert len(search.experiment.trials) == 6
    search.close()
    assert _torch_at_start(tmp_path) == [bool(preload)] * 6  # forked iff --preload


def test_ctrl_c_cancels_trials_and_resume_reruns_them_once(tmp_path):
    path = _slow_manifest(tmp_path, "interrupted")
    proc = _start(tmp_path, path)
    _wait_for_completed(tmp_path, "interrupted", 1, proc)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "state saved" in out
    before = _state_trials(tmp_path, "interrupted")
    cancelled = [i for i, s in before.items() if "ABANDONED" in str(s)]
    assert cancelled, before

    # the cancelled processes are gone
    for i in cancelled:
        marker = tmp_path / "state" / "logs" / "interrupted" / f"trial-{i:04d}" / ".nasop" / "exit"
        deadline = time.time() + 10
        while not marker.exists() and time.time() < deadline:
            time.sleep(0.1)
        assert marker.exists()

    _run(["run", path, "--state-dir", str(tmp_path / "state"), "--quiet"], tmp_path)
    _, search = _load(tmp_path, path)
    arms = _arms_run_to_completion(search)
    assert len(arms) == 6 and len(set(arms)) == 6
    cancelled_arms = {search.experiment.trials[i].arm.signature for i in cancelled}
    assert cancelled_arms <= set(arms)  # nothing lost: the interrupted arms ran again, once
    st = search.status()
    assert st.phase is spec.Phase.SUCCEEDED
    search.close()


def _torch_at_start(tmp_path):
    """Per fake-trainer run: whether torch was already imported when it started (forked)."""
    return [
        line.endswith("True")
        for f in (tmp_path / "state" / "torchx").rglob("stderr.log")
        for line in f.read_text().splitlines()
        if "torch imported at start" in line
    ]


def test_preload_forks_every_python_trial_from_one_server(tmp_path):
    data = manifest(
        "preloaded",
        budget={"maxTrials": 3, "parallelism": 2, "maxFailedTrials": 0},
        optimizer={"method": "sobol", "seed": 2},
    )
    path = write_manifest(str(tmp_path / "p.yaml"), data)
    _run(
        [
            "run",
            path,
            "--state-dir",
            str(tmp_path / "state"),
            "--quiet",
            "--preload",
            "torch.utils.tensorboard",
        ],
        tmp_path,
    )
    assert _status(tmp_path, path)["trials"]["completed"] == 3
    assert _torch_at_start(tmp_path) == [True] * 3
    log = (tmp_path / "state" / "logs" / "preloaded" / "forkserver.log").read_text()
    server_pid = int(log.split("pid ")[1].split()[0])
    socket_path = log.split(" on ")[1].split(",")[0]
    assert not local_markers._alive(server_pid)  # nasop run stopped it at the end
    assert not os.path.exists(socket_path)


def test_failing_trials_fail_the_search_past_max_failed(tmp_path):
    data = manifest(
        "failing",
        budget={"maxTrials": 4, "parallelism": 2, "maxFailedTrials": 1},
        optimizer={"method": "sobol", "seed": 0},
    )
    data["spec"]["trial"]["args"] = ["--fail=always"]
    path = write_manifest(str(tmp_path / "f.yaml"), data)
    p = _run(
        ["run", path, "--state-dir", str(tmp_path / "state"), "--quiet"], tmp_path, check=False
    )
    assert p.returncode == 1
    st = _status(tmp_path, path)
    assert st["phase"] == "Failed"
    assert "maxFailedTrials" in st["message"]
    _, search = _load(tmp_path, path)
    assert "asked to fail" in " ".join(search.state.reasons.values())
    search.close()


def test_validate_cli(tmp_path):
    good = write_manifest(str(tmp_path / "g.yaml"), manifest("ok"))
    bad_data = manifest("bad")
    bad_data["spec"]["searchSpace"][0]["bounds"] = [9, 1]
    bad = write_manifest(str(tmp_path / "b.yaml"), bad_data)
    assert _run(["validate", good], tmp_path).returncode == 0
    p = _run(["validate", bad], tmp_path, check=False)
    assert p.returncode == 1 and "spec.searchSpace[0]" in p.stderr and "reversed" in p.stderr
