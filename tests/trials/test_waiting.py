"""Why a trial waits, read from the objects the API server returns (pods, Kueue Workloads,
Volcano PodGroups): the dicts below are shaped as kube-scheduler, the kubelet, Kueue and Volcano
write them."""

from __future__ import annotations

from typing import Any

from nasop.trials import waiting

MISSING_CLAIM = (
    '0/1 nodes are available: persistentvolumeclaim "nasop-logs" not found. preemption: '
    "0/1 nodes are available: 1 Preemption is not helpful for scheduling."
)


def pod(conditions: list[dict[str, Any]] | None = None, **waiting_: Any) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Pending", "conditions": conditions or []}
    if waiting_:
        status["containerStatuses"] = [
            {"name": "trainer-0", "ready": False, "state": {"waiting": waiting_}}
        ]
    return {"metadata": {"name": "p"}, "status": status}


def test_an_unschedulable_pod_says_the_schedulers_message():
    p = pod([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
              "message": MISSING_CLAIM}])  # fmt: skip
    assert waiting.pod_reason(p) == f"Unschedulable: {MISSING_CLAIM}"
    assert waiting.kind(waiting.pod_reason(p)) == "Unschedulable"


def test_a_podgroup_that_cannot_be_placed_is_the_pods_own_kind():
    """Volcano says a pod cannot be placed on the pod, later on its PodGroup: one kind, one
    Event (found on the real node: two TrialWaiting Events for one missing claim)."""
    pg = {
        "metadata": {"name": "t0-pg"},
        "spec": {"queue": "default"},
        "status": {
            "phase": "Inqueue",
            "conditions": [{"type": "Unschedulable", "status": "True", "message": MISSING_CLAIM}],
        },
    }
    on_pod = waiting.pod_reason(
        pod([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
              "message": MISSING_CLAIM}])
    )  # fmt: skip
    on_group = waiting.podgroup_reason(pg)
    assert on_group.startswith("PodGroupUnschedulable: Volcano PodGroup t0-pg")
    assert waiting.kind(on_pod) == waiting.kind(on_group) == "Unschedulable"


def test_image_pull_errors_name_the_image_and_are_one_kind():
    err = pod(reason="ErrImagePull", message='failed to pull image "nasop-trainer:typo": not found')
    backoff = pod(reason="ImagePullBackOff", message='Back-off pulling image "nasop-trainer:typo"')
    assert waiting.pod_reason(err).startswith("ErrImagePull: failed to pull image")
    assert "nasop-trainer:typo" in waiting.pod_reason(backoff)
    assert waiting.kind(waiting.pod_reason(err)) == waiting.kind(waiting.pod_reason(backoff))


def test_a_config_error_beats_a_container_that_is_merely_creating():
    creating = pod(reason="ContainerCreating")
    config = pod(reason="CreateContainerConfigError", message='secret "s3" not found')
    assert waiting.pod_reason(creating) == "ContainerCreating"
    assert waiting.pods_reason([creating, config]) == (
        'CreateContainerConfigError: secret "s3" not found'
    )
    assert waiting.pods_reason([creating]) == "ContainerCreating"
    assert waiting.pods_reason([]) == ""
    scheduled = pod([{"type": "PodScheduled", "status": "True"}])
    assert waiting.pod_reason(scheduled) == ""


def test_a_kueue_workload_without_quota_says_kueues_message():
    wl = {
        "metadata": {"name": "job-trial-0-abcde"},
        "status": {
            "conditions": [
                {
                    "type": "QuotaReserved",
                    "status": "False",
                    "reason": "Pending",
                    "message": "couldn't assign flavors to pod set main: insufficient unused "
                    "quota for cpu in flavor default-flavor, 1 more needed",
                }
            ]
        },
    }
    said = waiting.workload_reason(wl)
    assert said.startswith("WorkloadNotAdmitted: Kueue workload job-trial-0-abcde: couldn't")
    assert "insufficient unused quota for cpu" in said
    fresh = {"metadata": {"name": "w"}, "status": {}}
    assert "waiting for admission" in waiting.workload_reason(fresh)
    admitted = {"status": {"conditions": [{"type": "Admitted", "status": "True"}]}}
    assert waiting.workload_reason(admitted) == ""


def test_a_volcano_podgroup_says_why_it_is_not_running():
    pg = {
        "metadata": {"name": "trial-0-uid"},
        "spec": {"queue": "team-a"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "Unschedulable",
                    "status": "True",
                    "reason": "NotEnoughResources",
                    "message": "1/1 tasks in gang unschedulable: pod group is not ready, "
                    "1 Pending, 1 minAvailable",
                }
            ],
        },
    }
    assert waiting.podgroup_reason(pg).startswith("PodGroupUnschedulable: Volcano PodGroup")
    pg["status"]["conditions"] = []
    said = waiting.podgroup_reason(pg)
    assert waiting.kind(said) == "PodGroupNotAdmitted" and "'team-a'" in said
    pg["status"]["phase"] = "Running"
    assert waiting.podgroup_reason(pg) == ""


