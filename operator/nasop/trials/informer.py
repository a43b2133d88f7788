"""One resource's objects kept in memory by list + watch, as client-go's informers keep them.

Hundreds of experiments each asked the API server for every running trial's job and pods on
every tick (bench/operator_scale.py: two or three requests per trial per tick, the server's
load growing with experiments x trials). An :class:`Informer` lists the objects once (by label
selector, in pages), then follows one watch from that list's resourceVersion; a watch that
ends is resumed from the last version seen (bookmarks keep it fresh), and a version the server
has compacted away (410 Gone) or any failure leads to a new list. Readers get the objects as
the server sent them (plain dicts, trimmed by ``trim``) and must not change them; each change
is told to ``on_change(obj, deleted)`` (from the informer's thread), which the operator uses
to wake the experiment the object belongs to.

While not :attr:`synced` (before the first list, after a failure until the next list) a reader
cannot tell "absent" from "not seen yet" and asks the API server itself.
"""

from __future__ import annotations

import collections
import json
import logging
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from typing import Any

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)

WATCH_SECONDS = 240  # the server ends each watch after this (a new one resumes from there)
PAGE = 500  # objects per list page
BACKOFF = (0.5, 1.0, 2.0, 5.0)  # seconds before listing again after consecutive failures
DELETED_KEPT = 10_000  # uids of deleted objects remembered (see add)


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


def trim(obj: Obj, drop: Iterable[str] = ()) -> Obj:
    """The object without its managedFields, annotations and the dotted paths in ``drop``
    (e.g. ``spec.tasks``): what a reader never looks at is not kept in memory."""
    out = dict(obj)
    meta = dict(out.get("metadata") or {})
    meta.pop("managedFields", None)
    meta.pop("annotations", None)
    out["metadata"] = meta
    for path in drop:
        head, _, leaf = path.rpartition(".")
        parent = out
        for part in head.split(".") if head else []:
            child = parent.get(part)
            if not isinstance(child, dict):
                break
            parent[part] = child = dict(child)
            parent = child
        else:
            parent.pop(leaf, None)
    return out


