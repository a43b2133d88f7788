"""Flux's verdict on the statuses nasop writes: kstatus itself (github.com/fluxcd/cli-utils, the
library Flux's `wait` and `healthChecks` call), built from its Go module in
tests/packaging/kstatus/ and run on status samples from nasop's own status code.

Running and suspended searches are InProgress, a succeeded one Current, a failed or invalid one
Failed with the reason, and a status for an older generation InProgress.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
from typing import Any

import pytest
from chart_helpers import REPO_ROOT
from test_argocd_health import RUNNING, STALLED, WAITING, _written

from nasop import spec
from nasop.controller import status_writer

MODULE = REPO_ROOT / "tests" / "packaging" / "kstatus"
GO = shutil.which("go")
pytestmark = pytest.mark.skipif(
    GO is None, reason="Go is not installed: this test builds Flux's kstatus from its Go module"
)


@pytest.fixture(scope="module")
def kstatus() -> pathlib.Path:
    """The checker, built once per version of go.sum (cached outside the checkout)."""
    import hashlib

    key = hashlib.sha256((MODULE / "go.sum").read_bytes() + (MODULE / "main.go").read_bytes())
    cache = pathlib.Path(
        os.environ.get("NASOP_CLUSTER_CACHE", pathlib.Path.home() / ".cache" / "nasop" / "cluster")
    )
    binary = cache / f"kstatus-{key.hexdigest()[:12]}" / "kstatus"
    if not binary.exists():
        binary.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "GOWORK": "off", "GOFLAGS": "-mod=readonly", "CGO_ENABLED": "0"}
        subprocess.run(
            [GO, "build", "-trimpath", "-o", str(binary) + ".tmp", "."],
            cwd=MODULE,
            env=env,
            check=True,
            timeout=600,
        )
        os.replace(str(binary) + ".tmp", binary)
    return binary


def _verdicts(binary: pathlib.Path, objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    out = subprocess.run(
        [str(binary)],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [tuple(line.split("\t", 1)) for line in out.splitlines()]


def test_flux_kstatus_reads_the_conditions(kstatus):
    stale = _written(RUNNING, (spec.Phase.SUCCEEDED, 0, "all 4 trials done"))
    stale["metadata"]["generation"] = 2  # budget.maxTrials raised, not yet seen
    invalid = {
        "apiVersion": spec.API_VERSION,
        "kind": spec.KIND,
        "metadata": {"name": "bad", "generation": 1},
        "status": status_writer.invalid("spec.searchSpace[0].bounds: reversed", 1),
    }
    cases = [
        (_written(RUNNING), "InProgress", "2 trials running"),
        (_written(WAITING), "InProgress", "2 waiting: Unschedulable"),
        (_written(WAITING, STALLED), "Failed", 'persistentvolumeclaim "nasop-logs" not found'),
        (_written(WAITING, STALLED, RUNNING), "InProgress", "2 trials running"),
        (_written(RUNNING, (spec.Phase.SUCCEEDED, 0, "all 4 trials done")), "Current", ""),
        (_written(RUNNING, (spec.Phase.FAILED, 0, "3 trials failed")), "Failed", "3 trials failed"),
        (invalid, "Failed", "spec.searchSpace[0].bounds: reversed"),
        (
            _written(RUNNING, (spec.Phase.SUSPENDED, 1, "spec.suspend is true"), generation=2),
            "InProgress",
            "1 trial still running",
        ),
        (
            _written(RUNNING, (spec.Phase.SUSPENDED, 0, "spec.suspend is true"), generation=2),
            "InProgress",
            "spec.suspend is true",
        ),
        (stale, "InProgress", "generation is 2"),
    ]
    verdicts = _verdicts(kstatus, [obj for obj, _, _ in cases])
    assert [v[0] for v in verdicts] == [status for _, status, _ in cases]
    for (_, _, message), (_, said) in zip(cases, verdicts):
        assert message in said
