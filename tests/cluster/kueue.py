"""Kueue on the test control plane: its controller manager built from its Go module, its CRDs,
and its admission webhooks served on 127.0.0.1.

- :func:`build`: ``kueue.sh`` builds ``sigs.k8s.io/kueue/cmd/kueue`` at the release pinned in
  ``go/kueue/go.mod`` into the cluster cache (``kueue-<version>/kueue``);
- :func:`running`: installs Kueue's CRDs (from the module zip), starts the manager with the
  admin kubeconfig (chrooted, see :func:`_root`), and registers its webhooks for what nasop uses
  (Jobs and Kueue's own
  objects) by URL, ``https://127.0.0.1:<port>/<path>``, with a CA made here: Kueue's internal
  certificate management makes certificates for its in-cluster Service name, which an API server
  that reaches the webhook on 127.0.0.1 would reject, so it is turned off and the serving
  certificate is written into the manager's certificate folder. On exit the webhook
  configurations go first (a Job update must not call a stopped webhook), then the manager.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import pathlib
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import yaml
from controlplane import ApiError, ControlPlane, free_port, make_ca, poll, sign, stop_process
from install import apply, wait_established

HERE = pathlib.Path(__file__).resolve().parent
MODULE = "sigs.k8s.io/kueue"
#: The webhooks kept: Jobs and Kueue's own objects (the others serve integrations not enabled).
WEBHOOK_PATHS = ("-batch-v1-job", "-kueue-x-k8s-io-")
WEBHOOK_NAMES = {
    "MutatingWebhookConfiguration": "nasop-tests-kueue-mutating",
    "ValidatingWebhookConfiguration": "nasop-tests-kueue-validating",
}


def _go_env() -> dict[str, str]:
    return {**os.environ, "GOFLAGS": "-mod=mod", "GOWORK": "off"}


def version() -> str:
    return subprocess.run(
        ["go", "list", "-m", "-f", "{{.Version}}", MODULE],
        cwd=HERE / "go" / "kueue",
        check=True,
        capture_output=True,
        text=True,
        env=_go_env(),
    ).stdout.strip()


def build() -> pathlib.Path:
    """The Kueue binary (built on the first call; minutes on two cores)."""
    out = subprocess.run(
        [str(HERE / "kueue.sh")], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return pathlib.Path(out.strip().splitlines()[-1]) / "kueue"


def module_dir() -> pathlib.Path:
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{MODULE}@{version()}"],
        check=True,
        capture_output=True,
        text=True,
        env=_go_env(),
    ).stdout
    return pathlib.Path(json.loads(out)["Dir"])


def install_crds(plane: ControlPlane, source: pathlib.Path) -> list[str]:
    names = []
    for path in sorted((source / "config" / "components" / "crd" / "bases").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        apply(plane, crd)
        names.append(crd["metadata"]["name"])
    for name in names:
        wait_established(plane, name)
    return names


def make_serving_cert(folder: pathlib.Path) -> str:
    """A CA and the webhook server's certificate for 127.0.0.1 in ``folder`` (tls.crt/tls.key,
    as controller-runtime reads them); returns the CA certificate (PEM)."""
    make_ca(folder, "/CN=nasop-test-kueue-ca")
    sign(
        folder,
        "tls",
        "/CN=kueue-webhook",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    return (folder / "ca.crt").read_text()


def webhook_configurations(source: pathlib.Path, port: int, ca_pem: str) -> list[dict[str, Any]]:
    """Kueue's webhook manifests, kept to :data:`WEBHOOK_PATHS`, each pointing at 127.0.0.1."""
    import base64

    bundle = base64.b64encode(ca_pem.encode()).decode()
    out = []
    manifests = (source / "config" / "components" / "webhook" / "manifests.yaml").read_text()
    for doc in yaml.safe_load_all(manifests):
        if not doc or doc.get("kind") not in WEBHOOK_NAMES:
            continue
        obj = copy.deepcopy(doc)
        obj["metadata"] = {"name": WEBHOOK_NAMES[doc["kind"]]}
        hooks = []
        for hook in obj.get("webhooks") or []:
            path = hook["clientConfig"]["service"]["path"]
            if any(part in path for part in WEBHOOK_PATHS):
                hook["clientConfig"] = {
                    "url": f"https://127.0.0.1:{port}{path}",
                    "caBundle": bundle,
                }
                hooks.append(hook)
        obj["webhooks"] = hooks
        out.append(obj)
    return out