class Informer:
    """The objects of one collection (``path``: ``/apis/batch/v1/namespaces/ml/jobs`` or
    ``/api/v1/pods``) with ``selector``, indexed by name and by the labels in ``index``."""

    def __init__(
        self,
        api: Any,
        path: str,
        selector: str,
        *,
        index: Iterable[str] = (),
        trim: Callable[[Obj], Obj] = trim,
        on_change: Callable[[Obj, bool], None] | None = None,
    ) -> None:
        self.api = api
        self.path = path
        self.selector = selector
        self.index_labels = tuple(index)
        self.trim = trim
        self.on_change = on_change
        self.synced = threading.Event()
        self.lists = 0  # how many times the collection was listed (1 + re-lists)
        self._objects: dict[Key, Obj] = {}
        self._index: dict[tuple[str, str, str], set[Key]] = {}  # (ns, label, value) -> keys
        self._deleted: collections.OrderedDict[str, None] = collections.OrderedDict()  # uids
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._response: Any = None  # the open watch, closed by stop()
        self._thread: threading.Thread | None = None

    # -- reading -------------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._objects.get((namespace, name))

    def select(self, namespace: str, label: str, value: str) -> list[Obj]:
        """The objects of ``namespace`` whose ``label`` (one of ``index``) is ``value``."""
        with self._lock:
            keys = self._index.get((namespace, label, value), ())
            return [self._objects[k] for k in sorted(keys)]

    def add(self, obj: Obj) -> None:
        """An object this process has just created (the API server's answer), kept until the
        watch brings it or a newer version: a read right after the create finds it."""
        obj = self.trim(obj)
        key = _key(obj)
        with self._lock:
            uid = (obj.get("metadata") or {}).get("uid")
            if key not in self._objects and uid not in self._deleted:  # not gone already
                self._objects[key] = obj
                self._add_index(key, obj)

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)

    # -- running -------------------------------------------------------------------------

    def start(self) -> Informer:
        name = f"nasop-informer-{self.path.rsplit('/', 1)[-1]}"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop following; wait up to `timeout` for the thread (0: do not wait). Readers ask
        the API server from now on (what it holds would only grow stale)."""
        self._stop.set()
        self.synced.clear()
        _interrupt(self._response)
        if self._thread is not None and timeout > 0:
            self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                version = self._list()
                failures = 0
                while not self._stop.is_set():
                    version = self._watch(version)
            except Gone:
                log.info("watch of %s: resourceVersion gone, listing again", self.path)
            except Exception as e:
                if self._stop.is_set():
                    return
                self.synced.clear()
                delay = BACKOFF[min(failures, len(BACKOFF) - 1)]
                failures += 1
                log.warning("watch of %s failed (%s); listing again in %.1f s", self.path, e, delay)
                self._stop.wait(delay)

    def _request(self, query: dict[str, Any], stream: bool) -> Any:
        url = f"{self.path}?{urllib.parse.urlencode(query)}"
        timeout = (10, WATCH_SECONDS + 30) if stream else 60
        return self.api.call_api(
            url,
            "GET",
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _return_http_data_only=True,
            _request_timeout=timeout,
        )

    def _list(self) -> str:
        """List every object (in pages); replace the store; tell what changed."""
        objects: dict[Key, Obj] = {}
        token, version = "", ""
        while True:
            query: dict[str, Any] = {"labelSelector": self.selector, "limit": PAGE}
            if token:
                query["continue"] = token
            page = json.loads(self._request(query, stream=False).data)
            for item in page.get("items") or []:
                obj = self.trim(item)
                objects[_key(obj)] = obj
            meta = page.get("metadata") or {}
            version = version or meta.get("resourceVersion", "")
            token = meta.get("continue") or ""
            if not token:
                break
        with self._lock:
            old, self._objects = self._objects, objects
            self._index = {}
            for key, obj in objects.items():
                self._add_index(key, obj)
        self.lists += 1
        if self._stop.is_set():
            return version
        self.synced.set()
        for key, obj in objects.items():
            if _version(old.get(key)) != _version(obj):
                self._tell(obj, False)
        for key, obj in old.items():
            if key not in objects:
                self._tell(obj, True)
        return version

    def _watch(self, version: str) -> str:
        """Follow one watch from ``version``; returns the last version seen when it ends."""
        query = {
            "labelSelector": self.selector,
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": WATCH_SECONDS,
        }
        response = self._response = self._request(query, stream=True)
        try:
            for line in _lines(response):
                if self._stop.is_set():
                    break
                event = json.loads(line)
                version = self._apply(event, version)
        finally:
            self._response = None
            response.release_conn()
        return version

    def _apply(self, event: dict[str, Any], version: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone(obj.get("message", ""))
            raise RuntimeError(f"watch error: {obj.get('message') or obj}")
        new_version = _version(obj) or version
        if kind == "BOOKMARK":
            return new_version
        obj = self.trim(obj)
        key = _key(obj)
        with self._lock:
            old = self._objects.pop(key, None)
            if old is not None:
                self._drop_index(key, old)
            if kind != "DELETED":
                self._objects[key] = obj
                self._add_index(key, obj)
            else:  # remembered, so that a late add() of it is not kept
                self._deleted[(obj.get("metadata") or {}).get("uid", "")] = None
                while len(self._deleted) > DELETED_KEPT:
                    self._deleted.popitem(last=False)
        self._tell(obj, kind == "DELETED")
        return new_version

    def _tell(self, obj: Obj, deleted: bool) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(obj, deleted)
        except Exception as e:  # a listener's failure must not stop the watch
            log.warning("watch listener of %s: %s", self.path, e)

    def _add_index(self, key: Key, obj: Obj) -> None:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        for label in self.index_labels:
            if label in labels:
                self._index.setdefault((key[0], label, labels[label]), set()).add(key)

    def _drop_index(self, key: Key, obj: Obj) -> None:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        for label in self.index_labels:
            keys = self._index.get((key[0], label, labels.get(label, "")))
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._index[(key[0], label, labels.get(label, ""))]


def _interrupt(response: Any) -> None:
    """End a watch read blocked in another thread: shut its socket down. (Closing the response
    would wait for the reader's buffer lock, i.e. for the next event or bookmark: the operator's
    shutdown waited 60 s on it.)"""
    sock = getattr(getattr(response, "_connection", None), "sock", None)
    if sock is None:
        return  # no watch open (between watches, or the connection already released)
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed
        pass


def _key(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


def _version(obj: Obj | None) -> str:
    return ((obj or {}).get("metadata") or {}).get("resourceVersion", "")


def _lines(response: Any) -> Iterator[bytes]:
    """The watch's events, one JSON document per line, as the chunks arrive."""
    pending = b""
    for chunk in response.stream(amt=65536, decode_content=True):
        pending += chunk
        *whole, pending = pending.split(b"\n")
        yield from (line for line in whole if line.strip())
    if pending.strip():
        yield pending


__all__ = ["Gone", "Informer", "trim"]
