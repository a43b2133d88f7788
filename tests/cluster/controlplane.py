"""A real Kubernetes control plane for the tests: etcd, kube-apiserver and kube-controller-manager.

The binaries are built from Go modules by ``build.sh`` (versions pinned in ``go/*/go.mod``, cached
by version outside the checkout). :class:`ControlPlane` starts them on 127.0.0.1 the way
controller-runtime's envtest does, with what it generates itself: a CA and the API server's serving
certificate (openssl), a service-account signing key (TokenRequest works), a static admin token
(``system:masters``) and an audit log of every request (who called what, and the answer).

- authorization is RBAC: a client holding a ServiceAccount token can do only what it is granted;
- the controller manager runs the garbage collector (ownerReferences), the namespace controller,
  the service-account controllers and the Job controller;
- without a node (the operator tests), pods are stored, not run; ``with_node=True`` adds what a
  kubelet needs (the Node authorizer, client certificates both ways, the controllers that run
  pods), and :mod:`node` starts the node itself.

Run by hand (``make cluster KUBECONFIG=FILE``)::

    python tests/cluster/controlplane.py --kubeconfig FILE [--no-node] [--no-images]

builds what is missing, starts everything (with the node and Volcano unless ``--no-node``; with the
nasop images built from this tree, loaded into the node's containerd and the chart installed
unless ``--no-images``), writes an admin kubeconfig to FILE and stays in the foreground until
Ctrl-C or SIGTERM, then stops what it started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import yaml

HERE = pathlib.Path(__file__).resolve().parent
ADMIN = "nasop-test-admin"
#: Service and pod addresses are never routed here (no kube-proxy, no pod network), but keep them
#: off the private ranges all the same (RFC 2544 benchmarking range).
SERVICE_RANGE = "198.18.0.0/24"
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}


def read_sysctls(keys: Iterable[str]) -> dict[str, str]:
    """The machine's values of these kernel settings (keys as paths under /proc/sys); the test
    tooling (Docker engine, node) checks them before and after, as it must never change them."""
    values = {}
    for key in keys:
        with contextlib.suppress(OSError):
            values[key] = pathlib.Path("/proc/sys", key).read_text().strip()
    return values


def build() -> pathlib.Path:
    """Build (once per version) and return the folder holding etcd, kube-apiserver, kcm."""
    out = subprocess.run(
        ["bash", str(HERE / "build.sh")], check=True, text=True, stdout=subprocess.PIPE
    ).stdout
    return pathlib.Path(out.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(folder: pathlib.Path, subject: str) -> None:
    """``ca.key``/``ca.crt`` in ``folder``: a self-signed CA for one test cluster."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "30",
        "-subj",
        subject,
        "-keyout",
        str(folder / "ca.key"),
        "-out",
        str(folder / "ca.crt"),
    )


def sign(folder: pathlib.Path, name: str, subject: str, extensions: str) -> None:
    """``name.crt``/``name.key`` for ``subject`` with these X.509 ``extensions``, signed by the
    CA in ``folder``."""
    ext, csr, key = folder / f"{name}.ext", folder / f"{name}.csr", folder / f"{name}.key"
    ext.write_text(extensions)
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        subject,
        "-keyout",
        str(key),
        "-out",
        str(csr),
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(folder / "ca.crt"),
        "-CAkey",
        str(folder / "ca.key"),
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        str(ext),
        "-out",
        str(folder / f"{name}.crt"),
    )


def make_certs(folder: pathlib.Path) -> None:
    """A CA, the API server's certificate for 127.0.0.1/localhost, a service-account key pair."""
    make_ca(folder, "/CN=nasop-test-ca")
    sign(
        folder,
        "server",
        "/CN=kube-apiserver",
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
        "extendedKeyUsage=serverAuth\n",
    )
    _openssl("genrsa", "-out", str(folder / "sa.key"), "2048")
    _openssl("rsa", "-in", str(folder / "sa.key"), "-pubout", "-out", str(folder / "sa.pub"))
    # the API server's identity towards kubelets (pods/log), and the node's towards the API server
    client_certificate(
        folder, "kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client"
    )
    client_certificate(folder, "node", "/O=system:nodes/CN=system:node:localhost")


