"""Why a launched trial has not started: the scheduler's, kubelet's or queue's own words.

A trial job that waits says nothing useful about itself (a Volcano job is `Pending`, a Job is
suspended or has a pod that is not ready). The reason lives on the objects below it: a pod's
`PodScheduled` condition (`Unschedulable: 0/1 nodes are available: ...`), its containers'
`state.waiting` (`ErrImagePull`, `CreateContainerConfigError`, ...), a Volcano PodGroup's
conditions, a Kueue Workload's `QuotaReserved`/`Admitted` conditions. The pure functions here
turn those objects (plain dicts, as the API server sends them) into one line, `Kind: message`;
:func:`job_reason` and :func:`volcano_reason` read them, only for a job that is still pending,
and only the objects of that job (by label or by name).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from nasop.trials.custom_objects import get_or_none

log = logging.getLogger(__name__)

KUEUE_GROUP, KUEUE_VERSION = "kueue.x-k8s.io", "v1beta2"
KUEUE_JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
VOLCANO_JOB_LABEL = "volcano.sh/job-name"

#: Volcano's PodScheduled reason for a pod that fits a node but waits for the rest of its gang
#: (`Pod ns/p can possibly be assigned to n, once minAvailable is satisfied`): not the problem
GANG_MEMBER_FITS = "Schedulable"
#: reasons that are only a step on the way (said only when nothing else is): a container being
#: created, a gang member that would fit
BENIGN = {"ContainerCreating", "PodInitializing", GANG_MEMBER_FITS}
#: reasons that are one problem under two names: one Event, not one per flip between them (a
#: Volcano pod that cannot be placed says so on the pod, then, once Volcano's scheduler moves on,
#: on its PodGroup: seen on a real node with a missing claim)
SAME_AS = {
    "ImagePullBackOff": "ErrImagePull",
    "CrashLoopBackOff": "Error",
    "PodGroupUnschedulable": "Unschedulable",
}

MAX_LEN = 400


def _line(kind: str, message: str) -> str:
    message = " ".join((message or "").split())
    return (f"{kind}: {message}" if message else kind)[:MAX_LEN]


def kind(reason: str) -> str:
    """The kind of a reason line (`ErrImagePull` for `ImagePullBackOff: ...` too)."""
    head = reason.split(":", 1)[0].strip()
    return SAME_AS.get(head, head)


def pod_reason(pod: Mapping[str, Any]) -> str:
    """Why this pod does not run: scheduling first, then its containers; "" if nothing is said.

    A container that merely starts (`ContainerCreating`) is reported as such only when no
    container has a real problem.
    """
    status = pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return _line(cond.get("reason") or "Unschedulable", cond.get("message") or "")
    benign = ""
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in status.get(key) or []:
            waiting = (cs.get("state") or {}).get("waiting")
            if not waiting or not waiting.get("reason"):
                continue
            if waiting["reason"] in BENIGN:
                benign = benign or waiting["reason"]
                continue
            return _line(waiting["reason"], waiting.get("message") or "")
    if status.get("phase") == "Pending" and status.get("reason"):
        return _line(status["reason"], status.get("message") or "")
    return benign


def pods_reason(pods: Iterable[Mapping[str, Any]]) -> str:
    """The first pod problem of a job's pods (a benign step only if nothing else is said)."""
    said = [r for r in (pod_reason(p) for p in pods) if r]
    problems = [r for r in said if kind(r) not in BENIGN]
    return (problems or said or [""])[0]


def workload_reason(workload: Mapping[str, Any]) -> str:
    """A Kueue Workload that is not admitted: its QuotaReserved (or Admitted) message."""
    conditions = {c.get("type"): c for c in (workload.get("status") or {}).get("conditions") or []}
    name = (workload.get("metadata") or {}).get("name", "")
    for ctype in ("QuotaReserved", "Admitted"):
        cond = conditions.get(ctype)
        if cond is not None and cond.get("status") == "False" and cond.get("message"):
            return _line("WorkloadNotAdmitted", f"Kueue workload {name}: {cond['message']}")
    if not conditions.get("Admitted") or conditions["Admitted"].get("status") != "True":
        return _line("WorkloadNotAdmitted", f"Kueue workload {name} is waiting for admission")
    return ""


