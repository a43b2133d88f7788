"""Packed trials: several Ax trials launched as one TorchX app, each still read as a trial.

With `spec.trial.pack`, proposed trials that agree on `groupBy` are grouped (up to `maxTrials`)
and launched as one app whose process gets `NASOP_PACK` (the packed-trial contract, DESIGN.md).
Every member stays an ordinary Ax trial with its own log dir, so metrics, early stopping and
the report read it as they read a lone trial; its run metadata adds the pack's folder and its
siblings' log dirs. How a member ended is its own record (`nasop.local.member_files`); while
it has none, the pack's app says whether it is still running. A member whose pack ended
without recording its end was cut short by the process: an infrastructure failure, retried.

Exactly-once: before the app is submitted, each member's log dir gets a `.nasop/pack` file
naming the pack's folder, so a trial saved as a candidate before a crash finds, on resume,
whether its pack had started (the pack's wrapper markers) and re-attaches to it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ax.core.base_trial import TrialStatus
from torchx import specs

from nasop import spec
from nasop.local import member_files
from nasop.local.trialwrap import write_marker
from nasop.trials import appdef, local_markers, stops

PACK_DIR = "pack_dir"  # run metadata: the pack's own folder (its wrapper markers, its logs)
PACK_SIBLINGS = "pack_members"  # run metadata: JSON list of every member's log dir
_MEMBER_OF = "pack"  # <member log dir>/.nasop/pack: {"pack_dir": ...}
TRAINER_ERROR = "nasop-trainer: error:"  # the trainer's one-line usage or data error


def group(parameters: Mapping[int, Mapping[str, Any]], pack: spec.Pack) -> list[list[int]]:
    """Trial indices in packs: same `groupBy` values, at most `maxTrials` each, in order."""
    by_key: dict[str, list[int]] = {}
    for index, params in parameters.items():
        key = json.dumps([params.get(name) for name in pack.group_by], sort_keys=True)
        by_key.setdefault(key, []).append(index)
    return [
        indices[i : i + pack.max_trials]
        for indices in by_key.values()
        for i in range(0, len(indices), pack.max_trials)
    ]


def pack_dir(log_root: str, experiment: str, first_index: int) -> str:
    """The pack's folder, beside its members' (named after its first member)."""
    return os.path.join(log_root, experiment, f"pack-{first_index:04d}")


def app_name(experiment: str, first_index: int) -> str:
    base = re.sub(r"[^a-z0-9-]", "-", experiment.lower()).strip("-")[:40] or "nasop"
    return f"{base}-p{first_index}"


def members_json(members: Sequence[tuple[int, Mapping[str, Any], str]]) -> str:
    """`NASOP_PACK`: `[{"trial": i, "params": {...}, "logDir": dir}, ...]`."""
    return json.dumps(
        [{"trial": i, "params": dict(p), "logDir": d} for i, p, d in members], sort_keys=True
    )


def pack_to_appdef(
    template: spec.TrialTemplate,
    *,
    experiment: str,
    members: Sequence[tuple[int, Mapping[str, Any], str]],
    folder: str,
    scheduler: str,
    local_env: dict[str, str] | None = None,
    stops_configmap: str | None = None,
) -> specs.AppDef:
    """The AppDef of one pack: the spec's command and args (no per-parameter flags), the
    members in `NASOP_PACK`, labelled with every member's trial index; in a cluster, its pods
    mount `stops_configmap` (see `trials.stops`)."""
    local = scheduler in appdef.LOCAL_SCHEDULERS
    first = members[0][0]
    env = {
        **template.env,
        "NASOP_EXPERIMENT": experiment,
        "NASOP_PACK": members_json(members),
        "NASOP_LOG_DIR": folder,
    }
    role = appdef.trainer_role(
        template,
        appdef.trial_argv(template, {}, local),
        env,
        scheduler=scheduler,
        log_dir=folder,
        local_env=local_env,
    )
    labels = {spec.EXPERIMENT_LABEL: experiment, spec.TRIAL_LABEL: str(first)}
    labels.update({f"{spec.GROUP}/member-{i}": "true" for i, _, _ in members})
    if stops_configmap and not local:
        labels[stops.APP_METADATA_KEY] = stops_configmap
    return specs.AppDef(name=app_name(experiment, first), roles=[role], metadata=labels)


def mark_members(members: Sequence[tuple[int, Mapping[str, Any], str]], folder: str) -> None:
    """Before submitting: each member's log dir names its pack (for adoption after a crash)."""
    log_dirs = [d for _, _, d in members]
    for log_dir in log_dirs:
        os.makedirs(local_markers.marker_dir(log_dir), exist_ok=True)
        write_marker(
            os.path.join(local_markers.marker_dir(log_dir), _MEMBER_OF),
            member_metadata(folder, log_dirs),
        )


def member_metadata(folder: str, log_dirs: Sequence[str]) -> dict[str, str]:
    """What a member's run metadata adds to a lone trial's (strings only)."""
    return {PACK_DIR: folder, PACK_SIBLINGS: json.dumps(list(log_dirs))}


def marked_pack(log_dir: str) -> dict[str, str] | None:
    """The `member_metadata` a member's log dir was marked with before its pack was submitted."""
    try:
        with open(
            os.path.join(local_markers.marker_dir(log_dir), _MEMBER_OF), encoding="utf-8"
        ) as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get(PACK_DIR) else None


def member_status(
    end: Mapping[str, str] | None, pack: tuple[TrialStatus, str, bool]
) -> tuple[TrialStatus, str, bool]:
    """A member's (status, reason, infrastructure) from its end record and its pack's state.

    Args:
        end: how the member said it ended (``{"state", "reason"}``: from its output, or its
            end file locally), None while it has not.
        pack: the pack app's (status, reason, infrastructure) as a lone trial's would be.
    """
    if end is not None:
        if end["state"] == member_files.COMPLETED:
            return TrialStatus.COMPLETED, "", False
        if end["state"] == member_files.STOPPED:
            return TrialStatus.EARLY_STOPPED, end["reason"], False
        return TrialStatus.FAILED, end["reason"] or "failed in its pack", False
    status, reason, infrastructure = pack
    if status is TrialStatus.RUNNING:
        return status, "", False
    if status is TrialStatus.ABANDONED:
        return status, reason or "cancelled", True
    if status is TrialStatus.FAILED and not infrastructure and reason.startswith(TRAINER_ERROR):
        return TrialStatus.FAILED, reason, False  # the whole pack could not start: bad args/data
    return (
        TrialStatus.FAILED,
        f"its pack ended before it did ({reason or 'the pack exited 0'})",
        True,
    )


def all_done(log_dirs: Sequence[str]) -> bool:
    """Every member has ended or been asked to stop (their local files say): the pack has
    nothing left to train."""
    return all(
        member_files.read_end(d) is not None or member_files.stop_reason(d) is not None
        for d in log_dirs
    )


__all__ = [
    "PACK_DIR",
    "PACK_SIBLINGS",
    "all_done",
    "app_name",
    "group",
    "mark_members",
    "marked_pack",
    "member_metadata",
    "member_status",
    "members_json",
    "pack_dir",
    "pack_to_appdef",
]