def test_a_reason_is_one_line_of_bounded_length():
    p = pod(reason="ErrImagePull", message="line one\n  line two " + "x" * 1000)
    said = waiting.pod_reason(p)
    assert "\n" not in said and "line one line two" in said
    assert len(said) <= waiting.MAX_LEN


def test_the_runner_says_a_pending_cluster_trial_waits_and_a_local_one_runs() -> None:
    from ax.core.base_trial import TrialStatus
    from torchx.specs import AppState, AppStatus

    from nasop import spec
    from nasop.trials.runner import TorchXTrialRunner

    template = spec.TrialTemplate().dump()
    cluster = TorchXTrialRunner("kubernetes_job", template, "/logs", "exp")
    said = f"Unschedulable: {MISSING_CLAIM}"
    obs = cluster._classify(None, "h", AppStatus(state=AppState.PENDING, msg=said))
    assert (obs.status, obs.pending, obs.reason) == (TrialStatus.RUNNING, True, said)
    obs = cluster._classify(None, "h", AppStatus(state=AppState.RUNNING))
    assert (obs.status, obs.pending) == (TrialStatus.RUNNING, False)
    local = TorchXTrialRunner("local_cwd", template, "/logs", "exp")
    obs = local._classify(None, "h", AppStatus(state=AppState.PENDING))
    assert (obs.status, obs.pending) == (TrialStatus.RUNNING, False)


class _Pods:
    def __init__(self, items: list[Any]) -> None:
        self.items = items


class _FakeApis:
    """Stands in for kubernetes.client's CoreV1Api and CustomObjectsApi (whatever client they
    are given), recording each read; serves pods by selector and objects by name."""

    def __init__(self, pods: dict[str, list[dict[str, Any]]], objects: dict[str, Any]) -> None:
        self.pods, self.objects, self.reads = pods, objects, []

    def core(self, _client: Any) -> Any:
        fake = self

        class Core:
            def list_namespaced_pod(self, namespace: str, label_selector: str, limit: int) -> Any:
                fake.reads.append(("pods", namespace, label_selector))
                return _Pods(fake.pods.get(label_selector, []))

        return Core()

    def custom(self, _client: Any) -> Any:
        from kubernetes.client.rest import ApiException

        fake = self

        class Custom:
            def list_namespaced_custom_object(self, **kw: Any) -> Any:
                fake.reads.append((kw["plural"], kw["namespace"], kw["label_selector"]))
                return {"items": fake.objects.get(kw["label_selector"], [])}

            def get_namespaced_custom_object(self, **kw: Any) -> Any:
                fake.reads.append((kw["plural"], kw["namespace"], kw["name"]))
                if kw["name"] not in fake.objects:
                    raise ApiException(status=404)
                return fake.objects[kw["name"]]

        return Custom()


class _Client:
    def sanitize_for_serialization(self, obj: Any) -> Any:
        return obj  # the fake serves dicts already


def _fake(monkeypatch: Any, pods: Any = None, objects: Any = None) -> _FakeApis:
    from kubernetes import client as k8s

    fake = _FakeApis(pods or {}, objects or {})
    monkeypatch.setattr(k8s, "CoreV1Api", fake.core)
    monkeypatch.setattr(k8s, "CustomObjectsApi", fake.custom)
    return fake


def test_a_pending_job_is_read_by_its_own_label_and_a_suspended_one_by_its_workload(
    monkeypatch: Any,
) -> None:
    scheduled = pod([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                      "message": MISSING_CLAIM}])  # fmt: skip
    selector = "batch.kubernetes.io/job-name=exp-t0"
    wl = {"metadata": {"name": "job-exp-t0-x"}, "status": {}}
    fake = _fake(monkeypatch, {selector: [scheduled]}, {"kueue.x-k8s.io/job-uid=u1": [wl]})
    job = {"metadata": {"name": "exp-t0", "namespace": "ml", "uid": "u1"}, "spec": {}}
    assert waiting.job_reason(_Client(), job, selector).startswith("Unschedulable: 0/1 nodes")
    suspended = {**job, "spec": {"suspend": True}}
    assert "job-exp-t0-x is waiting for admission" in waiting.job_reason(
        _Client(), suspended, selector
    )
    assert fake.reads == [
        ("pods", "ml", selector),
        ("workloads", "ml", "kueue.x-k8s.io/job-uid=u1"),
    ]


def test_a_pending_volcano_job_is_read_by_its_pods_then_its_podgroup(monkeypatch: Any) -> None:
    group = {"metadata": {"name": "exp-t0-u1"}, "status": {"phase": "Pending"}}
    fake = _fake(monkeypatch, {}, {"exp-t0-u1": group})
    job = {"metadata": {"name": "exp-t0", "namespace": "ml", "uid": "u1"}, "spec": {"queue": "q"}}
    said = waiting.volcano_reason(_Client(), job)
    assert said.startswith("PodGroupNotAdmitted: Volcano PodGroup exp-t0-u1 not admitted by queue")
    assert fake.reads == [
        ("pods", "ml", "volcano.sh/job-name=exp-t0"),
        ("podgroups", "ml", "exp-t0-u1"),
    ]
    fake.objects = {"exp-t0": group}  # an older Volcano names the PodGroup after the job
    assert waiting.kind(waiting.volcano_reason(_Client(), job)) == "PodGroupNotAdmitted"


