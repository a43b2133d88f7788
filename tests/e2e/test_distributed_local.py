"""A data-parallel search under `nasop run`: each trial is one torchrun with two ranks.

Real Ax, real TorchX local_cwd, real torchrun and the real Lightning trainer with DDP (gloo) on
scikit-learn's digits. The ranks prove they trained together: each logs a digest of its final
weights, and the digests of a trial's two ranks are equal (each rank stepped on its own half of
every epoch, so without averaged gradients they would differ). Only rank 0 reports: the trial's
stdout holds one rank's NASOP1 lines, once each.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stubs import manifest, write_manifest

pytestmark = pytest.mark.slow

NASOP = [sys.executable, "-m", "nasop.cli"]
DIGEST = re.compile(r"nasop-trainer: rank (\d+)/(\d+) weights sha256=([0-9a-f]{64})")


def test_two_trials_of_two_ranks_train_together_and_rank_zero_reports(tmp_path: Path) -> None:
    data = manifest(
        "ddp",
        searchSpace=[
            {"name": "hidden_size_1", "type": "int", "bounds": [8, 32]},
            {"name": "hidden_size_2", "type": "int", "bounds": [8, 32]},
            {"name": "learning_rate", "type": "float", "bounds": [1e-3, 3e-2], "log": True},
            {"name": "dropout", "type": "float", "bounds": [0.0, 0.3]},
            {"name": "batch_size", "type": "choice", "values": [32, 64], "ordered": True},
            {"name": "epochs", "type": "fixed", "value": 2},
        ],
        budget={"maxTrials": 2, "parallelism": 2, "maxFailedTrials": 0},
        optimizer={"method": "sobol", "seed": 3},
        trial={
            "command": ["python", "-m", "nasop_trainer"],
            "args": ["--dataset", "digits", "--latency-runs", "3"],
            "replicas": 1,
            "procsPerReplica": 2,
        },
    )
    path = write_manifest(str(tmp_path / "ddp.yaml"), data)
    state = tmp_path / "state"
    run = subprocess.run(
        [*NASOP, "run", path, "--state-dir", str(state), "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"  # 0: the search Succeeded

    for trial in ("trial-0000", "trial-0001"):
        markers = state / "logs" / "ddp" / trial / ".nasop"
        assert json.loads((markers / "exit").read_text()) == {"returncode": 0}
        stdout = (markers / "stdout").read_text()
        points = [
            json.loads(line[7:]) for line in stdout.splitlines() if line.startswith("NASOP1 ")
        ]
        # one reporter: seq 0, 1, 2, ... once each (a second rank would repeat them)
        assert [p["seq"] for p in points] == list(range(len(points))), stdout
        assert [p["v"] for p in points if "num_params" in p["v"]] != []
        assert sum("val_acc" in p["v"] for p in points) == 2  # two epochs, reported once
    stderr = "\n".join(p.read_text() for p in (state / "torchx").rglob("stderr*") if p.is_file())
    digests: dict[str, dict[int, str]] = {}
    for rank, world, digest in DIGEST.findall(stderr):
        assert world == "2"
        digests.setdefault(digest, {})[int(rank)] = digest
    # two trials, each one digest shared by its ranks 0 and 1
    assert len(digests) == 2, stderr[-2000:]
    assert all(sorted(ranks) == [0, 1] for ranks in digests.values()), digests
