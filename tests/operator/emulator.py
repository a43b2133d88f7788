"""A Kubernetes API emulator for operator tests, served over real HTTP on 127.0.0.1.

kmock's ``KubernetesEmulator`` gives us an HTTP server, request parsing, API discovery and an
object store with history (``emulator.objects[res, ns, name]``). As shipped it is too lenient for
kopf, the ``kubernetes`` client and TorchX: no resourceVersion/uid/generation, no generateName,
200 on create, kind-less lists, watches that replay everything, one patch flavour, 500 on a failed
JSON-patch ``test``. :class:`Emulator` serves every resource request itself with the API server's
semantics (see :meth:`Emulator._dispatch`) and leaves only discovery to kmock.

It runs in its own thread with its own event loop (:meth:`Emulator.running`), so synchronous
clients (``kubernetes``, TorchX) and an in-process kopf operator on the test's loop can share it.
Every object operation is also callable directly from any thread (``create_object``,
``get_object``, ``list_objects``, ``patch_object``, ``delete_object``): test helpers such as the
Volcano player use those and so stay out of :attr:`Emulator.calls` and injected faults.

Not emulated: schema validation and pruning, server-side apply, strategic-merge list semantics
(treated as a merge patch), label-transition events on watches, pagination (``limit`` is ignored),
admission, RBAC enforcement, namespace existence checks.
"""
from __future__ import annotations

import asyncio
import bisect
import contextlib
import copy
import dataclasses
import datetime
import json
import pathlib
import random
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import aiohttp.test_utils
import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
import yaml

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
           405: "MethodNotAllowed", 409: "Conflict", 410: "Gone", 415: "UnsupportedMediaType",
           422: "Invalid", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SUFFIX_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # as the API server's generateName


# --------------------------------------------------------------------------------------------
# Values


@dataclasses.dataclass(frozen=True)
class ResourceSpec:
    """What the emulator needs to know about one served resource."""
    group: str
    version: str  # the storage version: the one used as the kmock objects key
    plural: str
    kind: str
    namespaced: bool
    status: bool  # has the status subresource
    crd: bool = False  # registered from a CustomResourceDefinition
    list_kind: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> kmock.resource:
        return kmock.resource(self.group, self.version, self.plural)

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


class ApiCall(NamedTuple):
    """One API request, as RBAC sees it (``subresource`` and ``namespace`` may be None)."""
    verb: str
    group: str
    resource: str
    subresource: str | None
    namespace: str | None


@dataclasses.dataclass
class CallRecord:
    """An :class:`ApiCall` with the details that RBAC ignores."""
    call: ApiCall
    method: str
    path: str
    name: str | None
    user_agent: str
    status: int | None = None


@dataclasses.dataclass
class Fault:
    """Answer the next ``count`` requests matching ``method`` and ``path`` with ``status``."""
    method: str | None  # None: any method
    path: str  # a substring of the request's path and query
    status: int
    count: int | None = 1  # None: until cleared
    message: str = "injected fault"
    hits: int = 0

    def matches(self, method: str, path_qs: str) -> bool:
        method_ok = self.method is None or self.method.upper() == method.upper()
        return method_ok and self.path in path_qs and (self.count is None or self.hits < self.count)


class ApiError(Exception):
    """A Kubernetes ``Status`` failure; rendered as the HTTP response."""

    def __init__(self, code: int, message: str, *, reason: str | None = None,
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.reason = reason or REASONS.get(code, "Unknown")
        self.message = message
        self.details = dict(details or {})

    def status(self) -> dict[str, Any]:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "details": self.details,
                "code": self.code}


@dataclasses.dataclass(eq=False)
class _Watch:
    group: str
    plural: str
    namespace: str | None
    dropped: bool = False


@dataclasses.dataclass(frozen=True)
class _Target:
    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None


# --------------------------------------------------------------------------------------------
# CRDs


def make_crd(resource: str, kind: str, *, namespaced: bool = True, status: bool = False,
             short_names: Iterable[str] = ()) -> dict[str, Any]:
    """Build a minimal CustomResourceDefinition, e.g. ``make_crd('kopf.dev/v1/kopfpeerings', ...)``."""
    res = kmock.resource(resource)
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{res.plural}.{res.group}"},
        "spec": {
            "group": res.group, "scope": "Namespaced" if namespaced else "Cluster",
            "names": {"plural": res.plural, "singular": kind.lower(), "kind": kind,
                      "listKind": f"{kind}List", "shortNames": list(short_names)},
            "versions": [{
                "name": res.version, "served": True, "storage": True,
                "subresources": {"status": {}} if status else {},
                "schema": {"openAPIV3Schema": {"type": "object",
                                               "x-kubernetes-preserve-unknown-fields": True}},
            }],
        },
    }


#: A stand-in for crds/nasexperiments.yaml with the same names (no schema).
NASEXPERIMENTS_TEST_CRD = make_crd("nasop.dev/v1alpha1/nasexperiments", "NASExperiment",
                                   status=True, short_names=["nasx"])
