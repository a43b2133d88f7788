"""Keeping a cluster trial's pods until its output is read, and letting go of them after.

A trial reports through its pod's log and termination message, and both go with the pod. A
batch/v1 trial pod therefore carries the finalizer `nasop.dev/harvest` (set in the Job's pod
template): deleting it (by hand, by deleting its Job, by pod garbage collection) leaves it
Terminating until the operator has read its output to the end, recorded how the trial ended and
saved that; then the operator removes the finalizer and the deletion completes. Volcano keeps a
finished job's pods until the job is deleted, and nasop deletes a Volcano job only to cancel it.

Letting go happens:

- after a save that recorded trials as ended (`Harvester.release`: the pods of the jobs queued
  since, those whose trials have all ended);
- when a search opens (a restart): every pod of the experiment that still holds the finalizer
  and whose trials have all ended in the saved state (the save came, the release did not);
- when the experiment is deleted (`release_experiment`: all its pods, whatever their trials);
- at operator startup, for pods of experiments deleted while no operator ran
  (`release_orphans`).

Pods are found by the `nasop.dev/experiment-uid` label the schedulers put on every job and pod;
only the finalizer is ever removed (a JSON patch that tests it is still at that index).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from nasop import spec
from nasop.results import Collector
from nasop.trials import batchjob
from nasop.trials.custom_objects import get_or_none
from nasop.trials.pod_output import PodLogs, PodOutput
from nasop.trials.watched import cached_job

log = logging.getLogger(__name__)

FINALIZER = batchjob.HARVEST_FINALIZER  # set in the Job's pod template
UID_LABEL = f"{spec.GROUP}/experiment-uid"
_MEMBER = f"{spec.GROUP}/member-"

Ended = Callable[[int], bool]  # trial index -> its end is recorded (and saved)


def trials_of(labels: dict[str, str]) -> set[int]:
    """The trial indices a pod or job ran: its trial label, and every pack member's."""
    out = {int(k[len(_MEMBER) :]) for k in labels if k.startswith(_MEMBER)}
    if labels.get(spec.TRIAL_LABEL, "").isdigit():
        out.add(int(labels[spec.TRIAL_LABEL]))
    return out


def release_pod(core: Any, pod: Any) -> bool:
    """Remove nasop's finalizer from this pod (a V1Pod as listed); True when removed or gone.

    A JSON patch that first tests the pod's uid and the finalizer's index: another controller
    changing the list meanwhile makes it fail (422) rather than remove the wrong entry.
    """
    from kubernetes.client.rest import ApiException

    finalizers = list(pod.metadata.finalizers or [])
    if FINALIZER not in finalizers:
        return True
    at = finalizers.index(FINALIZER)
    patch = [
        {"op": "test", "path": "/metadata/uid", "value": pod.metadata.uid},
        {"op": "test", "path": f"/metadata/finalizers/{at}", "value": FINALIZER},
        {"op": "remove", "path": f"/metadata/finalizers/{at}"},
    ]
    try:
        core.patch_namespaced_pod(pod.metadata.name, pod.metadata.namespace, patch)
    except ApiException as e:
        if e.status == 404:
            return True
        log.warning("releasing pod %s/%s: %s", pod.metadata.namespace, pod.metadata.name, e)
        return False
    log.info("released pod %s/%s", pod.metadata.namespace, pod.metadata.name)
    return True


def _held(pods: Iterable[Any]) -> list[Any]:
    return [p for p in pods if FINALIZER in (p.metadata.finalizers or [])]


def release_experiment(api: Any, namespace: str, uid: str) -> list[str]:
    """A deleted experiment: release all its pods; returns their names."""
    from kubernetes import client as k8s

    core = k8s.CoreV1Api(api)
    pods = core.list_namespaced_pod(namespace, label_selector=f"{UID_LABEL}={uid}").items
    return [p.metadata.name for p in _held(pods) if release_pod(core, p)]


