"""Harvesting a cluster trial's pods (trials/pod_output.py, trials/harvest.py) against a fake
API: what counts as read to the end, what is lost and named, when a pod is let go of.

The real API server runs these paths in tests/operator/test_harvest.py; here each case is
set up exactly (a log that cannot be served for two minutes, a pod gone after its termination
message was read, a log larger than one read).
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

from nasop import results
from nasop.results import Collector
from nasop.trials import harvest, pod_output

JOB_UID = "job-uid-1"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _pod(name: str, uid: str, *, exit_code: int | None, message: str = "", **meta: Any) -> Any:
    state = SimpleNamespace(
        running=SimpleNamespace() if exit_code is None else None,
        terminated=None
        if exit_code is None
        else SimpleNamespace(exit_code=exit_code, message=message),
    )
    return SimpleNamespace(
        metadata=SimpleNamespace(
            name=name,
            uid=uid,
            namespace="ns",
            owner_references=[SimpleNamespace(controller=True, uid=JOB_UID)],
            finalizers=meta.get("finalizers"),
            labels=meta.get("labels"),
        ),
        spec=SimpleNamespace(containers=[SimpleNamespace(name="trainer")]),
        status=SimpleNamespace(container_statuses=[SimpleNamespace(name="trainer", state=state)]),
    )


def _as_dict(pod: Any) -> dict[str, Any]:
    """A pod as the API server sends it (a plain dict: PodOutput reads those)."""
    meta, state = pod.metadata, pod.status.container_statuses[0].state
    term = state.terminated
    return {
        "metadata": {
            "name": meta.name,
            "uid": meta.uid,
            "namespace": meta.namespace,
            "ownerReferences": [
                {"controller": r.controller, "uid": r.uid} for r in meta.owner_references
            ],
        },
        "spec": {"containers": [{"name": "trainer"}]},
        "status": {
            "containerStatuses": [
                {
                    "name": "trainer",
                    "state": {"running": {"startedAt": "t"}}
                    if term is None
                    else {"terminated": {"exitCode": term.exit_code, "message": term.message}},
                }
            ]
        },
    }


class FakeLogs:
    """PodLogs' calls: the pods of a job (listed; as watched: `watched`, None when there is no
    watch), and a pod's log from a time on."""

    def __init__(self) -> None:
        self.pods: list[Any] = []
        self.watched: list[Any] | None = None
        self.lines: dict[str, list[str]] = {}  # pod name -> lines, one second apart
        self.failing: set[str] = set()
        self.reads = 0
        self.lists = 0

    def list_pods(self, namespace: str, label: str, value: str) -> list[dict[str, Any]]:
        self.lists += 1
        return [_as_dict(p) for p in self.pods]

    def cached_pods(self, namespace: str, label: str, value: str) -> list[dict[str, Any]] | None:
        return None if self.watched is None else [_as_dict(p) for p in self.watched]

    def log(self, namespace: str, pod: str, container: str, since: str | None) -> bytes:
        self.reads += 1
        if pod in self.failing:
            raise RuntimeError("the kubelet cannot serve it")
        out = b""
        for i, line in enumerate(self.lines.get(pod, [])):
            when = NOW + dt.timedelta(seconds=i)
            if since is None or pod_output.since_param(when) >= since:
                stamp = when.strftime("%Y-%m-%dT%H:%M:%S.000000000Z")
                out += f"{stamp} {line}\n".encode()
        return out[: pod_output.MAX_READ_BYTES]


def _reader(logs: FakeLogs, job: Any = None, uid: str | None = JOB_UID, clock: Any = None) -> Any:
    job = job if job is not None else {"metadata": {"uid": JOB_UID, "ownerReferences": []}}
    return pod_output.PodOutput(
        logs,  # type: ignore[arg-type]  # the two calls it makes
        "ns",
        "exp-t0",
        lambda: job or None,
        "batch.kubernetes.io/job-name",
        None,
        Collector(["val_acc"]),
        job_uid=uid,
        clock=clock or (lambda: 0.0),
    )


def _points(n: int) -> list[str]:
    return [results.format_point(i, i, {"val_acc": i / 10}) for i in range(n)]


FINAL = results.encode_final({"val_acc": (2, 0.2)})


def test_a_terminated_pod_read_to_its_end_is_harvested_with_its_final_values():
    logs = FakeLogs()
    logs.pods = [_pod("p", "u1", exit_code=0, message=FINAL)]
    logs.lines["p"] = _points(3)
    reader = _reader(logs)
    got = reader.harvest()
    assert got.done and not got.lost and got.final and got.exit_codes == {"p": 0}
    assert reader.collector.curve("val_acc", None) == [(0, 0.0), (1, 0.1), (2, 0.2)]
    reads = logs.reads
    reader.read()  # read to its end: never read again
    assert logs.reads == reads


