"""Packed trials under `nasop run`: real Ax, real TorchX local_cwd packs, the real trainer.

Each pack is one `python -m nasop_trainer` process with NASOP_PACK on scikit-learn's digits;
the members are ordinary trials to the engine. The kill tests make packs long (many epochs) so
that a pack is in flight when `nasop run`, or the pack itself, is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from ax.core.base_trial import TrialStatus

from nasop import spec
from nasop.engine.search import Search
from nasop.local import member_files
from nasop.local.session import LocalPaths, local_runner, local_store
from nasop.trials import packs
from stubs import manifest, write_manifest

pytestmark = pytest.mark.slow

NASOP = [sys.executable, "-m", "nasop.cli"]
SPACE = [
    {"name": "hidden_size_1", "type": "int", "bounds": [8, 64], "log": True},
    {"name": "hidden_size_2", "type": "int", "bounds": [8, 64], "log": True},
    {"name": "learning_rate", "type": "float", "bounds": [1e-3, 3e-2], "log": True},
    {"name": "dropout", "type": "float", "bounds": [0.0, 0.3]},
    {"name": "batch_size", "type": "choice", "values": [32, 64], "ordered": True},
]


def _manifest(
    tmp_path: Path, name: str, *, trials: int, epochs: list[int], pack: dict[str, Any]
) -> str:
    data = manifest(
        name,
        searchSpace=[*SPACE, {"name": "epochs", "type": "int", "bounds": epochs}],
        budget={"maxTrials": trials, "parallelism": 1, "maxFailedTrials": 0},
        optimizer={"method": "sobol", "seed": 2},
        trial={
            "command": ["python", "-m", "nasop_trainer"],
            "args": ["--dataset", "digits", "--latency-runs", "3"],
            "pack": pack,
        },
    )
    return write_manifest(str(tmp_path / f"{name}.yaml"), data)


def _run(path: str, tmp_path: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(
        [*NASOP, "run", path, "--state-dir", str(tmp_path / "state"), "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
    return p


def _start(path: str, tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*NASOP, "run", path, "--state-dir", str(tmp_path / "state"), "--quiet"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _search(tmp_path: Path, path: str) -> Search:
    m = spec.load_manifest(path)
    paths = LocalPaths(str(tmp_path / "state"))
    return Search.open(m.spec, m.name, local_runner(m, paths), local_store(paths, None))


def _logs(tmp_path: Path, name: str) -> Path:
    return tmp_path / "state" / "logs" / name


def _wait_for(condition: Any, proc: subprocess.Popen[str] | None, timeout: float = 240) -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = condition()
        if found:
            return found
        assert proc is None or proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def _started_pack(tmp_path: Path, name: str) -> Path | None:
    """A pack whose process runs and whose members have logged an epoch."""
    for folder in sorted(_logs(tmp_path, name).glob("pack-*")):
        pid = folder / ".nasop" / "pid"
        if pid.exists() and not (folder / ".nasop" / "exit").exists():
            members = [
                Path(d)
                for d in json.loads(
                    packs.marked_pack(str(_member_dirs(tmp_path, name, folder)[0]))[
                        packs.PACK_SIBLINGS
                    ]
                )
            ]
            if all(list(m.glob("events.out.tfevents.*")) for m in members):
                return folder
    return None


def _member_dirs(tmp_path: Path, name: str, folder: Path) -> list[Path]:
    return [
        d
        for d in sorted(_logs(tmp_path, name).glob("trial-*"))
        if (packs.marked_pack(str(d)) or {}).get(packs.PACK_DIR) == str(folder)
    ]


def test_a_packed_search_runs_every_trial_as_a_member_of_a_pack(tmp_path: Path) -> None:
    path = _manifest(
        tmp_path,
        "packed",
        trials=8,
        epochs=[1, 3],
        pack={"maxTrials": 4, "groupBy": ["batch_size"]},
    )
    _run(path, tmp_path)
    search = _search(tmp_path, path)
    status = search.status()
    assert status.phase is spec.Phase.SUCCEEDED
    assert status.trials.completed == 8 and status.trials.failed == 0
    folders = sorted(_logs(tmp_path, "packed").glob("pack-*"))
    assert 2 <= len(folders) < 8  # trials shared processes
    seen: list[int] = []
    for folder in folders:
        members = _member_dirs(tmp_path, "packed", folder)
        indices = [int(d.name.split("-")[1]) for d in members]
        params = [search.experiment.trials[i].arm.parameters for i in indices]
        assert 1 <= len(members) <= 4
        assert len({p["batch_size"] for p in params}) == 1  # groupBy
        assert all(member_files.read_end(str(d))["state"] == "completed" for d in members)
        seen += indices
    assert sorted(seen) == list(range(8))  # each trial in exactly one pack
    for o in search.observations():
        h1, h2 = o.parameters["hidden_size_1"], o.parameters["hidden_size_2"]
        assert o.metrics["num_params"] == 64 * h1 + h1 + h1 * h2 + h2 + h2 * 10 + 10
    search.close()


def test_kill_minus_9_of_nasop_run_mid_pack_then_resume_runs_every_trial_once(
    tmp_path: Path,
) -> None:
    path = _manifest(tmp_path, "killed", trials=6, epochs=[30, 40], pack={"maxTrials": 3})
    proc = _start(path, tmp_path)
    folder = _wait_for(lambda: _started_pack(tmp_path, "killed"), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    in_flight = [int(d.name.split("-")[1]) for d in _member_dirs(tmp_path, "killed", folder)]

    _run(path, tmp_path)
    search = _search(tmp_path, path)
    assert len(search.experiment.trials) == 6  # nothing relaunched
    arms = [t.arm.signature for t in search.trials_in(TrialStatus.COMPLETED)]
    assert len(arms) == 6 and len(set(arms)) == 6
    for index in in_flight:  # the orphaned pack was re-attached and its members completed
        assert search.experiment.trials[index].status is TrialStatus.COMPLETED
    assert search.state.infra == []
    search.close()


def test_a_crashed_packs_unfinished_members_are_retried_not_failed(tmp_path: Path) -> None:
    path = _manifest(tmp_path, "crashed", trials=3, epochs=[30, 40], pack={"maxTrials": 3})
    proc = _start(path, tmp_path)
    folder = _wait_for(lambda: _started_pack(tmp_path, "crashed"), proc)
    child = json.loads((folder / ".nasop" / "pid").read_text())["child"]
    os.kill(child, signal.SIGKILL)
    # members of another batch size train first, as their own group: they may have ended
    killed = [
        int(d.name.split("-")[1])
        for d in _member_dirs(tmp_path, "crashed", folder)
        if member_files.read_end(str(d)) is None
    ]
    assert killed
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out

    search = _search(tmp_path, path)
    status = search.status()
    # maxFailedTrials is 0: the search succeeded, so the killed members were not user failures
    assert status.phase is spec.Phase.SUCCEEDED and status.trials.completed == 3
    assert sorted(search.state.infra) == sorted(killed)  # not counted against maxFailed
    done = {t.arm.signature for t in search.trials_in(TrialStatus.COMPLETED)}
    assert {search.experiment.trials[i].arm.signature for i in killed} <= done  # re-run
    search.close()


def test_stopping_one_member_leaves_the_others_training(tmp_path: Path) -> None:
    path = _manifest(tmp_path, "stop-one", trials=3, epochs=[20, 21], pack={"maxTrials": 3})
    m = spec.load_manifest(path)
    runner = local_runner(m, LocalPaths(str(tmp_path / "state")))
    trials = [
        SimpleNamespace(
            index=i,
            arm=SimpleNamespace(
                parameters={
                    "hidden_size_1": 16,
                    "hidden_size_2": 8,
                    "learning_rate": 0.01,
                    "dropout": 0.0,
                    "batch_size": 32,
                    "epochs": 20,
                }
            ),
            run_metadata={},
            # the runner reads each member's end from the pack's output, as for Ax's trials
            experiment=SimpleNamespace(metrics=[o.metric for o in m.spec.objectives]),
        )
        for i in range(3)
    ]
    try:
        for trial, meta in runner.run_pack(trials).items():
            trials[trial].run_metadata = meta
        first = Path(trials[0].run_metadata["tb_log_dir"])
        _wait_for(
            lambda: (
                list(first.glob("events.out.tfevents.*"))
                and runner.observe(trials)[0].status is TrialStatus.RUNNING
            ),
            None,
        )
        runner.stop(trials[0], reason="stopped early: below the median")
        assert runner.observe(trials[1:])[1].status is TrialStatus.RUNNING  # pack not cancelled
        states = _wait_for(
            lambda: (
                lambda o: (
                    o if all(s.status is not TrialStatus.RUNNING for s in o.values()) else None
                )
            )(runner.observe(trials)),
            None,
        )
    finally:
        runner.close()
    assert states[0].status is TrialStatus.EARLY_STOPPED
    assert states[0].reason == "stopped early: below the median"
    assert states[1].status is states[2].status is TrialStatus.COMPLETED
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def epochs(trial: SimpleNamespace) -> int:
        acc = EventAccumulator(trial.run_metadata["tb_log_dir"])
        acc.Reload()
        return len(acc.Scalars("val_acc"))

    assert epochs(trials[0]) < 20 and epochs(trials[1]) == epochs(trials[2]) == 20