def release_orphans(api: Any, namespaces: list[str]) -> list[str]:
    """Pods of experiments deleted while no operator ran: released at startup.

    An experiment counts as deleted when no NASExperiment of its namespace has its uid.
    """
    from kubernetes import client as k8s

    core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
    if namespaces:
        pods = [
            p
            for ns in namespaces
            for p in core.list_namespaced_pod(ns, label_selector=UID_LABEL).items
        ]
    else:
        pods = core.list_pod_for_all_namespaces(label_selector=UID_LABEL).items
    live: dict[str, set[str | None]] = {}
    released = []
    for pod in _held(pods):
        ns = pod.metadata.namespace
        if ns not in live:
            items = custom.list_namespaced_custom_object(
                spec.GROUP, spec.VERSION, ns, spec.PLURAL
            ).get("items", [])
            live[ns] = {(o.get("metadata") or {}).get("uid") for o in items}
        if (pod.metadata.labels or {}).get(UID_LABEL) in live[ns]:
            continue
        if release_pod(core, pod):
            released.append(f"{ns}/{pod.metadata.name}")
    return released


class Harvester:
    """One experiment's trial pods: their readers, and letting go of them once recorded.

    Args:
        api: the operator's API client.
        group, version, plural: the trial jobs' resource; `pod_label` the label their controller
            puts on their pods (the job's name).
        namespace, owner_uid: the experiment's namespace and uid.
        finalizer: whether the pods of these jobs carry nasop's finalizer (batch/v1 Jobs).
        watched: the operator's watch of the trial jobs and pods (watched.py), if any.
    """

    def __init__(
        self,
        api: Any,
        job: tuple[str, str, str],
        pod_label: str,
        namespace: str,
        owner_uid: str,
        finalizer: bool,
        watched: Any = None,
    ) -> None:
        self.logs = PodLogs(api, watched)
        self.watched = watched
        self.job = job
        self.pod_label = pod_label
        self.namespace = namespace
        self.owner_uid = owner_uid
        self.finalizer = finalizer
        self._queued: set[str] = set()  # job names whose pods may be released
        self._swept = False

    def get_job(self, name: str) -> dict[str, Any] | None:
        cached = cached_job(self.watched, self.namespace, name)
        if cached is not None:
            return cached
        group, version, plural = self.job
        return get_or_none(self.logs.custom, group, version, self.namespace, plural, name)

    def job_uid(self, handle: str) -> str | None:
        """The uid of the job behind an app handle, to find its pods even once it is gone."""
        try:
            job = self.get_job(_job_name(handle))
        except Exception as e:  # recorded later, at the first read
            log.warning("reading job %s: %s", handle, e)
            return None
        return ((job or {}).get("metadata") or {}).get("uid")

    def reader(self, handle: str, collector: Collector, job_uid: str | None) -> PodOutput:
        name = _job_name(handle)
        return PodOutput(
            self.logs,
            self.namespace,
            name,
            lambda: self.get_job(name),
            self.pod_label,
            self.owner_uid,
            collector,
            job_uid=job_uid,
        )

    def queue(self, handle: str) -> None:
        """This job's trial has ended (or was cancelled): release its pods after the next save."""
        if self.finalizer and handle:
            self._queued.add(_job_name(handle))

    def release(self, ended: Ended) -> None:
        """Release the held pods whose trials have all ended; called after a save (and when
        the search opens, which first sweeps all the experiment's pods). Never raises."""
        try:
            if not self._swept:
                pods = self.logs.core.list_namespaced_pod(
                    self.namespace, label_selector=f"{UID_LABEL}={self.owner_uid}"
                ).items
                self._release(_held(pods), ended)
                self._swept = True
            for name in sorted(self._queued):
                pods = self.logs.core.list_namespaced_pod(
                    self.namespace, label_selector=f"{self.pod_label}={name}"
                ).items
                if self._release(_held(pods), ended):
                    self._queued.discard(name)
        except Exception as e:  # the next save tries again
            log.warning("releasing the pods of %s: %s", self.owner_uid, e)

    def _release(self, pods: list[Any], ended: Ended) -> bool:
        """True when every pod given was released (or is not this experiment's to release)."""
        whole = True
        for pod in pods:
            labels = pod.metadata.labels or {}
            if labels.get(UID_LABEL) != self.owner_uid:
                continue  # another experiment's (one of the same name, deleted)
            trials = trials_of(labels)
            if trials and not all(ended(i) for i in trials):
                whole = False
                continue
            whole &= release_pod(self.logs.core, pod)
        return whole


def _job_name(handle: str) -> str:
    return handle.rsplit(":", 1)[-1]


__all__ = [
    "FINALIZER",
    "UID_LABEL",
    "Harvester",
    "release_experiment",
    "release_orphans",
    "release_pod",
    "trials_of",
]
