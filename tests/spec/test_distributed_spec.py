"""trial.replicas and trial.procsPerReplica: defaults, bounds and the combinations refused."""

from __future__ import annotations

import pytest

from nasop import errors, spec
from stubs import manifest


def _trial(**fields):
    m = manifest()
    m["spec"]["trial"] = {**m["spec"].get("trial", {}), **fields}
    return m


def test_defaults_are_one_pod_one_process():
    t = spec.parse_manifest(manifest()).spec.trial
    assert (t.replicas, t.procs_per_replica, t.world_size, t.distributed) == (1, 1, 1, False)


def test_world_size_is_replicas_times_processes():
    m = spec.parse_manifest(_trial(replicas=2, procsPerReplica=3))
    assert (m.spec.trial.world_size, m.spec.trial.distributed) == (6, True)
    assert m.spec.dump()["trial"]["procsPerReplica"] == 3


@pytest.mark.parametrize("field", ["replicas", "procsPerReplica"])
def test_zero_is_refused_naming_the_field(field):
    with pytest.raises(errors.SpecError) as ei:
        spec.parse_manifest(_trial(**{field: 0}))
    assert f"spec.trial.{field}" in str(ei.value)


def test_a_pack_cannot_be_distributed():
    with pytest.raises(errors.SpecError) as ei:
        spec.parse_manifest(_trial(procsPerReplica=2, pack={"maxTrials": 2}))
    text = str(ei.value)
    for fragment in ("trial.pack", "trial.procsPerReplica=2", "remove trial.pack"):
        assert fragment in text, text


def test_job_trials_may_have_several_pods():
    # an Indexed Job of two pods (Kueue admits it whole), and one pod with several processes
    t = spec.parse_manifest(_trial(scheduler="job", replicas=2, queue="trials")).spec.trial
    assert (t.scheduler, t.replicas, t.world_size) == ("job", 2, 2)
    t = spec.parse_manifest(_trial(scheduler="job", procsPerReplica=2)).spec.trial
    assert t.world_size == 2
