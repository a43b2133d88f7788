"""Conditions that GitOps tools read: stable types, statuses by phase, transition times that
move only when a status changes, observedGeneration on every write.

The sequences are written through the operator's real StatusWriter (its API client swapped for
a recorder) and, for a whole search, built by a real Search running the fake trainer.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from nasop import spec
from nasop.controller import status_writer
from nasop.engine import conditions
from nasop.engine.search import Search
from nasop.trials.runner import TorchXTrialRunner
from stubs import manifest

TYPES = ["Ready", "Reconciling", "Stalled", "SpecAccepted"]


class RecordingApi:
    """Stands in for CustomObjectsApi: keeps every status patch the writer sends."""

    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    def patch_namespaced_custom_object_status(self, *args: Any) -> None:
        self.patches.append(args[-1]["status"])


def _writer() -> tuple[status_writer.StatusWriter, RecordingApi]:
    writer = status_writer.StatusWriter(None, "default", "x", None)
    writer.api = api = RecordingApi()
    return writer, api


def _status(
    phase: spec.Phase,
    generation: int,
    running: int = 0,
    message: str = "",
    since: str = "2026-01-01T00:00:00Z",
) -> dict[str, Any]:
    st = spec.NASExperimentStatus(
        phase=phase,
        message=message or None,
        trials=spec.TrialCounts(running=running),
        conditions=conditions.from_phase(phase, message, running=running, since=since),
    ).dump()
    st["observedGeneration"] = generation
    return st


def _by_type(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def _summary(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {t: (c["status"], c["reason"]) for t, c in _by_type(status).items()}


@pytest.mark.parametrize(
    "phase, ready, reconciling, stalled",
    [
        (spec.Phase.RUNNING, "False", "True", "False"),
        (spec.Phase.SUCCEEDED, "True", "False", "False"),
        (spec.Phase.FAILED, "False", "False", "True"),
        (spec.Phase.INVALID, "False", "False", "True"),
        (spec.Phase.SUSPENDED, "False", "False", "False"),
    ],
)
def test_every_phase_has_the_same_four_types(phase, ready, reconciling, stalled):
    conds = {c.type: c for c in conditions.from_phase(phase, "why")}
    assert list(conds) == TYPES
    assert (conds["Ready"].status, conds["Reconciling"].status, conds["Stalled"].status) == (
        ready,
        reconciling,
        stalled,
    )
    assert conds["Ready"].reason == phase.value
    if stalled == "True":
        assert conds["Stalled"].message == "why"
    assert conds["SpecAccepted"].status == ("False" if phase is spec.Phase.INVALID else "True")


def test_settle_keeps_the_transition_time_while_the_status_stays():
    old = [{"type": "Ready", "status": "False", "lastTransitionTime": "T0"}]
    same = conditions.settle(
        old, [{"type": "Ready", "status": "False", "lastTransitionTime": "T1"}], 3, now="T2"
    )
    assert same == [
        {"type": "Ready", "status": "False", "lastTransitionTime": "T0", "observedGeneration": 3}
    ]
    flipped = conditions.settle(
        old, [{"type": "Ready", "status": "True", "lastTransitionTime": "T1"}], 3, now="T2"
    )
    assert flipped[0]["lastTransitionTime"] == "T2"
    first = conditions.settle(
        None, [{"type": "Ready", "status": "True", "lastTransitionTime": "T1"}], None, now="T2"
    )
    assert first == [{"type": "Ready", "status": "True", "lastTransitionTime": "T1"}]


@pytest.fixture
def clock(monkeypatch):
    """RFC 3339 times one second apart, so that every transition gets a new time."""
    ticks = iter(range(10**6))
    monkeypatch.setattr(spec, "now_rfc3339", lambda: f"2026-01-02T00:00:{next(ticks):02d}Z")


def test_a_search_that_suspends_resumes_and_succeeds(clock):
    writer, api = _writer()
    steps = [
        _status(spec.Phase.RUNNING, 1, running=2),
        _status(spec.Phase.RUNNING, 1, running=1, since="2026-01-01T00:01:00Z"),
        _status(spec.Phase.SUSPENDED, 2, running=2, message="spec.suspend is true"),
        _status(spec.Phase.SUSPENDED, 2, running=0, message="spec.suspend is true"),
        _status(spec.Phase.RUNNING, 3, running=2),
        _status(spec.Phase.SUCCEEDED, 3, message="all 4 trials done"),
    ]
    written = []
    for st in steps:
        writer.write(st)
        written.append(writer.last)
    assert [_summary(s)["Ready"] for s in written] == [
        ("False", "Running"),
        ("False", "Running"),
        ("False", "Suspended"),
        ("False", "Suspended"),
        ("False", "Running"),
        ("True", "Succeeded"),
    ]
    assert [_summary(s)["Reconciling"][0] for s in written] == [
        "True",
        "True",
        "True",
        "False",
        "True",
        "False",
    ]
    assert {_summary(s)["Stalled"][0] for s in written} == {"False"}
    ready_times = [_by_type(s)["Ready"]["lastTransitionTime"] for s in written]
    assert len(set(ready_times[:5])) == 1 and ready_times[5] != ready_times[4]
    rec_times = [_by_type(s)["Reconciling"]["lastTransitionTime"] for s in written]
    assert rec_times[0] == rec_times[1] == rec_times[2] != rec_times[3] != rec_times[4]
    assert len({_by_type(s)["Stalled"]["lastTransitionTime"] for s in written}) == 1
    for s, gen in zip(written, [1, 1, 2, 2, 3, 3]):
        assert s["observedGeneration"] == gen
        assert {c["observedGeneration"] for c in s["conditions"]} == {gen}
    assert [p["observedGeneration"] for p in api.patches if "observedGeneration" in p] == [1, 2, 3]


def test_an_invalid_manifest_then_fixed_then_failed(clock):
    writer, api = _writer()
    writer.write(status_writer.invalid("spec.searchSpace[0].bounds: reversed", 1))
    invalid = _summary(writer.last)
    assert invalid == {
        "Ready": ("False", "Invalid"),
        "Reconciling": ("False", "Invalid"),
        "Stalled": ("True", "Invalid"),
        "SpecAccepted": ("False", "InvalidSpec"),
    }
    assert "spec.searchSpace[0]" in _by_type(writer.last)["Stalled"]["message"]
    assert writer.last["observedGeneration"] == 1
    writer.write(_status(spec.Phase.RUNNING, 2, running=1))
    assert _summary(writer.last)["Stalled"] == ("False", "Running")
    assert _summary(writer.last)["SpecAccepted"] == ("True", "Accepted")
    writer.write(_status(spec.Phase.FAILED, 2, message="3 trials failed"))
    failed = _by_type(writer.last)
    stalled = failed["Stalled"]
    assert (stalled["status"], stalled["message"]) == ("True", "3 trials failed")
    assert failed["Ready"]["status"] == "False" and failed["Reconciling"]["status"] == "False"
    assert all(p.get("observedGeneration") in (None, 1, 2) for p in api.patches)
    assert api.patches[0]["observedGeneration"] == 1 and api.patches[1]["observedGeneration"] == 2
    too_large = status_writer.failed(writer.last, "state too large")
    assert _summary(too_large)["Stalled"] == ("True", "Failed")


def test_a_refused_spec_change_replaces_spec_accepted_in_place():
    st = _status(spec.Phase.RUNNING, 4)
    refused = spec.Condition(
        type="SpecAccepted", status="False", reason="ImmutableField", message="no"
    )
    out = status_writer.with_condition(st, refused)
    assert [c["type"] for c in out["conditions"]] == TYPES
    assert _summary(out)["SpecAccepted"] == ("False", "ImmutableField")


def test_a_whole_search_moves_from_running_to_ready(tmp_path, clock):
    """A real Search (fake trainer, Sobol): its statuses, written in turn, say Reconciling until
    the end, then Ready; never Stalled."""
    m = spec.parse_manifest(
        manifest(
            "conds",
            budget={"maxTrials": 3, "parallelism": 3},
            optimizer={"method": "sobol", "seed": 0},
        )
    )
    runner = TorchXTrialRunner(
        scheduler="local_cwd",
        template=m.spec.trial.dump(),
        log_root=str(tmp_path),
        experiment_name=m.name,
    )
    search = Search.open(m.spec, m.name, runner, store=None)
    writer, _ = _writer()
    seen: list[dict[str, tuple[str, str]]] = []
    written: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 120
        while not search.finished and time.monotonic() < deadline:
            search.tick()
            st = search.status().dump()
            st["observedGeneration"] = 1
            writer.write(st)
            written.append(writer.last)
            if not seen or seen[-1] != _summary(writer.last):
                seen.append(_summary(writer.last))
            time.sleep(0.05)
    finally:
        search.close()
    assert search.phase is spec.Phase.SUCCEEDED
    assert [(s["Ready"], s["Reconciling"][0], s["Stalled"][0]) for s in seen] == [
        (("False", "Running"), "True", "False"),
        (("True", "Succeeded"), "False", "False"),
    ]
    assert {c["observedGeneration"] for c in writer.last["conditions"]} == {1}
    # `nasop status` (no operator): the search keeps the times, moved only on a status change
    local = _by_type(search.status().dump())
    first = {t: c["lastTransitionTime"] for t, c in _by_type(written[0]).items()}
    assert local["Stalled"]["lastTransitionTime"] == first["Stalled"]
    assert local["SpecAccepted"]["lastTransitionTime"] == first["SpecAccepted"]
    assert local["Ready"]["lastTransitionTime"] != first["Ready"]
    assert local["Reconciling"]["lastTransitionTime"] == local["Ready"]["lastTransitionTime"]