def podgroup_reason(podgroup: Mapping[str, Any], queue: str = "") -> str:
    """A Volcano PodGroup that cannot run: its Unschedulable condition, or not admitted yet."""
    status = podgroup.get("status") or {}
    name = (podgroup.get("metadata") or {}).get("name", "")
    queue = queue or (podgroup.get("spec") or {}).get("queue") or ""
    conditions = status.get("conditions") or []
    # Volcano keeps one condition per type: a gang placed after it could not be has both, and
    # the later one (RFC 3339 times compare as strings) is what holds now
    placed = max(
        (c.get("lastTransitionTime") or "" for c in conditions
         if c.get("type") == "Scheduled" and c.get("status") == "True"),
        default=None,
    )  # fmt: skip
    for cond in reversed(conditions):
        if cond.get("type") == "Unschedulable" and cond.get("status") == "True":
            if placed is not None and placed >= (cond.get("lastTransitionTime") or ""):
                break
            why = cond.get("message") or cond.get("reason") or ""
            return _line("PodGroupUnschedulable", f"Volcano PodGroup {name}: {why}")
    if status.get("phase") in (None, "", "Pending"):
        return _line(
            "PodGroupNotAdmitted",
            f"Volcano PodGroup {name} not admitted by queue {queue or 'default'!r} "
            "(the queue is closed, full, or lacks the resources)",
        )
    return ""


# -- the reads (only for a pending job, only its own objects) ----------------------------------


def _core(client: Any) -> Any:
    from kubernetes import client as k8s

    return k8s.CoreV1Api(client)


def _pods(client: Any, namespace: str, selector: str, watched: Any = None) -> list[dict[str, Any]]:
    """A job's pods (``selector``: ``label=value``): as the operator's watch has them, else
    from the API server."""
    label, _, value = selector.partition("=")
    cached = watched.pods(namespace, label, value) if watched is not None else None
    if cached is not None:
        return list(cached[:20])
    pods = _core(client).list_namespaced_pod(namespace, label_selector=selector, limit=20)
    return [client.sanitize_for_serialization(p) for p in pods.items]


def job_reason(client: Any, job: Mapping[str, Any], pod_selector: str, watched: Any = None) -> str:
    """Why a pending batch/v1 Job waits: its Kueue Workload while suspended, else its pods.

    Never raises: a failed read leaves the reason unknown ("") until the next look.
    """
    meta = job.get("metadata") or {}
    namespace = meta.get("namespace", "default")
    try:
        if (job.get("spec") or {}).get("suspend"):
            from kubernetes import client as k8s

            found = k8s.CustomObjectsApi(client).list_namespaced_custom_object(
                group=KUEUE_GROUP,
                version=KUEUE_VERSION,
                namespace=namespace,
                plural="workloads",
                label_selector=f"{KUEUE_JOB_UID_LABEL}={meta.get('uid', '')}",
            )
            items = found.get("items") or []
            return workload_reason(items[0]) if items else ""
        return pods_reason(_pods(client, namespace, pod_selector, watched))
    except Exception as e:  # best effort: the reason stays unknown until the next look
        log.debug("reading why job %s waits failed: %s", meta.get("name"), e)
        return ""


def volcano_reason(client: Any, job: Mapping[str, Any], watched: Any = None) -> str:
    """Why a pending Volcano job waits: its pods once created, else its PodGroup.

    A gang (`minAvailable` > 1) that cannot be placed is said by its PodGroup, whose
    Unschedulable condition counts the members that fit and names the one that does not
    (`1/2 tasks in gang unschedulable: ... Origin reason is <pod>: 0/1 nodes are unavailable:
    1 Insufficient cpu.`); its pods alone would say only that one of them fits or that the other
    finds no node. Volcano names the PodGroup `<job>-<job uid>` (older releases: `<job>`).
    Never raises.
    """
    meta = job.get("metadata") or {}
    namespace, name = meta.get("namespace", "default"), meta.get("name", "")
    try:
        said = pods_reason(_pods(client, namespace, f"{VOLCANO_JOB_LABEL}={name}", watched))
        gang = int((job.get("spec") or {}).get("minAvailable") or 1) > 1
        placing = kind(said) in ("Unschedulable", GANG_MEMBER_FITS)
        if said and kind(said) not in BENIGN and not (gang and placing):
            return said
        from kubernetes import client as k8s

        api = k8s.CustomObjectsApi(client)
        for pg_name in (f"{name}-{meta.get('uid', '')}", name):
            pg = get_or_none(
                api, "scheduling.volcano.sh", "v1beta1", namespace, "podgroups", pg_name
            )
            if pg is None:
                continue
            queue = (job.get("spec") or {}).get("queue") or ""
            return podgroup_reason(pg, queue) or said
        return said
    except Exception as e:  # best effort
        log.debug("reading why Volcano job %s waits failed: %s", name, e)
        return ""


__all__ = [
    "BENIGN",
    "GANG_MEMBER_FITS",
    "job_reason",
    "kind",
    "pod_reason",
    "podgroup_reason",
    "pods_reason",
    "volcano_reason",
    "workload_reason",
]
