"""An HTTP proxy in front of the real API server that injects faults: the operator talks to it.

Everything is forwarded unchanged (the client's own token included, so RBAC is the server's),
watch streams chunk by chunk. What the tests can add, each a thing a real cluster does but not on
demand:

- :meth:`FaultProxy.inject`: answer the next matching request(s) with an error status (409, 500,
  ...)
  instead of forwarding it, as an overloaded or flaky API server or a lost race would;
- :meth:`FaultProxy.delay`: hold matching requests for some seconds before forwarding (slow
  answers);
- :meth:`FaultProxy.drop_watches` cuts the open watch streams of a resource (a load balancer's idle
  timeout, an API server restart), optionally after sending the ``ERROR 410 Gone`` event an API
  server sends when the watched resourceVersion has been compacted;
- :meth:`FaultProxy.set_pod_log`: pods are stored, not run (no kubelet yet), so the server cannot
  serve ``pods/log``; the proxy first forwards the request (the server still authorizes it: a 403
  stays a 403) and answers with the log the test recorded for that pod (a
  ``container.PodLog``, which honours the kubelet's ``timestamps``, ``sinceTime`` and
  ``limitBytes``).

It also records each call (method, path, status) and counts open watches, which tests use to wait
until kopf is watching.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import ssl
import threading
from collections.abc import Iterator

import aiohttp
import aiohttp.web
from container import PodLog

_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}
_POD_LOG = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")


@dataclasses.dataclass
class Fault:
    """An injected answer: ``status`` for the next ``times`` requests matching method and path."""

    method: str
    path: str
    status: int
    times: int = 1
    delay: float = 0.0
    hits: int = 0

    def matches(self, method: str, path_qs: str) -> bool:
        return self.hits < self.times and method == self.method and self.path in path_qs


@dataclasses.dataclass(frozen=True)
class Call:
    method: str
    path: str  # with the query string
    status: int


def watch_path_of(resource: str) -> str:
    """``'group/version/plural'`` or ``'v1/plural'`` -> the URL fragments a watch of it contains."""
    parts = resource.split("/")
    prefix = f"/api/{parts[0]}/" if len(parts) == 2 else f"/apis/{parts[0]}/{parts[1]}/"
    return prefix + "|" + parts[-1]


class FaultProxy:
    """Serves on ``http://127.0.0.1:<port>`` in its own thread; forwards to ``upstream``."""

    def __init__(self, upstream: str, ssl_context: ssl.SSLContext) -> None:
        self.upstream = upstream
        self.ssl_context = ssl_context
        self.url = ""
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self.pod_logs: dict[tuple[str, str], PodLog] = {}
        self._watches: dict[int, tuple[str, asyncio.Event, bool]] = {}  # id -> (path, cut, gone)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stopping: asyncio.Event | None = None

    # ------------------------------------------------------------------ test API

    def inject(self, method: str, path: str, status: int, times: int = 1) -> Fault:
        fault = Fault(method, path, status, times)
        with self._lock:
            self.faults.append(fault)
        return fault

    def delay(self, method: str, path: str, seconds: float, times: int = 1) -> Fault:
        fault = Fault(method, path, 0, times, delay=seconds)
        with self._lock:
            self.faults.append(fault)
        return fault

    def active_watches(self, resource: str) -> int:
        prefix, plural = watch_path_of(resource).split("|")
        with self._lock:
            return sum(
                1
                for path, _, _ in self._watches.values()
                if path.startswith(prefix) and f"/{plural}?" in path
            )

    def drop_watches(self, resource: str, gone: bool = False) -> int:
        """Cut every open watch of the resource; with ``gone``, send ERROR 410 first."""
        prefix, plural = watch_path_of(resource).split("|")
        cut = 0
        with self._lock:
            for key, (path, event, _) in list(self._watches.items()):
                if path.startswith(prefix) and f"/{plural}?" in path:
                    self._watches[key] = (path, event, gone)
                    assert self._loop is not None
                    self._loop.call_soon_threadsafe(event.set)
                    cut += 1
        return cut

    def set_pod_log(self, namespace: str, name: str, log: str | PodLog) -> None:
        """The pod's log from now on: a live PodLog (its lines as they come), or a text."""
        self.pod_logs[(namespace, name)] = log if isinstance(log, PodLog) else PodLog(log)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._started.wait(15):
            raise RuntimeError("the fault proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(15)

    @contextlib.contextmanager
    def running(self) -> Iterator[FaultProxy]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def _serve(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        connector = aiohttp.TCPConnector(ssl=self.ssl_context, limit=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False
        ) as session:
            self._session = session
            app = aiohttp.web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            runner = aiohttp.web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
            await runner.setup()
            site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]
            self.url = f"http://127.0.0.1:{port}"
            self._started.set()
            await self._stopping.wait()
            with self._lock:
                for _, event, _ in self._watches.values():
                    event.set()
            await runner.cleanup()

    # ------------------------------------------------------------------ forwarding

    def _take_fault(self, method: str, path_qs: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path_qs):
                    fault.hits += 1
                    return fault
        return None

    async def _handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        path_qs = request.path_qs
        fault = self._take_fault(request.method, path_qs)
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        elif fault is not None:
            self._record(request.method, path_qs, fault.status)
            return _status_response(fault.status, f"injected by the test proxy: {fault.status}")
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in _HOP_HEADERS | {"accept-encoding"}
        }
        # uncompressed: the answer is forwarded without its Content-Encoding (and the API server
        # gzips a large list, e.g. of CRDs once Kueue's are installed)
        headers["Accept-Encoding"] = "identity"
        body = await request.read()
        try:
            upstream = await self._session.request(
                request.method, self.upstream + path_qs, headers=headers, data=body or None
            )
        except aiohttp.ClientError as e:
            self._record(request.method, path_qs, 502)
            return _status_response(502, f"proxy: upstream unreachable: {e}")
        async with upstream:
            self._record(request.method, path_qs, upstream.status)
            log = _POD_LOG.match(request.path)
            if (
                log
                and request.method == "GET"
                and upstream.status not in (403, 404)  # refused, or the pod is gone
                and (log.group(1), log.group(2)) in self.pod_logs
            ):
                await upstream.read()
                body = self.pod_logs[(log.group(1), log.group(2))].render(request.query)
                return aiohttp.web.Response(body=body, content_type="text/plain")
            if "watch=true" in request.query_string.lower() or "watch=1" in request.query_string:
                return await self._stream_watch(request, upstream, path_qs)
            payload = await upstream.read()
            out_headers = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() not in _HOP_HEADERS | {"content-encoding"}
            }
            return aiohttp.web.Response(status=upstream.status, body=payload, headers=out_headers)

    async def _stream_watch(
        self, request: aiohttp.web.Request, upstream: aiohttp.ClientResponse, path_qs: str
    ) -> aiohttp.web.StreamResponse:
        response = aiohttp.web.StreamResponse(
            status=upstream.status,
            headers={"Content-Type": upstream.headers.get("Content-Type", "application/json")},
        )
        await response.prepare(request)
        cut = asyncio.Event()
        key = id(cut)
        with self._lock:
            self._watches[key] = (path_qs, cut, False)
        try:
            reader = asyncio.ensure_future(upstream.content.readany())
            cutter = asyncio.ensure_future(cut.wait())
            while True:
                done, _ = await asyncio.wait({reader, cutter}, return_when=asyncio.FIRST_COMPLETED)
                if cutter in done:
                    reader.cancel()
                    if self._watches[key][2]:
                        await response.write(
                            json.dumps(
                                {
                                    "type": "ERROR",
                                    "object": {
                                        "kind": "Status",
                                        "apiVersion": "v1",
                                        "status": "Failure",
                                        "reason": "Expired",
                                        "code": 410,
                                        "message": "too old resource version "
                                        "(cut by the test proxy)",
                                    },
                                }
                            ).encode()
                            + b"\n"
                        )
                    break
                chunk = reader.result()
                if not chunk:
                    cutter.cancel()
                    break
                await response.write(chunk)
                reader = asyncio.ensure_future(upstream.content.readany())
        except (ConnectionResetError, aiohttp.ClientError):
            pass
        finally:
            with self._lock:
                self._watches.pop(key, None)
        with contextlib.suppress(ConnectionResetError, aiohttp.ClientError):
            await response.write_eof()
        return response

    def _record(self, method: str, path_qs: str, status: int) -> None:
        with self._lock:
            self.calls.append(Call(method, path_qs, status))


def _status_response(code: int, message: str) -> aiohttp.web.Response:
    reasons = {
        409: "Conflict",
        410: "Gone",
        429: "TooManyRequests",
        500: "InternalError",
        502: "BadGateway",
        503: "ServiceUnavailable",
    }
    return aiohttp.web.json_response(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reasons.get(code, "Unknown"),
            "code": code,
        },
        status=code,
    )
