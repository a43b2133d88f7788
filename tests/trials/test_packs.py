"""Packs on the engine side: grouping, the pack's AppDef, and how a member's state is read."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ax.core.base_trial import TrialStatus

from nasop import errors, spec
from nasop.local import member_files
from nasop.trials import packs
from stubs import manifest

RUNNING = (TrialStatus.RUNNING, "", False)


def _pack(**kw: Any) -> spec.Pack:
    return spec.Pack.model_validate({"maxTrials": 3, **kw})


def test_group_by_the_named_parameters_and_cap_the_size() -> None:
    params = {i: {"batch_size": b, "lr": i} for i, b in enumerate([32, 64, 32, 32, 32, 64])}
    assert packs.group(params, _pack(groupBy=["batch_size"])) == [[0, 2, 3], [4], [1, 5]]
    assert packs.group(params, _pack()) == [[0, 1, 2], [3, 4, 5]]


def test_group_by_an_unknown_parameter_is_a_spec_error_naming_the_field() -> None:
    data = manifest("p")
    data["spec"]["trial"]["pack"] = {"maxTrials": 4, "groupBy": ["batchsize"]}
    with pytest.raises(errors.SpecError, match=r"trial.pack.groupBy: unknown parameter"):
        spec.parse_spec(data["spec"])
    data["spec"]["trial"]["pack"] = {"maxTrials": 0}
    with pytest.raises(errors.SpecError, match=r"maxTrials"):
        spec.parse_spec(data["spec"])


def test_pack_appdef_passes_members_in_nasop_pack_and_labels_each(tmp_path: Any) -> None:
    template = spec.TrialTemplate.model_validate(
        {
            "command": ["python", "-m", "nasop_trainer"],
            "args": ["--dataset", "digits"],
            "env": {"A": "1"},
            "logs": {"claimName": "logs", "mountPath": "/logs"},
        }
    )
    members = [
        (3, {"batch_size": 32, "lr": 0.1}, "/logs/e/trial-0003"),
        (5, {"batch_size": 32, "lr": 0.2}, "/logs/e/trial-0005"),
    ]
    app = packs.pack_to_appdef(
        template,
        experiment="My_Exp",
        members=members,
        folder="/logs/e/pack-0003",
        scheduler="kubernetes",
    )
    role = app.roles[0]
    assert app.name == "my-exp-p3"
    assert [role.entrypoint, *role.args] == ["python", "-m", "nasop_trainer", "--dataset", "digits"]
    assert json.loads(role.env["NASOP_PACK"]) == [
        {"trial": 3, "params": {"batch_size": 32, "lr": 0.1}, "logDir": "/logs/e/trial-0003"},
        {"trial": 5, "params": {"batch_size": 32, "lr": 0.2}, "logDir": "/logs/e/trial-0005"},
    ]
    assert role.env["A"] == "1" and "NASOP_PARAMS" not in role.env
    assert app.metadata[spec.TRIAL_LABEL] == "3"
    assert (
        app.metadata[f"{spec.GROUP}/member-3"] == app.metadata[f"{spec.GROUP}/member-5"] == "true"
    )
    assert role.mounts[0].dst_path == "/logs"


def test_members_are_marked_with_their_pack_before_launch(tmp_path: Any) -> None:
    dirs = [str(tmp_path / "trial-0001"), str(tmp_path / "trial-0002")]
    packs.mark_members([(1, {}, dirs[0]), (2, {}, dirs[1])], str(tmp_path / "pack-0001"))
    assert packs.marked_pack(dirs[0]) == packs.member_metadata(str(tmp_path / "pack-0001"), dirs)
    assert packs.marked_pack(str(tmp_path / "elsewhere")) is None


@pytest.mark.parametrize(
    ("record", "want"),
    [
        ((member_files.COMPLETED, ""), (TrialStatus.COMPLETED, "", False)),
        (
            (member_files.FAILED, "invalid --dropout=2"),
            (TrialStatus.FAILED, "invalid --dropout=2", False),
        ),
        (
            (member_files.STOPPED, "below median"),
            (TrialStatus.EARLY_STOPPED, "below median", False),
        ),
    ],
)
def test_a_members_own_record_decides_whatever_the_pack_does(
    tmp_path: Any, record: tuple[str, str], want: tuple[TrialStatus, str, bool]
) -> None:
    member_files.write_end(str(tmp_path), *record)
    end = member_files.read_end(str(tmp_path))
    assert end == {"state": record[0], "reason": record[1]}
    for pack_state in (RUNNING, (TrialStatus.FAILED, "killed", True)):
        assert packs.member_status(end, pack_state) == want


def test_a_member_without_a_record_follows_its_pack() -> None:
    member = None
    assert packs.member_status(member, RUNNING) == RUNNING
    status, reason, infra = packs.member_status(member, (TrialStatus.COMPLETED, "", False))
    assert (status, infra) == (TrialStatus.FAILED, True) and "pack ended before it did" in reason
    status, _, infra = packs.member_status(member, (TrialStatus.FAILED, "exit -9", False))
    assert (status, infra) == (TrialStatus.FAILED, True)  # a dead pack: retried, not counted
    bad = "nasop-trainer: error: MNIST not found in data"
    assert packs.member_status(member, (TrialStatus.FAILED, bad, False)) == (
        TrialStatus.FAILED,
        bad,
        False,
    )  # the pack could not start at all: the user's to fix
    assert (
        packs.member_status(member, (TrialStatus.ABANDONED, "cancelled", True))[0]
        is TrialStatus.ABANDONED
    )


def test_a_pack_is_done_once_every_member_ended_or_was_asked_to_stop(tmp_path: Any) -> None:
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert not packs.all_done([a, b])
    member_files.write_end(a, member_files.COMPLETED)
    assert not packs.all_done([a, b])
    member_files.request_stop(b, "early stopping")
    assert packs.all_done([a, b]) and member_files.stop_reason(b) == "early stopping"


def test_a_cluster_member_is_adopted_with_its_packs_folder_and_siblings() -> None:
    from types import SimpleNamespace

    from nasop.trials.runner import TorchXTrialRunner

    template = spec.TrialTemplate.model_validate({"pack": {"maxTrials": 3}}).dump()
    runner = TorchXTrialRunner("kubernetes", template, "/logs", "exp")
    runner.bind(
        lambda: None,
        finder=lambda i: None,
        pack_finder=lambda i: (
            ("kubernetes://nasop/ns:exp-p4", [4, 5, 6]) if i in (4, 5, 6) else None
        ),
    )
    meta = runner.adopt(SimpleNamespace(index=5))
    assert meta == {
        "app_handle": "kubernetes://nasop/ns:exp-p4",
        "tb_log_dir": "/logs/exp/trial-0005",
        **packs.member_metadata(
            "/logs/exp/pack-0004", [f"/logs/exp/trial-000{i}" for i in (4, 5, 6)]
        ),
    }
    assert runner.adopt(SimpleNamespace(index=7)) is None


def test_a_stop_reaches_a_member_through_its_mounted_folder(tmp_path: Any, monkeypatch) -> None:
    """In a cluster the stop is the ConfigMap key `stop-<index>`, a file in $NASOP_STOP_DIR."""
    log_dir, mounted = str(tmp_path / "log"), tmp_path / "stops"
    mounted.mkdir()
    assert member_files.stop_reason(log_dir, 7) is None  # no folder named: nothing asked
    monkeypatch.setenv(member_files.STOP_DIR_ENV, str(mounted))
    assert member_files.stop_reason(log_dir, 7) is None
    (mounted / member_files.stop_key(7)).write_text("early stopping:\n below the median")
    assert member_files.stop_reason(log_dir, 7) == "early stopping: below the median"
    assert member_files.stop_reason(log_dir, 8) is None  # another member's request is not ours
    assert member_files.stop_reason(log_dir) is None  # a lone trial is never stopped this way


def test_pack_pods_mount_the_stops_configmap_read_only() -> None:
    from nasop import spec
    from nasop.trials import batchjob, stops

    template = spec.TrialTemplate.model_validate(
        {"image": "nasop-trainer:0.1.0", "pack": {"maxTrials": 2}}
    )
    members = [(3, {"hidden_size_1": 8}, "/tmp/l/trial-0003"), (4, {}, "/tmp/l/trial-0004")]
    app = packs.pack_to_appdef(
        template,
        experiment="exp",
        members=members,
        folder="/tmp/l/pack-0003",
        scheduler="kubernetes_job",
        stops_configmap=stops.configmap_name("exp"),
    )
    job = batchjob.app_to_job(app, queue=None)
    pod = job["spec"]["template"].spec
    [volume] = [v for v in pod.volumes if v.name == stops.VOLUME]
    assert (volume.config_map.name, volume.config_map.optional) == ("exp-nasop-stops", True)
    container = pod.containers[0]
    [mount] = [m for m in container.volume_mounts if m.name == stops.VOLUME]
    assert (mount.mount_path, mount.read_only) == (stops.MOUNT_PATH, True)
    env = {e.name: e.value for e in container.env}
    assert env[member_files.STOP_DIR_ENV] == stops.MOUNT_PATH
    assert stops.APP_METADATA_KEY not in job["metadata"]["labels"]  # not a label: may be long
    lone = packs.pack_to_appdef(
        template, experiment="exp", members=members, folder="/x", scheduler="local_cwd",
        stops_configmap="exp-nasop-stops",
    )  # fmt: skip
    assert stops.APP_METADATA_KEY not in lone.metadata  # locally the log dir is shared