def client_certificate(folder: pathlib.Path, name: str, subject: str) -> None:
    """``name.crt``/``name.key`` signed by the CA in ``folder``, for client authentication."""
    sign(folder, name, subject, "extendedKeyUsage=clientAuth\n")


def poll(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Call ``check`` until it returns something truthy (returned); TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {timeout:.0f}s")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen[Any], grace: float) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; reaped either way."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kubeconfig(
    server: str, token: str, ca_file: str | None, namespace: str = "default", user: str = "nasop"
) -> dict[str, Any]:
    """A kubeconfig for one token (the admin's, or a ServiceAccount's from TokenRequest)."""
    cluster: dict[str, Any] = {"server": server}
    if ca_file and server.startswith("https"):
        cluster["certificate-authority"] = ca_file
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": user,
        "clusters": [{"name": "nasop-test", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": user,
                "context": {"cluster": "nasop-test", "user": user, "namespace": namespace},
            }
        ],
    }


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager in ``workdir``; ``start()`` / ``stop()``."""

    def __init__(
        self, bin_dir: pathlib.Path, workdir: pathlib.Path, with_node: bool = False
    ) -> None:
        self.bin_dir = bin_dir
        self.with_node = with_node
        self.workdir = workdir
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.token = secrets.token_hex(16)
        self.ca_file = str(workdir / "pki" / "ca.crt")
        self.audit_log = workdir / "audit.log"
        self.admin_kubeconfig_path = workdir / "admin.kubeconfig"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.started_in: float | None = None
        self.installed: Any = None  # what before_controllers returned

    # ------------------------------------------------------------------ lifecycle

    def start(
        self,
        timeout: float = 180.0,
        before_controllers: Callable[[ControlPlane], Any] | None = None,
    ) -> ControlPlane:
        """Start everything; ``before_controllers(self)`` runs once the API server is ready and
        before the controller manager starts, so that its garbage collector starts out knowing
        CRDs installed there (it rediscovers resources only every 30 s)."""
        begin = time.monotonic()
        pki = self.workdir / "pki"
        make_certs(pki)
        (self.workdir / "tokens.csv").write_text(f'{self.token},{ADMIN},{ADMIN},"system:masters"\n')
        (self.workdir / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY))
        etcd_client, etcd_peer = free_port(), free_port()
        self._spawn(
            "etcd",
            [
                "--name=nasop-test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=nasop-test=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{etcd_client}",
                f"--secure-port={self.port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--tls-cert-file={pki / 'server.crt'}",
                f"--tls-private-key-file={pki / 'server.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={self.workdir / 'tokens.csv'}",
                "--anonymous-auth=false",
                f"--service-cluster-ip-range={SERVICE_RANGE}",
                "--allow-privileged=true",
                *self._node_args(pki),
                f"--service-account-issuer={self.url}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--audit-policy-file={self.workdir / 'audit-policy.yaml'}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-mode=batch",
                "--audit-log-batch-max-wait=0.2s",
                "--audit-log-format=json",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--endpoint-reconciler-type=none",
                "--v=0",
            ],
        )
        self._wait_ready(timeout)
        admin = self.admin_kubeconfig_path
        admin.write_text(yaml.safe_dump(self.admin_kubeconfig()))
        if before_controllers is not None:
            self.installed = before_controllers(self)
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={admin}",
                "--leader-elect=false",
                "--secure-port=0",
                f"--controllers={','.join(self._controllers())}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--concurrent-gc-syncs=5",
                "--v=0",
            ],
        )
        self._wait_default_serviceaccount(timeout - (time.monotonic() - begin))
        self.started_in = time.monotonic() - begin
        return self

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            stop_process(self.procs[name], 10)
        self.procs.clear()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ access

    def admin_kubeconfig(self, namespace: str = "default") -> dict[str, Any]:
        return kubeconfig(self.url, self.token, self.ca_file, namespace, user=ADMIN)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Any:
        """One API call as the admin (or ``token``); returns the decoded JSON answer.

        Raises :class:`ApiError` with the server's status and message on a non-2xx answer. A 429
        (a CRD's storage still initializing) is retried for a few seconds, as client-go does.
        """
        for attempt in range(50):
            try:
                return self._request(method, path, body, token, content_type, timeout)
            except ApiError as e:
                if e.code != 429 or attempt == 49:
                    raise
                time.sleep(0.1)
        raise AssertionError("unreachable")

    def request_text(self, path: str, timeout: float = 30.0) -> str:
        """A GET whose answer is text, not JSON (``pods/log``), as the admin."""
        req = urllib.request.Request(
            self.url + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(req, context=self.ssl_context(), timeout=timeout) as resp:
            return resp.read().decode(errors="replace")

    def _request(
        self,
        method: str,
        path: str,
        body: Any,
        token: str | None,
        content_type: str,
        timeout: float,
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {token or self.token}",
                "Content-Type": content_type,
                "Accept": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(req, context=self.ssl_context(), timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                status = json.loads(raw)
            except ValueError:
                status = {"message": raw.decode(errors="replace")}
            raise ApiError(e.code, status.get("message", ""), status) from None
        return json.loads(raw) if raw else None

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def audit_events(self) -> list[dict[str, Any]]:
        """Every request the API server has logged so far (batched: ~0.2 s behind)."""
        if not self.audit_log.exists():
            return []
        return [json.loads(line) for line in self.audit_log.read_text().splitlines() if line]

    # ------------------------------------------------------------------ internals

    def _controllers(self) -> list[str]:
        """The controller manager's controllers; with a node, also those that run its pods
        (Deployments for the operator, node lifecycle for the not-ready taint, volume binding)."""
        names = [
            "garbage-collector-controller",
            "namespace-controller",
            "serviceaccount-token-controller",
            "serviceaccount-controller",
            "root-ca-certificate-publisher-controller",
            "job-controller",
        ]
        if self.with_node:
            names += [
                "deployment-controller",
                "replicaset-controller",
                "node-lifecycle-controller",
                "persistentvolume-binder-controller",
                "pod-garbage-collector-controller",
                "endpointslice-controller",  # the cluster DNS answers from EndpointSlices
            ]
        return names

    def _node_args(self, pki: pathlib.Path) -> list[str]:
        """With a node: the Node authorizer and NodeRestriction for the kubelet's identity, and the
        API server's client certificate and address type for reaching the kubelet (``pods/log``).
        Without: no ServiceAccount admission, as envtest (pods are stored, not run)."""
        if not self.with_node:
            return ["--authorization-mode=RBAC", "--disable-admission-plugins=ServiceAccount"]
        return [
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={pki / 'kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'kubelet-client.key'}",
            "--kubelet-preferred-address-types=Hostname",
        ]

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - the process holds it
        self.procs[name] = subprocess.Popen(
            [str(self.bin_dir / name), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.workdir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def _wait_ready(self, timeout: float) -> None:
        def ready() -> bool:
            self._check_alive()
            with contextlib.suppress(OSError, ApiError, ValueError):
                req = urllib.request.Request(
                    self.url + "/readyz", headers={"Authorization": f"Bearer {self.token}"}
                )
                with urllib.request.urlopen(req, context=self.ssl_context(), timeout=5) as resp:
                    return resp.status == 200
            return False

        poll(ready, timeout, "kube-apiserver not ready")

    def _wait_default_serviceaccount(self, timeout: float) -> None:
        """The controller manager is working once it has made `default`'s ServiceAccount."""

        def made() -> bool:
            self._check_alive()
            with contextlib.suppress(ApiError):
                self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
                return True
            return False

        poll(made, max(timeout, 10), "kube-controller-manager made no default ServiceAccount")


class ApiError(Exception):
    """A non-2xx answer of the API server: its HTTP status and message."""

    def __init__(self, code: int, message: str, status: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status or {}


@contextlib.contextmanager
def running(
    workdir: pathlib.Path | None = None,
    before_controllers: Callable[[ControlPlane], Any] | None = None,
    with_node: bool = False,
) -> Iterator[ControlPlane]:
    """Build if needed, start, yield, stop (and remove a temporary workdir)."""
    bin_dir = build()
    owned = workdir is None
    folder = pathlib.Path(tempfile.mkdtemp(prefix="nasop-cluster-")) if owned else workdir
    assert folder is not None
    plane = ControlPlane(bin_dir, folder, with_node)
    try:
        yield plane.start(before_controllers=before_controllers)
    finally:
        plane.stop()
        if owned:
            shutil.rmtree(folder, ignore_errors=True)


TRAINER_IMAGE, OPERATOR_IMAGE = "nasop-trainer:0.1.0", "nasop-operator:0.1.0"


def _images(stack: contextlib.ExitStack) -> Any:
    """Debian's Docker engine (tests/images/engine.py) with both images built from this tree
    (Docker's cache makes a rebuild of an unchanged tree take seconds)."""
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "images"))
    import engine

    missing = engine.missing_tools()
    if missing:
        raise SystemExit(f"install {missing} (make test-deps), or run with --no-images")
    docker = stack.enter_context(engine.daemon())
    for which, tag in (("trainer", TRAINER_IMAGE), ("operator", OPERATOR_IMAGE)):
        seconds = engine.build(docker, which, tag)
        print(f"{tag}: built in {seconds:.0f} s", flush=True)
    return docker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True, help="write the admin kubeconfig here")
    parser.add_argument(
        "--no-node",
        action="store_true",
        help="the control plane only (no containerd, kubelet, Volcano)",
    )
    parser.add_argument(
        "--no-images",
        action="store_true",
        help="do not build and load the nasop images nor install the chart (node only)",
    )
    args = parser.parse_args(argv)
    stop = False

    def on_signal(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    path = pathlib.Path(args.kubeconfig)
    if path.exists() and (yaml.safe_load(path.read_text()) or {}).get("current-context") != ADMIN:
        parser.error(f"{path} exists and is not a kubeconfig this command wrote: name another file")
    import install

    import node

    with_node = not args.no_node
    with_images = with_node and not args.no_images
    begin = time.monotonic()
    with contextlib.ExitStack() as stack:
        building = stack.enter_context(contextlib.ExitStack())  # the Docker engine, until loaded
        docker = _images(building) if with_images else None
        before: Callable[[ControlPlane], None] | None = None
        if with_images:
            before = lambda p: install.install_operator(p, OPERATOR_IMAGE)  # noqa: E731 - one use
        elif with_node:
            before = lambda p: install.install_volcano_crds(p, everything=True)  # noqa: E731
        plane = stack.enter_context(running(before_controllers=before, with_node=with_node))
        kubelet = node.Node(plane, node.build(), plane.workdir / "node") if with_node else None
        if kubelet is not None:
            stack.callback(kubelet.stop)
            kubelet.start(
                timeout=600,
                before_kubelet=(
                    (lambda n: n.import_images(docker, [TRAINER_IMAGE, OPERATOR_IMAGE]))
                    if docker is not None
                    else None
                ),
            )
        building.close()  # the images are in containerd: the Docker engine is not needed now
        path.write_text(yaml.safe_dump(plane.admin_kubeconfig()))
        print(
            f"control plane up in {plane.started_in:.1f}s at {plane.url}; "
            f"admin kubeconfig: {path}\n  export KUBECONFIG={path.resolve()}",
            flush=True,
        )
        if kubelet is not None and docker is not None:
            print(
                f"node {node.NODE_NAME} Ready with Volcano, both images loaded and the chart "
                f"installed (operator in namespace nasop-system) {time.monotonic() - begin:.0f}s "
                "after the start. Then:\n"
                "  kubectl apply -n default -f examples/cluster/quick.yaml\n"
                "  kubectl get nasx -n default -w",
                flush=True,
            )
        elif kubelet is not None:
            print(
                f"node {node.NODE_NAME} Ready in {kubelet.ready_in:.1f}s with Volcano; images "
                f"(no registry): docker save IMAGE | ctr --address {kubelet.socket} -n k8s.io "
                "images import -",
                flush=True,
            )
        print("Ctrl-C stops it.", flush=True)
        while not stop:
            time.sleep(0.2)
            plane._check_alive()
            if kubelet is not None:
                kubelet.check_alive()
    print("cluster stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
