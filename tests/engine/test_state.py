"""The search state round-trips, and a state saved before the format had a version still loads."""

from __future__ import annotations

import pytest

from nasop import errors, spec
from nasop.engine.state import VERSION, SearchState

# as the first format wrote it: no "version", string trial keys (JSON object keys)
UNVERSIONED = {
    "fingerprint": "abc",
    "startTime": "2026-11-01T10:00:00Z",
    "startEpoch": 1793527200.0,
    "reasons": {"3": "trial exited 0 but val_acc is NaN at step 2", "5": "interrupted"},
    "infra": [5],
    "requeue": [5],
    "phase": "Running",
    "warm": {"0": "source#4"},
    "reference": {"val_acc": 0.5, "num_params": 9000.0},
    "referenceTime": "2026-11-01T10:05:00Z",
    "generator": "MBM",
    "conditionTimes": {"Ready": ["False", "2026-11-01T10:00:00Z"]},
}


def test_an_unversioned_state_loads_with_typed_fields() -> None:
    state = SearchState.from_dict(UNVERSIONED)
    assert state.reasons == {3: "trial exited 0 but val_acc is NaN at step 2", 5: "interrupted"}
    assert state.infra == [5] and state.requeue == [5] and state.warm == {0: "source#4"}
    assert state.phase is spec.Phase.RUNNING and state.start_epoch == 1793527200.0
    assert state.reference == {"val_acc": 0.5, "num_params": 9000.0}
    assert state.converged is None and state.exhausted is False and state.completion_time is None


def test_round_trip_keeps_every_field_and_the_saved_keys() -> None:
    state = SearchState.from_dict(UNVERSIONED)
    state.converged, state.exhausted, state.phase = (
        "hypervolume stalled",
        True,
        spec.Phase.SUCCEEDED,
    )
    data = state.to_dict()
    assert data["version"] == VERSION
    assert {k: v for k, v in data.items() if k in UNVERSIONED} == {
        **UNVERSIONED,
        "phase": "Succeeded",
    }  # the keys other tools may read stay as they were
    assert SearchState.from_dict(data) == state


def test_an_empty_dict_is_a_fresh_state() -> None:
    state = SearchState.from_dict({})
    assert state == SearchState() and state.start_epoch is None and state.reasons == {}


def test_a_newer_format_is_refused_naming_the_fix() -> None:
    with pytest.raises(errors.NasopError, match="format 99") as info:
        SearchState.from_dict({**UNVERSIONED, "version": 99})
    assert "upgrade nasop" in (info.value.hint or "")
