"""The list + watch cache of trial jobs and pods (trials/informer.py) against a scripted API:
list in pages, follow the watch, resume after its end, list again on 410 Gone, index by label,
tell each change. The real API server runs it in tests/operator (every scenario's operator
reads its trials through it)."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from typing import Any

from nasop.trials import watched
from nasop.trials.informer import Informer, trim


def _pod(name: str, version: str, job: str = "j1", **labels: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "resourceVersion": version,
            "labels": {"volcano.sh/job-name": job, **labels},
            "managedFields": [{"big": "x"}],
        },
        "spec": {"containers": [{"name": "trainer", "image": "i", "env": [{"name": "A"}]}]},
        "status": {"phase": "Running"},
    }


class Response:
    def __init__(self, data: bytes = b"", lines: list[dict[str, Any]] | None = None) -> None:
        self.data = data
        self.lines = lines or []

    def stream(self, amt: int, decode_content: bool) -> Any:
        raw = b"".join(json.dumps(e).encode() + b"\n" for e in self.lines)
        for i in range(0, len(raw), 7):  # chunks that cut lines anywhere
            yield raw[i : i + 7]

    def release_conn(self) -> None:
        pass

    def close(self) -> None:
        pass


class ScriptedApi:
    """Answers lists from `pages` and each watch with the next of `watches` (then waits)."""

    def __init__(self, pages: list[dict[str, Any]], watches: list[list[dict[str, Any]]]) -> None:
        self.pages = pages
        self.watches = watches
        self.calls: list[dict[str, str]] = []
        self.idle = threading.Event()

    def call_api(self, url: str, method: str, **_: Any) -> Response:
        query = dict(urllib.parse.parse_qsl(url.split("?", 1)[1]))
        self.calls.append(query)
        if query.get("watch"):
            if not self.watches:
                self.idle.set()
                time.sleep(0.05)
                return Response()
            return Response(lines=self.watches.pop(0))
        page = self.pages.pop(0)
        return Response(json.dumps(page).encode())


def _wait(check: Any) -> None:
    deadline = time.monotonic() + 5
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_list_watch_resume_and_list_again_after_gone() -> None:
    pages = [
        {"metadata": {"continue": "c1"}, "items": [_pod("a", "1")]},
        {"metadata": {"resourceVersion": "5"}, "items": [_pod("b", "2", job="j2")]},
        # the list after 410 Gone: b deleted meanwhile, c new
        {"metadata": {"resourceVersion": "30"}, "items": [_pod("a", "6"), _pod("c", "29")]},
    ]
    watches = [
        [
            {"type": "MODIFIED", "object": _pod("a", "6")},
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}},
        ],
        [
            {"type": "ADDED", "object": _pod("d", "10")},
            {"type": "DELETED", "object": _pod("d", "11")},
            {"type": "ERROR", "object": {"code": 410, "message": "too old"}},
        ],
    ]
    api = ScriptedApi(pages, watches)
    told: list[str] = []
    informer = Informer(
        api,
        "/api/v1/namespaces/ns/pods",
        "app.kubernetes.io/managed-by=nasop",
        index=["volcano.sh/job-name"],
        trim=watched.trim_pod,
        on_change=lambda obj, gone: told.append(obj["metadata"]["name"] + "-" * gone),
    ).start()
    try:
        _wait(api.idle.is_set)
        assert informer.synced.is_set()
    finally:
        informer.stop()
    assert not informer.synced.is_set()  # stopped: readers ask the server
    assert informer.lists == 2
    assert [c.get("continue") for c in api.calls[:2]] == [None, "c1"]
    versions = [c.get("resourceVersion") for c in api.calls if c.get("watch")]
    assert versions[:3] == ["5", "9", "30"]  # resumed after the bookmark; after Gone, the list's
    assert sorted(
        o["metadata"]["name"] for o in informer.select("ns", "volcano.sh/job-name", "j1")
    ) == [
        "a",
        "c",
    ]
    assert informer.select("ns", "volcano.sh/job-name", "j2") == []  # b went with the re-list
    assert informer.get("ns", "d") is None
    assert told == ["a", "b", "a", "d", "d-", "c", "b-"]  # the re-list tells c (new), b (gone)
    kept = informer.get("ns", "a")
    assert kept is not None and "managedFields" not in kept["metadata"]
    assert kept["spec"] == {"containers": [{"name": "trainer"}]}


def test_trim_drops_nested_paths_without_touching_the_original() -> None:
    job = {
        "metadata": {"name": "j", "annotations": {"a": "b"}},
        "spec": {"tasks": [1], "queue": "q"},
    }
    kept = trim(job, ["spec.tasks", "status.missing.leaf"])
    assert kept == {"metadata": {"name": "j"}, "spec": {"queue": "q"}}
    assert job["spec"]["tasks"] == [1] and job["metadata"]["annotations"] == {"a": "b"}


def test_a_watched_lookup_says_ask_the_server_until_synced_or_when_absent(monkeypatch) -> None:
    monkeypatch.setattr(watched, "SYNC_WAIT", 0.2)
    jobs = Informer(None, "/apis/batch/v1/namespaces/ns/jobs", "x=y")
    pods = Informer(None, "/api/v1/namespaces/ns/pods", "x=y", index=["volcano.sh/job-name"])
    seen = watched.Watched(jobs, pods)
    start = time.monotonic()
    assert seen.job("ns", "j") is None  # waited SYNC_WAIT for the list, then: ask the server
    waited = time.monotonic() - start
    assert seen.pods("ns", "volcano.sh/job-name", "j") is None  # at once: the wait timed out
    assert waited >= 0.2 and time.monotonic() - start < waited + 0.1
    jobs.synced.set()
    pods.synced.set()
    assert seen.job("ns", "j") is None  # not seen: the caller asks the server
    assert seen.pods("ns", "volcano.sh/job-name", "j") == []
    assert seen.pods("ns", "other-label", "j") is None  # not indexed


def test_a_lookup_during_the_first_list_waits_for_it_instead_of_asking() -> None:
    jobs = Informer(None, "/apis/batch/v1/namespaces/ns/jobs", "x=y")
    jobs._objects[("ns", "j")] = {"metadata": {"name": "j", "namespace": "ns"}}
    threading.Timer(0.1, jobs.synced.set).start()  # the list answers 0.1 s later
    assert watched.Watched(jobs, None).job("ns", "j") == {
        "metadata": {"name": "j", "namespace": "ns"}
    }


def test_a_created_object_is_kept_until_the_watch_brings_it_unless_it_is_gone() -> None:
    pods = Informer(None, "/api/v1/namespaces/ns/pods", "x=y", index=["volcano.sh/job-name"])
    seen = watched.Watched(None, pods)
    seen.created(_pod("early", "1"))  # not synced: nothing kept
    assert pods.get("ns", "early") is None
    pods.synced.set()
    created = _pod("a", "3")
    created["metadata"]["uid"] = "ua"
    pods.add(created)
    assert pods.get("ns", "a") is not None
    assert [p["metadata"]["name"] for p in pods.select("ns", "volcano.sh/job-name", "j1")] == ["a"]
    pods._apply({"type": "MODIFIED", "object": {**created, "status": {"phase": "Succeeded"}}}, "3")
    pods.add(created)  # the watch's newer version stays
    assert (pods.get("ns", "a") or {})["status"] == {"phase": "Succeeded"}
    pods._apply({"type": "DELETED", "object": created}, "4")
    pods.add(created)  # the create's answer came after the watch said it was deleted
    assert pods.get("ns", "a") is None


def test_a_trimmed_volcano_job_keeps_its_task_names_not_their_templates() -> None:
    """A terminated gang's replicas are named from the job's tasks (volcano.gang_replica_states),
    so the cache keeps each task's name and drops its pod template."""
    from nasop.trials.watched import trim_job

    job = {
        "metadata": {"name": "j"},
        "spec": {
            "minAvailable": 2,
            "tasks": [
                {"name": "trainer-0", "replicas": 1, "template": {"spec": {"containers": []}}},
                {"name": "trainer-1", "replicas": 1, "template": {"spec": {"containers": []}}},
            ],
        },
        "status": {"state": {"phase": "Terminated"}},
    }
    out = trim_job(job)
    assert out["spec"] == {
        "minAvailable": 2,
        "tasks": [{"name": "trainer-0"}, {"name": "trainer-1"}],
    }
    assert out["status"] == job["status"]
