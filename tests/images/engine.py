"""Build and run nasop's images with Debian's Docker engine, with no registry and no bridge.

- :func:`daemon`: a ``dockerd`` of our own (its socket, data root and exec root; ``--bridge=none
  --iptables=false --ip-masq=false``: containers get ``--network host`` or ``none`` only). Its data
  root is cached outside the checkout (``~/.cache/nasop/docker``), so built layers survive runs.
- :func:`base_image`: no registry serves ``python:*-slim``, so the base is made here:
  ``debootstrap --variant=minbase bookworm`` with Debian's Python 3.11, then ``docker import``.
- :func:`wheelhouse`: the build cannot reach PyPI itself (the egress proxy's CA is not in the
  image), so the host's pip downloads every wheel an image needs (torch's CPU wheel from
  ../shared/wheels when that folder exists) and a local HTTP server on 127.0.0.1 serves them; the
  Dockerfiles take ``PIP_NO_INDEX``/``PIP_FIND_LINKS`` as build arguments.
- :func:`build`: ``docker build`` of Dockerfile.operator or Dockerfile.trainer with those
  arguments and ``BASE_IMAGE``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

# tests/cluster is on sys.path (tests/conftest.py)
from controlplane import read_sysctls, stop_process

REPO = pathlib.Path(__file__).resolve().parents[2]
CACHE = pathlib.Path(os.environ.get("NASOP_IMAGE_CACHE", pathlib.Path.home() / ".cache" / "nasop"))
BASE = "nasop-base:bookworm-py311"
MIRROR = "http://deb.debian.org/debian"
SHARED_WHEELS = REPO.parent / "shared" / "wheels"


#: Kernel settings a container engine might write; the tests must leave the machine's alone.
SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/ipv6/conf/all/forwarding",
    "net/ipv4/conf/all/route_localnet",
    "kernel/panic",
    "kernel/panic_on_oops",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)


def sysctls() -> dict[str, str]:
    return read_sysctls(SYSCTLS)


def missing_tools() -> list[str]:
    return [tool for tool in ("dockerd", "docker", "debootstrap") if shutil.which(tool) is None]


class Docker:
    """The ``docker`` CLI bound to our daemon's socket."""

    def __init__(self, socket: pathlib.Path) -> None:
        self.host = f"unix://{socket}"

    def __call__(
        self,
        *args: str,
        check: bool = True,
        capture: bool = True,
        timeout: float | None = None,
        stdin: bytes | None = None,
    ) -> subprocess.CompletedProcess[str]:
        docker = shutil.which("docker", path="/usr/bin") or "docker"
        return subprocess.run(
            [docker, "-H", self.host, *args],
            check=check,
            text=stdin is None,
            capture_output=capture,
            timeout=timeout,
            input=stdin,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
        )

    def has_image(self, name: str) -> bool:
        return self("image", "inspect", name, check=False).returncode == 0


@contextlib.contextmanager
def daemon(timeout: float = 60) -> Iterator[Docker]:
    """Start dockerd, yield a client, stop it (and everything it started); fail if the machine's
    kernel settings changed meanwhile."""
    before = sysctls()
    run = pathlib.Path(tempfile.mkdtemp(prefix="nasop-docker-"))
    socket = run / "docker.sock"
    data = CACHE / "docker"
    data.mkdir(parents=True, exist_ok=True)
    log = open(run / "dockerd.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            "dockerd",
            f"--host=unix://{socket}",
            f"--data-root={data}",
            f"--exec-root={run / 'exec'}",
            f"--pidfile={run / 'dockerd.pid'}",
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            "--ip-forward=false",
            "--userland-proxy=false",
            "--containerd-namespace=nasop-tests",
            "--storage-driver=overlay2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    docker = Docker(socket)
    try:
        deadline = time.monotonic() + timeout
        while docker("version", check=False).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "dockerd did not start:\n"
                    + (run / "dockerd.log").read_text(errors="replace")[-3000:]
                )
            time.sleep(0.2)
        yield docker
    finally:
        stop_process(proc, 30)
        log.close()
        shutil.rmtree(run, ignore_errors=True)
    after = sysctls()
    assert after == before, f"the Docker engine changed kernel settings: {before} -> {after}"


def base_image(docker: Docker) -> str:
    """Debian bookworm minbase with Python 3.11 (venv, `python`), imported once."""
    if docker.has_image(BASE):
        return BASE
    with tempfile.TemporaryDirectory(prefix="nasop-rootfs-") as root:
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3,python3-venv,python-is-python3",
                "bookworm",
                root,
                MIRROR,
            ],
            check=True,
            capture_output=True,
        )
        shutil.rmtree(pathlib.Path(root, "var/cache/apt/archives"), ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        docker_bin = shutil.which("docker", path="/usr/bin") or "docker"
        subprocess.run(
            [docker_bin, "-H", docker.host, "import", "-", BASE],
            stdin=tar.stdout,
            check=True,
            capture_output=True,
        )
        tar.wait()
    return BASE


def wheelhouse(extra: str) -> pathlib.Path:
    """Every wheel `pip install .[extra]` needs in the image, downloaded by the host's pip once
    per (extra, pyproject.toml)."""
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:12]
    out = CACHE / "wheelhouse" / f"{extra}-{digest}"
    if (out / ".complete").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    links = ["--find-links", str(SHARED_WHEELS)] if SHARED_WHEELS.is_dir() else []
    pip = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--dest",
        str(out),
        "--only-binary=:all:",
        *links,
    ]
    subprocess.run([*pip, "torch==2.13.0", "pip", "setuptools>=68", "wheel"], check=True)
    # the project's own dependencies, resolved as the image's pip will (torch already there)
    subprocess.run([*pip, "--find-links", str(out), f"{REPO}[{extra}]"], check=True)
    (out / ".complete").write_text("")
    return out


def _stable_port(folder: pathlib.Path) -> int:
    """A port derived from the folder: the URL is a build argument, and Docker's cache keys every
    RUN on the build arguments' values, so a new port each build would rebuild every layer."""
    return 41000 + int(hashlib.sha256(str(folder).encode()).hexdigest(), 16) % 2000


@contextlib.contextmanager
def serving(folder: pathlib.Path) -> Iterator[str]:
    """A plain HTTP server on 127.0.0.1 whose directory listing is pip's `--find-links` page, on
    a stable port when it is free (else any: the build then misses Docker's cache)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", _stable_port(folder)), handler)
    except OSError:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_: object) -> None:
        pass


def build(docker: Docker, which: str, tag: str) -> float:
    """`docker build -f Dockerfile.<which>` on the local base, offline; returns seconds taken."""
    extra = {"operator": "operator", "trainer": "trainer"}[which]
    base = base_image(docker)
    with serving(wheelhouse(extra)) as url:
        start = time.monotonic()
        result = docker(
            "build",
            "--network",
            "host",
            "-f",
            str(REPO / f"Dockerfile.{which}"),
            "-t",
            tag,
            "--build-arg",
            f"BASE_IMAGE={base}",
            "--build-arg",
            "PIP_NO_INDEX=1",
            "--build-arg",
            f"PIP_FIND_LINKS={url}",
            str(REPO),
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"docker build {which} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return time.monotonic() - start


def image_size_mb(docker: Docker, tag: str) -> float:
    return int(docker("image", "inspect", "-f", "{{.Size}}", tag).stdout.strip()) / 1e6