def test_a_running_pod_is_not_harvested_and_a_log_read_after_termination_is():
    logs = FakeLogs()
    logs.pods = [_pod("p", "u1", exit_code=None)]
    logs.lines["p"] = _points(2)
    reader = _reader(logs)
    assert not reader.harvest().done  # the job says ended, the pod does not yet: wait
    logs.pods = [_pod("p", "u1", exit_code=0, message=FINAL)]
    logs.lines["p"] = _points(3)
    got = reader.harvest()
    assert got.done and got.final and len(reader.collector.curve("val_acc", None)) == 3


def test_a_log_that_cannot_be_served_is_given_up_after_two_minutes_naming_the_pod():
    now = [0.0]
    logs = FakeLogs()
    logs.pods = [_pod("p", "u1", exit_code=0, message=FINAL)]
    logs.failing.add("p")
    reader = _reader(logs, clock=lambda: now[0])
    assert not reader.harvest().done
    now[0] = pod_output.HARVEST_SECONDS + 1
    got = reader.harvest()
    assert got.done and got.final
    why = "pod p could not be read to its end: the kubelet cannot serve it within 120 s"
    assert got.lost == why


def test_a_pod_gone_after_its_termination_message_was_read_keeps_its_final_values():
    logs = FakeLogs()
    logs.pods = [_pod("p", "u1", exit_code=0, message=FINAL)]
    logs.failing.add("p")  # its log unreadable: not harvested yet, but the message is read
    reader = _reader(logs)
    assert not reader.harvest().done
    logs.pods = []  # deleted (its finalizer removed by hand)
    got = reader.harvest()
    assert got.done and got.final and got.exit_codes == {"p": 0}
    assert got.lost == "pod p was deleted before its output was read"
    assert reader.collector.finals[None] == {"val_acc": (2, 0.2)}


def test_pods_never_seen_and_a_job_gone_without_a_recorded_uid_are_named():
    logs = FakeLogs()
    got = _reader(logs).harvest()
    assert got.done and not got.final
    assert got.lost == "the pods of job exp-t0 were deleted before their output was read"
    gone = _reader(logs, job={}, uid=None).harvest()
    assert gone.lost == "job exp-t0 was deleted before its output was read"
    alien = {"metadata": {"uid": "other", "ownerReferences": [{"uid": "someone-else"}]}}
    reader = pod_output.PodOutput(
        logs,  # type: ignore[arg-type]
        "ns",
        "exp-t0",
        lambda: alien,
        "batch.kubernetes.io/job-name",
        "exp-uid",
        Collector(["val_acc"]),
    )
    assert reader.harvest().lost == "job exp-t0 is not owned by this experiment"


def test_a_deleted_job_is_read_through_the_uid_recorded_at_launch():
    logs = FakeLogs()
    logs.pods = [_pod("p", "u1", exit_code=0, message=FINAL)]
    logs.lines["p"] = _points(3)
    got = _reader(logs, job={}).harvest()  # the job is gone; its pod is held by the finalizer
    assert got.done and not got.lost and got.exit_codes == {"p": 0}