def test_a_failed_read_leaves_the_reason_unknown(monkeypatch: Any) -> None:
    from kubernetes import client as k8s

    def refuse(_client: Any) -> Any:
        raise RuntimeError("403 forbidden")

    monkeypatch.setattr(k8s, "CoreV1Api", refuse)
    job = {"metadata": {"name": "j", "namespace": "ml", "uid": "u"}, "spec": {}}
    assert waiting.job_reason(_Client(), job, "x=y") == ""
    assert waiting.volcano_reason(_Client(), job) == ""


#: a 2-replica trial on a node with room for one of its pods, as Volcano v1.14 writes it
#: (scheduler/api/job_info.go TaskSchedulingReason and FitError, plugins/gang/gang.go): the pod
#: that fits is `Schedulable`, the other `Unschedulable`, the PodGroup counts both
GANG_POD = "exp-t0-trainer-{}-0"
FITS = (
    "Pod ml/exp-t0-trainer-0-0 can possibly be assigned to localhost, once minAvailable is "
    "satisfied"
)
NO_ROOM = "0/1 nodes are unavailable: 1 Insufficient cpu."
GANG = (
    "1/2 tasks in gang unschedulable: pod group is not ready, 2 Pending, 2 minAvailable; "
    f"Pending: 1 Schedulable, 1 Unschedulable. Origin reason is {GANG_POD.format(1)}: {NO_ROOM}"
)


def _gang(pg_conditions: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    fits = pod([{"type": "PodScheduled", "status": "False", "reason": "Schedulable",
                 "message": FITS}])  # fmt: skip
    no_room = pod([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": NO_ROOM}])  # fmt: skip
    group = {
        "metadata": {"name": "exp-t0-u1"},
        "spec": {"minMember": 2, "queue": "default"},
        "status": {"phase": "Inqueue", "conditions": pg_conditions},
    }
    return [fits, no_room], group


def test_a_gang_member_that_fits_is_not_why_the_gang_waits() -> None:
    (fits, no_room), _ = _gang([])
    assert waiting.kind(waiting.pod_reason(fits)) == waiting.GANG_MEMBER_FITS
    assert waiting.pods_reason([fits, no_room]) == f"Unschedulable: {NO_ROOM}"
    assert waiting.pods_reason([fits]).startswith("Schedulable: Pod ml/exp-t0-trainer-0-0")


def test_a_gang_that_cannot_be_placed_is_said_by_its_podgroup(monkeypatch: Any) -> None:
    """Issue 26 (seen on the real node): room for one pod of two. The pod listed first is the
    one that fits; the trial's reason must still say why it waits, and say it of the gang."""
    unschedulable = {"type": "Unschedulable", "status": "True", "reason": "NotEnoughResources",
                     "message": GANG, "lastTransitionTime": "2026-12-07T08:40:01Z"}  # fmt: skip
    pods, group = _gang([unschedulable])
    selector = "volcano.sh/job-name=exp-t0"
    _fake(monkeypatch, {selector: pods}, {"exp-t0-u1": group})
    job = {
        "metadata": {"name": "exp-t0", "namespace": "ml", "uid": "u1"},
        "spec": {"minAvailable": 2, "queue": "default"},
    }
    said = waiting.volcano_reason(_Client(), job)
    assert said == f"PodGroupUnschedulable: Volcano PodGroup exp-t0-u1: {GANG}", said
    assert waiting.kind(said) == "Unschedulable"  # the pods' own kind: one Event, not two
    # a single-pod job keeps its pod's words
    single = {**job, "spec": {"minAvailable": 1}}
    assert waiting.volcano_reason(_Client(), single) == f"Unschedulable: {NO_ROOM}"
    # the PodGroup not yet marked: the pod that does not fit, whichever is listed first
    group["status"]["conditions"] = []
    assert waiting.volcano_reason(_Client(), job) == f"Unschedulable: {NO_ROOM}"
    # once the gang is placed (Scheduled after Unschedulable) the old condition is history
    scheduled = {"type": "Scheduled", "status": "True", "reason": "tasks in gang are ready to be "
                 "scheduled", "lastTransitionTime": "2026-12-07T08:40:12Z"}  # fmt: skip
    group["status"]["conditions"] = [unschedulable, scheduled]
    creating = pod(reason="ContainerCreating")
    _fake(monkeypatch, {selector: [creating, creating]}, {"exp-t0-u1": group})
    assert waiting.volcano_reason(_Client(), job) == "ContainerCreating"
