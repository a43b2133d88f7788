"""Flux's verdict on the statuses nasop writes: kstatus itself (github.com/fluxcd/cli-utils, the
library Flux's `wait` and `healthChecks` call), built from its Go module in
tests/packaging/kstatus/ and run on status samples from nasop's own status code.

Running and suspended searches are InProgress, a succeeded one Current, a failed or invalid one
Failed with the reason, and a status for an older generation InProgress.
"""

from __future__ import annotations

import pathlib

import kstatus_check
import pytest
from test_argocd_health import RUNNING, STALLED, WAITING, _written

from nasop import spec
from nasop.controller import status_writer

pytestmark = pytest.mark.skipif(
    kstatus_check.GO is None,
    reason="Go is not installed: this test builds Flux's kstatus from its Go module",
)


@pytest.fixture(scope="module")
def kstatus() -> pathlib.Path:
    """The checker, built once per version of go.sum (cached outside the checkout)."""
    return kstatus_check.build()


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
    verdicts = kstatus_check.verdicts([obj for obj, _, _ in cases], kstatus)
    assert [v[0] for v in verdicts] == [status for _, status, _ in cases]
    for (_, _, message), (_, said) in zip(cases, verdicts):
        assert message in said