def test_a_log_larger_than_one_read_is_read_to_its_end_within_one_harvest(monkeypatch):
    monkeypatch.setattr(pod_output, "MAX_READ_BYTES", 100_000)  # limitBytes, smaller
    logs = FakeLogs()
    logs.pods = [_pod("p", "u1", exit_code=0, message=FINAL)]
    filler = "x" * 10_000
    # 3 reads' worth, each line in its own second, the points at the end
    logs.lines["p"] = [filler] * (3 * pod_output.MAX_READ_BYTES // 10_000) + _points(3)
    reader = _reader(logs)
    got = reader.harvest()
    assert got.done and not got.lost
    assert len(reader.collector.curve("val_acc", None)) == 3
    assert logs.reads >= 3


def _held(name: str, uid: str, trial: int, owner: str = "exp-uid") -> Any:
    return _pod(
        name,
        uid,
        exit_code=0,
        finalizers=["batch.kubernetes.io/job-tracking", harvest.FINALIZER],
        labels={harvest.UID_LABEL: owner, "nasop.dev/trial": str(trial)},
    )


def test_release_removes_only_nasops_finalizer_of_ended_trials_of_this_experiment():
    patches: list[tuple[str, Any]] = []
    pods = [_held("a", "ua", 0), _held("b", "ub", 1), _held("c", "uc", 0, owner="old-uid")]
    core = SimpleNamespace(
        list_namespaced_pod=lambda ns, label_selector: SimpleNamespace(items=pods),
        patch_namespaced_pod=lambda name, ns, body: patches.append((name, body)),
    )
    keeper = harvest.Harvester.__new__(harvest.Harvester)
    keeper.logs = SimpleNamespace(core=core)  # type: ignore[assignment]
    keeper.owner_uid, keeper.pod_label, keeper.namespace = "exp-uid", "l", "ns"
    keeper.finalizer, keeper._queued, keeper._swept = True, set(), False
    keeper.release(lambda i: i == 0)  # trial 1 still running; c is another experiment's
    assert patches == [
        (
            "a",
            [
                {"op": "test", "path": "/metadata/uid", "value": "ua"},
                {"op": "test", "path": "/metadata/finalizers/1", "value": harvest.FINALIZER},
                {"op": "remove", "path": "/metadata/finalizers/1"},
            ],
        )
    ]
    assert harvest.trials_of({"nasop.dev/trial": "4", "nasop.dev/member-5": "true"}) == {4, 5}


def test_lines_rotated_away_between_reads_or_before_the_first_are_counted_as_gaps():
    """The kubelet serves only the current file of a rotated log (cri-client's ReadLogs opens
    one path). Lines rotated away before a read are gone: each loss is a counted gap, the final
    values still come whole from the termination message."""
    logs = FakeLogs()
    logs.pods = [_pod("p", "u1", exit_code=None)]
    logs.lines["p"] = _points(3)
    reader = _reader(logs)
    reader.read()
    assert not reader.collector.gaps
    # rotated: seq 3-5 went to a rotated file before the next read; the current file starts at 6
    logs.lines["p"] = [""] * 6 + _points(8)[6:]
    logs.pods = [_pod("p", "u1", exit_code=0, message=results.encode_final({"val_acc": (7, 0.7)}))]
    got = reader.harvest()
    assert got.done and got.final and not got.lost
    assert reader.collector.gaps == [(None, 3, 5)]
    assert reader.collector.finals[None] == {"val_acc": (7, 0.7)}
    # a reader made after the rotation (an operator restart) never saw seq 0-5 either
    late = _reader(logs)
    late.harvest()
    assert late.collector.gaps == [(None, 0, 5)]
    assert late.collector.problems() == "6 lines missing (sequence gaps)"


def test_lines_rotated_away_after_the_last_read_are_counted_from_the_termination_message():
    """The trial's last lines went to a rotated file after the last read, and nothing after them
    reached the current file: no later line shows the gap, the termination message's count does."""
    logs = FakeLogs()
    logs.pods = [_pod("p", "u1", exit_code=None)]
    logs.lines["p"] = _points(3)
    reader = _reader(logs)
    reader.read()
    logs.lines["p"] = [""] * 9  # seq 3-5 rotated away; the current file holds other output only
    message = results.encode_final({"val_acc": (5, 0.5)}, lines=6)
    logs.pods = [_pod("p", "u1", exit_code=0, message=message)]
    got = reader.harvest()
    assert got.done and got.final and not got.lost
    assert reader.collector.problems() == "3 lines missing (sequence gaps)"
    assert reader.collector.curve("val_acc") == [(0, 0.0), (1, 0.1), (2, 0.2), (5, 0.5)]


def test_pods_are_read_from_the_watch_and_listed_only_when_it_cannot_tell():
    """The operator's watch serves a running trial's pods; the job's end lists them once from
    the server; a pod the watch lost sight of is listed again before it counts as gone."""
    logs = FakeLogs()
    running = _pod("p", "u1", exit_code=None)
    logs.pods, logs.watched = [running], []
    logs.lines["p"] = _points(2)
    reader = _reader(logs)
    reader.read()  # the watch shows no pod yet: nothing to read, nothing listed
    assert logs.lists == 0 and not reader.collector.curve("val_acc", None)
    logs.watched = [running]
    reader.read()
    reader.read()
    assert logs.lists == 0 and len(reader.collector.curve("val_acc", None)) == 2
    ended = _pod("p", "u1", exit_code=0, message=FINAL)
    logs.pods, logs.lines["p"] = [ended], _points(3)
    got = reader.harvest()  # the job ended: its pods as the server has them, though the
    assert logs.lists == 1  # watch still shows the pod running
    assert got.done and got.final and not got.lost
    logs.watched = []  # the watch lost the pod: listed, not taken as deleted
    late = _reader(logs)
    late.read(fresh=True)
    late.read()
    assert logs.lists == 3 and late.present == {"u1"}