def _root(
    workdir: pathlib.Path,
    binary: pathlib.Path,
    plane: ControlPlane,
    certs: pathlib.Path,
    ports: dict[str, int],
) -> pathlib.Path:
    """The folder the manager runs chrooted in: with internal certificate management off, Kueue
    reads a metrics certificate from the fixed path /etc/kueue/metrics/certs (a mounted Secret
    in its Deployment), so it gets its own root with that path, its config, kubeconfig and
    binary (static: CGO off) and nothing else."""
    root = workdir / "kueue-root"
    for folder in ("etc/kueue/metrics/certs", "certs", "tmp"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for name in ("tls.crt", "tls.key"):
        shutil.copy(certs / name, root / "certs" / name)
        shutil.copy(certs / name, root / "etc" / "kueue" / "metrics" / "certs" / name)
    try:
        os.link(binary, root / "kueue")
    except OSError:  # another file system
        shutil.copy2(binary, root / "kueue")
    shutil.copy(plane.ca_file, root / "ca.crt")
    admin = plane.admin_kubeconfig()
    admin["clusters"][0]["cluster"]["certificate-authority"] = "/ca.crt"
    (root / "kubeconfig").write_text(yaml.safe_dump(admin))
    _config(root, ports)
    return root


def _config(root: pathlib.Path, ports: dict[str, int]) -> pathlib.Path:
    path = root / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "config.kueue.x-k8s.io/v1beta2",
                "kind": "Configuration",
                "namespace": "kueue-system",
                "health": {"healthProbeBindAddress": f"127.0.0.1:{ports['health']}"},
                "metrics": {"bindAddress": "0"},
                "webhook": {"port": ports["webhook"], "host": "127.0.0.1", "certDir": "/certs"},
                "leaderElection": {"leaderElect": False},
                "internalCertManagement": {"enable": False},
                "integrations": {"frameworks": ["batch/job"]},
            }
        )
    )
    return path


def _ready(health_port: int) -> bool:
    url = f"http://127.0.0.1:{health_port}/readyz"
    with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status == 200
    return False


def _webhook_up(port: int, ca_file: pathlib.Path) -> bool:
    """The webhook server answers TLS with our certificate (any HTTP status will do)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    try:
        urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=context, timeout=5)
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False
    return True


@contextlib.contextmanager
def running(
    plane: ControlPlane, workdir: pathlib.Path, timeout: float = 120
) -> Iterator[subprocess.Popen[Any]]:
    """Kueue's CRDs installed and its manager running against ``plane``, webhooks registered."""
    binary = build()
    source = module_dir()
    install_crds(plane, source)
    apply(plane, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kueue-system"}})
    workdir.mkdir(parents=True, exist_ok=True)
    ca_pem = make_serving_cert(workdir / "kueue-certs")
    ports = {"health": free_port(), "webhook": free_port()}
    log_path = workdir / "kueue.log"
    root = _root(workdir, binary, plane, workdir / "kueue-certs", ports)
    jail = (
        ["chroot", str(root)]
        if os.geteuid() == 0
        else ["unshare", "--user", "--map-root-user", f"--root={root}"]
    )
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                *jail,
                "/kueue",
                "--config=/config.yaml",
                "--kubeconfig=/kubeconfig",
                # the visibility API is an aggregated API server of its own: not needed here
                "--feature-gates=VisibilityOnDemand=false",
                "--zap-log-level=info",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    hooks: list[dict[str, Any]] = []
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"kueue exited with {proc.returncode}:\n"
                    f"{log_path.read_text(errors='replace')[-4000:]}"
                )
            return _ready(ports["health"]) and _webhook_up(
                ports["webhook"], workdir / "kueue-certs" / "ca.crt"
            )

        poll(up, timeout, f"kueue not ready (log: {log_path})", interval=0.3)
        hooks = webhook_configurations(source, ports["webhook"], ca_pem)
        for hook in hooks:
            kind = hook["kind"].lower() + "s"
            plane.request("POST", f"/apis/admissionregistration.k8s.io/v1/{kind}", hook)
        yield proc
    finally:
        for hook in hooks:
            kind = hook["kind"].lower() + "s"
            with contextlib.suppress(ApiError):
                plane.request(
                    "DELETE",
                    f"/apis/admissionregistration.k8s.io/v1/{kind}/{hook['metadata']['name']}",
                )
        stop_process(proc, 10)


__all__ = [
    "build",
    "install_crds",
    "make_serving_cert",
    "module_dir",
    "running",
    "version",
    "webhook_configurations",
]