VOLCANO_JOBS = "batch.volcano.sh/v1alpha1/jobs"
NASEXPERIMENTS = "nasop.dev/v1alpha1/nasexperiments"
STANDARD_CRDS = (
    make_crd("kopf.dev/v1/kopfpeerings", "KopfPeering"),
    make_crd("kopf.dev/v1/clusterkopfpeerings", "ClusterKopfPeering", namespaced=False),
    make_crd(VOLCANO_JOBS, "Job", status=True, short_names=["vcjob", "vj"]),
    make_crd("scheduling.volcano.sh/v1beta1/queues", "Queue", namespaced=False, status=True),
)


def load_crds(path: str | pathlib.Path) -> list[dict[str, Any]]:
    """Read every CustomResourceDefinition document from a (multi-document) YAML file."""
    with open(path, encoding="utf-8") as f:
        docs = [doc for doc in yaml.safe_load_all(f) if doc]
    return [doc for doc in docs if doc.get("kind") == "CustomResourceDefinition"]


# --------------------------------------------------------------------------------------------
# Patches and selectors


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (``null`` deletes a key; lists are replaced)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _split_terms(selector: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [term.strip() for term in terms if term.strip()]


def label_matcher(selector: str | None) -> Callable[[Mapping[str, str]], bool]:
    """Parse a label selector (``a=b,c!=d,e,!f,g in (h,i),j notin (k)``) into a predicate."""
    checks: list[Callable[[Mapping[str, str]], bool]] = []
    for term in _split_terms(selector or ""):
        if m := re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term):
            key, op, values = m[1], m[2], {v.strip() for v in m[3].split(",") if v.strip()}
            if op == "in":
                checks.append(lambda lb, k=key, vs=values: lb.get(k) in vs)
            else:
                checks.append(lambda lb, k=key, vs=values: lb.get(k) not in vs)
        elif m := re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*([^=!\s]*)", term):
            key, op, value = m[1], m[2], m[3]
            if op == "!=":
                checks.append(lambda lb, k=key, v=value: lb.get(k) != v)
            else:
                checks.append(lambda lb, k=key, v=value: lb.get(k) == v)
        elif m := re.fullmatch(r"(!?)\s*([^=!\s()]+)", term):
            neg, key = bool(m[1]), m[2]
            checks.append(lambda lb, k=key, n=neg: (k in lb) != n)
        else:
            raise ApiError(400, f"unable to parse requirement: {term!r}")
    return lambda labels: all(check(labels) for check in checks)


def field_matcher(selector: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """Parse a field selector (``metadata.name=x,status.phase!=y``) into a predicate."""
    checks: list[Callable[[Mapping[str, Any]], bool]] = []
    for term in _split_terms(selector or ""):
        m = re.fullmatch(r"([\w.]+)\s*(==|=|!=)\s*(.*)", term)
        if not m:
            raise ApiError(400, f"invalid field selector: {term!r}")
        path, negate, value = m[1].split("."), m[2] == "!=", m[3]

        def check(obj: Mapping[str, Any], path: list[str] = path, negate: bool = negate,
                  value: str = value) -> bool:
            node: Any = obj
            for part in path:
                node = node.get(part) if isinstance(node, Mapping) else None
            actual = "" if node is None else str(node).lower() if isinstance(node, bool) else str(node)
            return (actual == value) != negate
        checks.append(check)
    return lambda obj: all(check(obj) for check in checks)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spec_part(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What bumps ``metadata.generation``: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _parse_target(path: str) -> _Target | None:
    """Parse a resource URL; None for discovery and other non-resource URLs."""
    segments = [segment for segment in path.strip("/").split("/") if segment]
    if len(segments) >= 3 and segments[0] == "api":
        group, version, rest = "", segments[1], segments[2:]
    elif len(segments) >= 4 and segments[0] == "apis":
        group, version, rest = segments[1], segments[2], segments[3:]
    else:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    return _Target(group, version, rest[0], namespace, rest[1] if len(rest) > 1 else None,
                   "/".join(rest[2:]) or None)


def _verb(method: str, target: _Target, params: Mapping[str, str]) -> str:
    if method == "GET":
        return "watch" if params.get("watch", "").lower() in ("true", "1") else "get" if target.name else "list"
    if method == "DELETE":
        return "delete" if target.name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


# --------------------------------------------------------------------------------------------
# The emulator


@attrs.define(kw_only=True, eq=False, repr=False)
class Emulator(kmock.KubernetesEmulator):
    """kmock's KubernetesEmulator with the API server's semantics for kopf, the client and TorchX."""

    host: str = "127.0.0.1"
    port: int = 0

    #: Every resource request, in order: ``ApiCall(verb, group, resource, subresource, namespace)``.
    calls: list[ApiCall] = attrs.field(factory=list, init=False)
    #: The same requests with method, path, name, user agent and response status.
    call_records: list[CallRecord] = attrs.field(factory=list, init=False)
    #: Non-resource requests (discovery, /version): ``(method, path)``.
    nonresource_calls: list[tuple[str, str]] = attrs.field(factory=list, init=False)
    faults: list[Fault] = attrs.field(factory=list, init=False)
    pod_logs: dict[tuple[str, str], str] = attrs.field(factory=dict, init=False)

    _specs: dict[tuple[str, str], ResourceSpec] = attrs.field(factory=dict, init=False)
    _state_lock: Any = attrs.field(factory=threading.RLock, init=False)
    _rv: int = attrs.field(default=1000, init=False)
    _compacted_rv: int = attrs.field(default=0, init=False)
    _log: list[tuple[int, str, str, str | None, str, dict[str, Any]]] = attrs.field(factory=list, init=False)
    _log_rvs: list[int] = attrs.field(factory=list, init=False)
    _watches: set[_Watch] = attrs.field(factory=set, init=False)
    _loop: asyncio.AbstractEventLoop | None = attrs.field(default=None, init=False)
    _wake_event: asyncio.Event | None = attrs.field(default=None, init=False)
    _stop_event: asyncio.Event | None = attrs.field(default=None, init=False)
    _thread: threading.Thread | None = attrs.field(default=None, init=False)
    _url: str | None = attrs.field(default=None, init=False)
    _startup_error: BaseException | None = attrs.field(default=None, init=False)
    _closing: bool = attrs.field(default=False, init=False)

    def __repr__(self) -> str:
        return f"<Emulator {self._url or 'stopped'} rv={self._rv} calls={len(self.calls)}>"

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.resources.load_bundled()  # without core/v1 namespaces etc., kopf waits forever
        for crd in STANDARD_CRDS:
            self.register_crd(crd)
        self.create_object("v1/namespaces", {"metadata": {"name": "default"}})
        self.create_object("scheduling.volcano.sh/v1beta1/queues", {"metadata": {"name": "default"}})

    # ---------------------------------------------------------------- registration

    def register(self, resource: str, kind: str, *, namespaced: bool = True, status: bool = False,
                 singular: str | None = None, short_names: Iterable[str] = (),
                 list_kind: str | None = None, crd: bool = False) -> ResourceSpec:
        """Serve a resource (``'group/version/plural'``), including it in API discovery."""
        res = kmock.resource(resource)
        info = self.resources[res]
        info.kind, info.namespaced, info.singular = kind, namespaced, singular or kind.lower()
        info.verbs, info.shortnames = set(ALL_VERBS), set(short_names)
        info.subresources = {"status"} if status else set()
        with self._state_lock:
            existing = self._specs.get((res.group, res.plural))
            spec = ResourceSpec(res.group, existing.version if existing else res.version, res.plural,
                                kind, namespaced, status, crd, list_kind or f"{kind}List")
            self._specs[(res.group, res.plural)] = spec
        return spec

    def register_crd(self, crd: Mapping[str, Any] | str | pathlib.Path) -> list[ResourceSpec]:
        """Serve the resource(s) of a CRD dict or YAML file; also store the CRD object itself."""
        if isinstance(crd, (str, pathlib.Path)):
            return [spec for doc in load_crds(crd) for spec in self.register_crd(doc)]
        spec, names = crd["spec"], crd["spec"]["names"]
        registered = []
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            subresources = version.get("subresources") or spec.get("subresources") or {}
            registered.append(self.register(
                f"{spec['group']}/{version['name']}/{names['plural']}", names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                status="status" in subresources, singular=names.get("singular"),
                short_names=names.get("shortNames", ()), list_kind=names.get("listKind"), crd=True))
        body = copy.deepcopy(dict(crd))
        body.setdefault("metadata", {})["name"] = f"{names['plural']}.{spec['group']}"
        body["status"] = {"acceptedNames": names, "storedVersions": [registered[0].version],
                          "conditions": [{"type": "Established", "status": "True"},
                                         {"type": "NamesAccepted", "status": "True"}]}
        crds = "apiextensions.k8s.io/v1/customresourcedefinitions"
        with self._state_lock:
            if self.get_object(crds, None, body["metadata"]["name"]) is None:
                self.create_object(crds, body)
                self.patch_object(crds, None, body["metadata"]["name"], {"status": body["status"]},
                                  subresource="status")
        return registered

    def spec(self, resource: str | ResourceSpec) -> ResourceSpec:
        """Look up a served resource by ``'group/version/plural'`` (or ``'v1/plural'``)."""
        if isinstance(resource, ResourceSpec):
            return resource
        res = kmock.resource(resource)
        found = self._lookup(res.group or "", res.version, res.plural)
        if found is None:
            raise KeyError(f"resource {resource!r} is not served by the emulator")
        return found

    def _get_resources(self) -> list[kmock.resource]:
        with self._state_lock:  # kmock's discovery iterates the objects, which other threads change
            return super()._get_resources()

    def _lookup(self, group: str, version: str | None, plural: str | None) -> ResourceSpec | None:
        spec = self._specs.get((group, plural or ""))
        if spec is not None:
            return spec if version is None or kmock.resource(group, version, plural) in self.resources else None
        if version is None or plural is None:
            return None
        res = kmock.resource(group, version, plural)
        if res not in self.resources:
            return None
        info = self.resources[res]
        kind = info.kind or plural.capitalize()
        spec = ResourceSpec(group, version, plural, kind, bool(info.namespaced),
                            "status" in info.subresources, list_kind=f"{kind}List")
        self._specs[(group, plural)] = spec
        return spec

    async def _serve_version(self, request: kmock.Request) -> Any:
        result = await super()._serve_version(request)
        if isinstance(result, dict) and result.get("groupVersion", "").startswith("/"):
            result["groupVersion"] = result["groupVersion"][1:]  # kmock says "/v1" for the core group
        return result

    # ---------------------------------------------------------------- server lifecycle

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("The emulator is not running: use `with emulator.running(): ...`")
        return self._url

    @contextlib.contextmanager
    def running(self) -> Iterator[Emulator]:
        """Serve on ``host:port`` (a free port by default) in a background thread."""
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def start(self) -> Emulator:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, args=(ready,),
                                        name="k8s-emulator", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=30) or self._startup_error is not None:
            raise RuntimeError("The Kubernetes API emulator did not start") from self._startup_error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop_event is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop_event.set)
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._thread = None
        self._url = None

    def _thread_main(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(ready))
        except BaseException as e:  # reported to start(); nothing else can see this thread
            self._startup_error = e
            ready.set()

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event, self._wake_event, self._closing = asyncio.Event(), asyncio.Event(), False
        async with self:
            server = aiohttp.test_utils.RawTestServer(self, host=self.host, port=self.port or None)
            await server.start_server()
            self._url = str(server.make_url("")).rstrip("/")
            ready.set()
            try:
                await self._stop_event.wait()
            finally:
                self._closing = True
                self.drop_watches()
                self._wake()
                await asyncio.sleep(0.01)
                await server.close()
                self._loop = None

    # ---------------------------------------------------------------- test hooks

    def inject(self, method: str | None, path: str, status: int = 500, *, count: int | None = 1,
               message: str = "injected fault") -> Fault:
        """Answer the next ``count`` requests whose method and path-with-query match with ``status``.

        ``method`` None matches any method; ``path`` is a substring of the path and query as sent
        (e.g. ``"/nasexperiments/"``, ``"watch=true"``); ``count`` None: until :meth:`clear_faults`.
        """
        fault = Fault(method, path, status, count, message)
        with self._state_lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._state_lock:
            self.faults.clear()

    def drop_watches(self, resource: str | None = None) -> int:
        """End the open watch streams (of one resource, or all); return how many were dropped."""
        spec = self.spec(resource) if resource else None
        with self._state_lock:
            dropped = [w for w in self._watches if not w.dropped and
                       (spec is None or (w.group, w.plural) == (spec.group, spec.plural))]
            for watch in dropped:
                watch.dropped = True
        self._notify()
        return len(dropped)

    def active_watches(self, resource: str | None = None) -> int:
        spec = self.spec(resource) if resource else None
        with self._state_lock:
            return sum(1 for w in self._watches if not w.dropped and
                       (spec is None or (w.group, w.plural) == (spec.group, spec.plural)))

    def expire_resource_versions(self) -> None:
        """Forget history: watches from an older resourceVersion get ``410 Gone``."""
        with self._state_lock:
            self._compacted_rv = self._rv

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def rbac_rules(self, *, exclude_user_agents: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Aggregate the recorded calls into RBAC rules: one per (apiGroup, resource[/sub])."""
        excluded = tuple(exclude_user_agents)
        verbs: dict[tuple[str, str], set[str]] = {}
        for record in list(self.call_records):
            if excluded and record.user_agent.startswith(excluded):
                continue
            call = record.call
            resource = f"{call.resource}/{call.subresource}" if call.subresource else call.resource
            verbs.setdefault((call.group, resource), set()).add(call.verb)
        return [{"apiGroups": [group], "resources": [resource], "verbs": sorted(vs)}
                for (group, resource), vs in sorted(verbs.items())]

    def set_pod_log(self, namespace: str, name: str, text: str) -> None:
        self.pod_logs[(namespace, name)] = text

    # ---------------------------------------------------------------- direct object API (any thread)

    def create_object(self, resource: str | ResourceSpec, body: Mapping[str, Any],
                      namespace: str | None = None) -> dict[str, Any]:
        spec = self.spec(resource)
        namespace = namespace or body.get("metadata", {}).get("namespace")
        with self._state_lock:
            return self._op_create(spec, namespace if spec.namespaced else None, body)

    def get_object(self, resource: str | ResourceSpec, namespace: str | None,
                   name: str) -> dict[str, Any] | None:
        with self._state_lock:
            spec = self.spec(resource)
            current = self._current(spec, namespace, name)
            return copy.deepcopy(current) if current is not None else None

    def list_objects(self, resource: str | ResourceSpec, namespace: str | None = None, *,
                     label_selector: str | None = None) -> list[dict[str, Any]]:
        with self._state_lock:
            items = self._select(self.spec(resource), namespace, label_matcher(label_selector),
                                 field_matcher(None))
            return copy.deepcopy(items)

    def patch_object(self, resource: str | ResourceSpec, namespace: str | None, name: str,
                     patch: Any, *, subresource: str | None = None,
                     content_type: str = MERGE_PATCH) -> dict[str, Any]:
        with self._state_lock:
            return self._op_patch(self.spec(resource), namespace, name, patch, content_type, subresource)

    def replace_object(self, resource: str | ResourceSpec, namespace: str | None, name: str,
                       body: Mapping[str, Any], *, subresource: str | None = None) -> dict[str, Any]:
        with self._state_lock:
            return self._op_update(self.spec(resource), namespace, name, body, subresource)

    def delete_object(self, resource: str | ResourceSpec, namespace: str | None, name: str,
                      options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        with self._state_lock:
            return self._op_delete(self.spec(resource), namespace, name, options or {})

    # ---------------------------------------------------------------- storage primitives (locked)

    def _key(self, spec: ResourceSpec, namespace: str | None, name: str) -> tuple[Any, str | None, str]:
        return (spec.key, namespace if spec.namespaced else None, name)

    def _current(self, spec: ResourceSpec, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = self._key(spec, namespace, name)
        if key not in self._objects or self._objects[key].deleted:
            return None
        return self._objects[key].raw

    def _get_or_404(self, spec: ResourceSpec, namespace: str | None, name: str) -> dict[str, Any]:
        current = self._current(spec, namespace, name)
        if current is None:
            raise ApiError(404, f'{spec.qualified} "{name}" not found',
                           details={"name": name, "group": spec.group, "kind": spec.plural})
        return current

    def _live(self) -> Iterator[tuple[ResourceSpec, dict[str, Any]]]:
        for (res, _, _), obj in list(self._objects.items()):
            if not obj.deleted:
                spec = self._specs.get((res.group, res.plural))
                if spec is not None:
                    yield spec, obj.raw

    def _select(self, spec: ResourceSpec, namespace: str | None,
                labels: Callable[[Mapping[str, str]], bool],
                fields: Callable[[Mapping[str, Any]], bool]) -> list[dict[str, Any]]:
        items = [obj for s, obj in self._live() if s is spec
                 and (namespace is None or obj["metadata"].get("namespace") == namespace)
                 and labels(obj["metadata"].get("labels") or {}) and fields(obj)]
        return sorted(items, key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))

    def _commit(self, spec: ResourceSpec, event: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a new version (or a deletion) with a fresh resourceVersion; log it for watches."""
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        key = self._key(spec, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        if event == "DELETED":
            self._objects[key].delete()
        elif key in self._objects:
            self._objects[key].create(obj)  # appends a version, keeping the history
        else:
            self._objects[key] = obj
        self._log.append((self._rv, spec.group, spec.plural, obj["metadata"].get("namespace"), event, obj))
        self._log_rvs.append(self._rv)
        self._notify()
        return obj

    # ---------------------------------------------------------------- operations (locked)

    def _op_create(self, spec: ResourceSpec, namespace: str | None, body: Any,
                   dry_run: bool = False) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise ApiError(400, "the body of the request must be a JSON object")
        obj = copy.deepcopy(dict(body))
        meta = obj.setdefault("metadata", {})
        if obj.get("kind", spec.kind) != spec.kind:
            raise ApiError(400, f"the kind {obj['kind']!r} does not match the resource {spec.kind!r}")
        if obj.get("apiVersion") not in (None, spec.api_version) and \
                not kmock.resource(f"{obj['apiVersion']}/{spec.plural}") in self.resources:
            raise ApiError(400, f"the apiVersion {obj['apiVersion']!r} is not served for {spec.qualified}")
        obj.setdefault("apiVersion", spec.api_version)
        obj["kind"] = spec.kind
        if spec.namespaced:
            if namespace is None:
                raise ApiError(405, f"{spec.qualified} is namespaced: POST to a namespace's URL")
            if meta.get("namespace") not in (None, "", namespace):
                raise ApiError(400, "the namespace of the provided object does not match "
                                    "the namespace sent on the request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if meta.get("resourceVersion"):
            raise ApiError(500, "resourceVersion should not be set on objects to be created")
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiError(422, "metadata.name: Required value: name or generateName is required")
            for _ in range(100):
                meta["name"] = meta["generateName"] + "".join(random.choices(_SUFFIX_CHARS, k=5))
                if self._current(spec, namespace, meta["name"]) is None:
                    break
        name = meta["name"]
        if len(name) > 253 or not _NAME_RE.match(name):
            raise ApiError(422, f'{spec.kind} "{name}" is invalid: metadata.name: Invalid value: '
                                f'{name!r}: a lowercase RFC 1123 subdomain must consist of lower case '
                                f"alphanumeric characters, '-' or '.'",
                           details={"name": name, "group": spec.group, "kind": spec.kind})
        if self._current(spec, namespace, name) is not None:
            raise ApiError(409, f'{spec.qualified} "{name}" already exists', reason="AlreadyExists",
                           details={"name": name, "group": spec.group, "kind": spec.plural})
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            meta.pop(field, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        if spec.status:
            obj.pop("status", None)
        if dry_run:
            meta["resourceVersion"] = str(self._rv)
            return obj
        return self._commit(spec, "ADDED", obj)

    def _op_update(self, spec: ResourceSpec, namespace: str | None, name: str, body: Any,
                   subresource: str | None, dry_run: bool = False) -> dict[str, Any]:
        current = self._get_or_404(spec, namespace, name)
        if not isinstance(body, Mapping):
            raise ApiError(400, "the body of the request must be a JSON object")
        if body.get("metadata", {}).get("name") not in (None, name):
            raise ApiError(400, "the name of the object does not match the name on the URL")
        if spec.crd and not body.get("metadata", {}).get("resourceVersion"):
            raise ApiError(422, f'{spec.kind} "{name}" is invalid: metadata.resourceVersion: '
                                "Invalid value: 0x0: must be specified for an update")
        return self._write(spec, current, copy.deepcopy(dict(body)), subresource, dry_run)

    def _op_patch(self, spec: ResourceSpec, namespace: str | None, name: str, patch: Any,
                  content_type: str, subresource: str | None, dry_run: bool = False) -> dict[str, Any]:
        current = self._get_or_404(spec, namespace, name)
        content_type = content_type.split(";")[0].strip().lower()
        if content_type == JSON_PATCH:
            if not isinstance(patch, list):
                raise ApiError(400, "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
            try:
                candidate = jsonpatch.apply_patch(copy.deepcopy(current), patch)
            except jsonpatch.JsonPatchTestFailed as e:
                raise ApiError(422, f"the server rejected our request due to an error in our "
                                    f"request: testing value failed: {e}") from e
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
                raise ApiError(422, f"the server rejected our request due to an error in our "
                                    f"request: {e}") from e
        elif content_type == MERGE_PATCH or (content_type == STRATEGIC_MERGE_PATCH and not spec.crd):
            if not isinstance(patch, Mapping):
                raise ApiError(400, "a merge patch must be a JSON object")
            candidate = merge_patch(copy.deepcopy(current), patch)
        else:
            raise ApiError(415, f"the body of the request was in an unknown format - accepted media "
                                f"types include: {JSON_PATCH}, {MERGE_PATCH}"
                                + ("" if spec.crd else f", {STRATEGIC_MERGE_PATCH}"))
        if not isinstance(candidate, dict) or not isinstance(candidate.get("metadata"), dict):
            raise ApiError(422, "the patch made the object invalid")
        return self._write(spec, current, candidate, subresource, dry_run)

    def _write(self, spec: ResourceSpec, current: dict[str, Any], candidate: dict[str, Any],
               subresource: str | None, dry_run: bool) -> dict[str, Any]:
        """The common tail of update and patch: subresources, preconditions, generation, GC."""
        meta = current["metadata"]
        candidate_rv = (candidate.get("metadata") or {}).get("resourceVersion")
        if candidate_rv and candidate_rv != meta["resourceVersion"]:
            raise ApiError(409, f'Operation cannot be fulfilled on {spec.qualified} "{meta["name"]}": '
                                "the object has been modified; please apply your changes to the "
                                "latest version and try again",
                           details={"name": meta["name"], "group": spec.group, "kind": spec.plural})
        if subresource == "status":
            new = copy.deepcopy(current)
            new.pop("status", None)
            if candidate.get("status") is not None:
                new["status"] = candidate["status"]
        else:
            new = candidate
            written_status = new.pop("status", None)  # without the subresource, status is data
            if spec.status and "status" in current:
                new["status"] = copy.deepcopy(current["status"])
            elif not spec.status and written_status is not None:
                new["status"] = written_status
            new_meta = new.setdefault("metadata", {})
            if not isinstance(new_meta, dict):
                raise ApiError(422, "metadata must be an object")
            for field in ("name", "namespace", "uid", "creationTimestamp", "generation",
                          "deletionTimestamp", "deletionGracePeriodSeconds"):
                new_meta.pop(field, None)
                if field in meta:
                    new_meta[field] = meta[field]
        new["apiVersion"], new["kind"] = current["apiVersion"], current["kind"]
        new["metadata"]["resourceVersion"] = meta["resourceVersion"]
        if new == current:
            return copy.deepcopy(current)  # a no-op write: no new resourceVersion, no event
        if _spec_part(new) != _spec_part(current):
            new["metadata"]["generation"] = meta.get("generation", 1) + 1
        if meta.get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            if dry_run:
                return new
            self._commit(spec, "MODIFIED", new)
            return self._remove(spec, new)
        if dry_run:
            return new
        return self._commit(spec, "MODIFIED", new)

    def _op_delete(self, spec: ResourceSpec, namespace: str | None, name: str,
                   options: Mapping[str, Any], dry_run: bool = False) -> dict[str, Any]:
        current = self._get_or_404(spec, namespace, name)
        meta = current["metadata"]
        preconditions = options.get("preconditions") or {}
        for field in ("uid", "resourceVersion"):
            if preconditions.get(field) and preconditions[field] != meta.get(field):
                raise ApiError(409, f'Operation cannot be fulfilled on {spec.qualified} "{name}": '
                                    f"Precondition failed: {field} in precondition: "
                                    f"{preconditions[field]}, {field} in object meta: {meta.get(field)}")
        if dry_run:
            return copy.deepcopy(current)
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return copy.deepcopy(current)
            new = copy.deepcopy(current)
            new["metadata"].update(deletionTimestamp=_now(), deletionGracePeriodSeconds=0)
            return self._commit(spec, "MODIFIED", new)
        return self._remove(spec, copy.deepcopy(current), options.get("propagationPolicy"))

    def _remove(self, spec: ResourceSpec, obj: dict[str, Any],
                propagation: str | None = None) -> dict[str, Any]:
        """Really delete an object, then collect its garbage (owned objects, namespace content)."""
        final = self._commit(spec, "DELETED", copy.deepcopy(obj))
        uid = final["metadata"]["uid"]
        for dep_spec, dep in list(self._live()):
            dep_meta = dep["metadata"]
            if spec.key == kmock.resource("v1/namespaces") and dep_meta.get("namespace") == final["metadata"]["name"]:
                self._delete_quietly(dep_spec, dep)
                continue
            refs = dep_meta.get("ownerReferences") or []
            if not any(ref.get("uid") == uid for ref in refs):
                continue
            if propagation == "Orphan":
                orphan = copy.deepcopy(dep)
                orphan["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                self._commit(dep_spec, "MODIFIED", orphan)
            else:
                live_uids = {o["metadata"]["uid"] for _, o in self._live()}
                if not any(ref.get("uid") in live_uids for ref in refs):
                    self._delete_quietly(dep_spec, dep)
        return final

    def _delete_quietly(self, spec: ResourceSpec, obj: dict[str, Any]) -> None:
        with contextlib.suppress(ApiError):  # already gone via another path of the cascade
            self._op_delete(spec, obj["metadata"].get("namespace"), obj["metadata"]["name"], {})

    # ---------------------------------------------------------------- watch support

    def _notify(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        if self._wake_event is not None:
            event, self._wake_event = self._wake_event, asyncio.Event()
            event.set()

    # ---------------------------------------------------------------- HTTP

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """Serve resource URLs here; leave discovery to kmock (its path parser fails on some URLs)."""
        body = await raw.read()
        method, params = raw.method.upper(), dict(raw.query)
        target = _parse_target(raw.path)
        record: CallRecord | None = None
        if target is not None:
            call = ApiCall(_verb(method, target, params), target.group, target.plural,
                           target.subresource, target.namespace)
            record = CallRecord(call, method, raw.path_qs, target.name, raw.headers.get("User-Agent", ""))
            self.calls.append(call)
            self.call_records.append(record)
        else:
            self.nonresource_calls.append((method, raw.path))
        with self._state_lock:
            fault = next((f for f in self.faults if f.matches(method, raw.path_qs)), None)
            if fault is not None:
                fault.hits += 1
        try:
            if fault is not None:
                raise ApiError(fault.status, fault.message)
            if target is None:
                return await super().__call__(raw)
            response = await self._dispatch(raw, method, params, target, body)
        except ApiError as e:
            response = aiohttp.web.json_response(e.status(), status=e.code)
        except Exception as e:  # a bug here: answer as the API server would, with a 500 Status
            response = aiohttp.web.json_response(ApiError(500, repr(e)).status(), status=500)
        if record is not None:
            record.status = response.status
        return response

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        # Skip KubernetesEmulator's object tracking: only non-resource URLs get here.
        return await kmock.RawHandler._handle(self, request)

    async def _dispatch(self, raw: aiohttp.web.BaseRequest, method: str, params: dict[str, str],
                        target: _Target, body: bytes) -> aiohttp.web.StreamResponse:
        with self._state_lock:
            spec = self._lookup(target.group, target.version, target.plural)
        if spec is None or (target.namespace is not None and not spec.namespaced):
            raise ApiError(404, "the server could not find the requested resource")
        sub, name, namespace = target.subresource, target.name, target.namespace
        if sub == "log" and spec.key == kmock.resource("v1/pods") and method == "GET" and name:
            with self._state_lock:
                self._get_or_404(spec, namespace, name)
            return aiohttp.web.Response(text=self.pod_logs.get((namespace or "", name), ""))
        if sub is not None and not (sub == "status" and spec.status):
            raise ApiError(404, f"the server could not find the requested resource ({sub})")
        dry_run = params.get("dryRun") == "All"
        data: Any = None
        if method in ("POST", "PUT", "PATCH") or (method == "DELETE" and body):
            try:
                data = json.loads(body or b"null")
            except ValueError as e:
                raise ApiError(400, f"the body of the request is not valid JSON: {e}") from e

        if method == "GET" and params.get("watch", "").lower() in ("true", "1"):
            return await self._serve_watch(raw, spec, target, params)
        with self._state_lock:
            if method == "GET" and name:
                result, code = copy.deepcopy(self._get_or_404(spec, namespace, name)), 200
            elif method == "GET":
                items = self._select(spec, namespace, label_matcher(params.get("labelSelector")),
                                     field_matcher(params.get("fieldSelector")))
                result, code = {"apiVersion": spec.api_version, "kind": spec.list_kind,
                                "metadata": {"resourceVersion": str(self._rv)}, "items": items}, 200
            elif method == "POST" and not name:
                result, code = self._op_create(spec, namespace, data, dry_run), 201
            elif method == "PUT" and name:
                result, code = self._op_update(spec, namespace, name, data, sub, dry_run), 200
            elif method == "PATCH" and name:
                content_type = raw.headers.get("Content-Type", "")
                result, code = self._op_patch(spec, namespace, name, data, content_type, sub, dry_run), 200
            elif method == "DELETE" and name:
                options = dict(data or {}, **({"propagationPolicy": params["propagationPolicy"]}
                                              if "propagationPolicy" in params else {}))
                result, code = self._op_delete(spec, namespace, name, options, dry_run), 200
            elif method == "DELETE":
                matched = self._select(spec, namespace, label_matcher(params.get("labelSelector")),
                                       field_matcher(params.get("fieldSelector")))
                for obj in matched:
                    self._delete_quietly(spec, obj)
                result, code = {"apiVersion": spec.api_version, "kind": spec.list_kind,
                                "metadata": {"resourceVersion": str(self._rv)}, "items": matched}, 200
            else:
                raise ApiError(405, f"{method} is not supported on this URL")
            text = json.dumps(result)
        return aiohttp.web.Response(text=text, status=code, content_type="application/json")

    async def _serve_watch(self, raw: aiohttp.web.BaseRequest, spec: ResourceSpec,
                           target: _Target, params: dict[str, str]) -> aiohttp.web.StreamResponse:
        labels = label_matcher(params.get("labelSelector"))
        fields = field_matcher(params.get("fieldSelector"))
        if target.name:
            by_name = field_matcher(f"metadata.name={target.name}")
            fields = lambda obj, f=fields: f(obj) and by_name(obj)  # noqa: E731
        since, gone = params.get("resourceVersion") or "", False
        initial_events = params.get("sendInitialEvents", "").lower() == "true"
        timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        with self._state_lock:
            initial: list[dict[str, Any]] = []
            if since in ("", "0") or initial_events:
                initial = copy.deepcopy(self._select(spec, target.namespace, labels, fields))
                cursor = len(self._log)
            else:
                try:
                    since_rv = int(since)
                except ValueError:
                    raise ApiError(400, f"invalid resource version: {since!r}") from None
                gone = since_rv < self._compacted_rv
                cursor = bisect.bisect_right(self._log_rvs, since_rv)
            watch = _Watch(spec.group, spec.plural, target.namespace)
            self._watches.add(watch)

        response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        try:
            await response.prepare(raw)
            if gone:
                error = ApiError(410, f"too old resource version: {since} ({self._compacted_rv})",
                                 reason="Expired")
                await response.write(json.dumps({"type": "ERROR", "object": error.status()}).encode() + b"\n")
                return response
            for obj in initial:
                await response.write(json.dumps({"type": "ADDED", "object": obj}).encode() + b"\n")
            if initial_events:
                bookmark = {"apiVersion": spec.api_version, "kind": spec.kind, "metadata": {
                    "resourceVersion": str(self._rv),
                    "annotations": {"k8s.io/initial-events-end": "true"}}}
                await response.write(json.dumps({"type": "BOOKMARK", "object": bookmark}).encode() + b"\n")
            while not watch.dropped and not self._closing:
                wake = self._wake_event
                assert wake is not None
                with self._state_lock:
                    entries, cursor = self._log[cursor:], len(self._log)
                for _, group, plural, namespace, event, obj in entries:
                    if (group, plural) != (spec.group, spec.plural):
                        continue
                    if target.namespace is not None and namespace != target.namespace:
                        continue
                    if labels(obj["metadata"].get("labels") or {}) and fields(obj):
                        await response.write(json.dumps({"type": event, "object": obj}).encode() + b"\n")
                if watch.dropped or self._closing:
                    break
                now = asyncio.get_running_loop().time()
                if deadline is not None and now >= deadline:
                    break
                wait = 1.0 if deadline is None else min(1.0, deadline - now)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=wait)
                if raw.transport is None or raw.transport.is_closing():
                    break
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass  # the client went away
        finally:
            with self._state_lock:
                self._watches.discard(watch)
        with contextlib.suppress(ConnectionError, aiohttp.ClientConnectionResetError, RuntimeError):
            await response.write_eof()
        return response
