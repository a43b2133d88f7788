"""A real node for the test cluster: containerd and the kubelet, kube-scheduler, and Volcano.

- containerd is Debian's (its CRI plugin), with its own socket, config and state; its image store is
  cached outside the checkout (``~/.cache/nasop/node/containerd``) so that the images the tests
  built
  are imported once per image ID (``docker save | ctr -n k8s.io images import``: no registry).
- the kubelet is built from ``k8s.io/kubernetes`` at the control plane's release (``build.sh
  node``).
  Left to its defaults it writes six kernel settings (kernel.panic, vm.overcommit_memory, ...). So
  it
  runs, with containerd, in a mount namespace of its own (``unshare -m``) in which each of those
  ``/proc/sys`` files is bind-mounted from a plain file already holding the value the kubelet
  expects,
  and with ``protectKernelDefaults: true`` it only reads them. The machine's own values are checked
  before and after (:func:`sysctls`).
- pods get their network from Debian's CNI plugins: ``macvlan`` on the host's default interface with
  addresses from 100.64.0.0/24 (RFC 6598, not a private range) and no route out; no bridge, no
  forwarding, no NAT. Trial pods need no network; the operator runs with ``hostNetwork``.
- the cluster's DNS is CoreDNS, in a network namespace of its own on one more macvlan child
  (dns.py); the kubelet's ``clusterDNS`` points every pod at it.
- the node is named ``localhost`` and the kubelet listens on 127.0.0.1, so that the API server
  reaches
  it (``pods/log``) through the node's Hostname address on the loopback.
- kube-scheduler places ordinary pods (the operator's); Volcano's vc-scheduler and
  vc-controller-manager (built from ``volcano.sh/volcano`` at the pin in go/volcano/go.mod) run the
  Volcano jobs: PodGroups, pods, gang scheduling and job phases, as on a user's cluster.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterable
from typing import Any

import yaml
from controlplane import HERE, ControlPlane, free_port, poll, read_sysctls, stop_process
from dns import CLUSTER_DOMAIN, DNS_ADDRESS, ClusterDNS
from dns import build as dns_build

NODE_NAME = "localhost"
POD_RANGE = "100.64.0.0/24"
POD_RANGE_END = "100.64.0.250"  # the pods' addresses end here; dns.DNS_ADDRESS lies above
PAUSE_IMAGE = "nasop-pause:3.10"
CONTAINER_LOG_MAX_SIZE = "1Mi"  # the kubelet rotates a container log past this
CACHE = pathlib.Path(
    os.environ.get("NASOP_NODE_CACHE", pathlib.Path.home() / ".cache" / "nasop" / "node")
)
#: What the kubelet expects of the kernel (pkg/kubelet/cm/container_manager_linux.go,
#: setupKernelTunables); it reads them, from plain files, in its own mount namespace.
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
#: Kernel settings a node might write; the tests leave the machine's alone (checked before/after).
WATCHED_SYSCTLS = (
    *KUBELET_SYSCTLS,
    "net/ipv4/ip_forward",
    "net/ipv6/conf/all/forwarding",
    "net/ipv4/conf/all/route_localnet",
    "fs/inotify/max_user_instances",
)
TOOLS = (
    "containerd",
    "ctr",
    "runc",
    "unshare",
    "/usr/lib/cni/macvlan",
    "/usr/lib/cni/host-local",
    "/usr/lib/cni/loopback",
    "/usr/lib/cni/static",  # the cluster DNS's fixed address (dns.py)
    "gcc",
)


def sysctls() -> dict[str, str]:
    return read_sysctls(WATCHED_SYSCTLS)


def missing_tools() -> list[str]:
    return [
        tool
        for tool in TOOLS
        if (shutil.which(tool) if "/" not in tool else (tool if os.access(tool, os.X_OK) else None))
        is None
    ]


def build() -> pathlib.Path:
    """Build (once per version) and return the folder holding the kubelet, kube-scheduler,
    Volcano."""
    out = subprocess.run(
        ["bash", str(HERE / "build.sh"), "node"], check=True, text=True, stdout=subprocess.PIPE
    ).stdout
    return pathlib.Path(out.strip().splitlines()[-1])


def default_interface() -> str:
    for line in pathlib.Path("/proc/net/route").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == "00000000":
            return fields[0]
    raise RuntimeError("no default route: the pods' macvlan needs a parent interface")


def pause_source() -> pathlib.Path:
    """pause.c from the k8s.io/kubernetes module at the pinned release (the sandbox's process)."""
    out = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes"],
        check=True,
        capture_output=True,
        text=True,
        cwd=HERE / "go" / "kube",
        env={**os.environ, "GOFLAGS": "-mod=mod", "GOWORK": "off"},
    ).stdout.strip()
    if not out:
        subprocess.run(
            ["go", "mod", "download", "k8s.io/kubernetes"], check=True, cwd=HERE / "go" / "kube"
        )
        return pause_source()
    return pathlib.Path(out) / "build" / "pause" / "linux" / "pause.c"


def pause_archive(folder: pathlib.Path) -> pathlib.Path:
    """The sandbox image as an OCI archive (no Docker, no registry): Kubernetes' pause.c linked
    statically, one layer, run as 65535; ``ctr images import`` names it from the index."""
    binary = folder / "pause"
    subprocess.run(
        ["gcc", "-Os", "-static", "-s", "-o", str(binary), str(pause_source())],
        check=True,
        capture_output=True,
    )
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tar.gettarinfo(str(binary), arcname="pause")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = 0o755
        tar.addfile(info, binary.open("rb"))
    layer_ref = blob(layer.getvalue())
    config = blob(
        json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
                "rootfs": {"type": "layers", "diff_ids": [layer_ref["digest"]]},
            }
        ).encode()
    )
    manifest = blob(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_ref}],
            }
        ).encode()
    )
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **manifest,
                "annotations": {
                    "io.containerd.image.name": f"docker.io/library/{PAUSE_IMAGE}",
                    "org.opencontainers.image.ref.name": PAUSE_IMAGE.split(":")[1],
                },
            }
        ],
    }
    archive = folder / "pause.tar"
    with tarfile.open(archive, "w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        add("index.json", json.dumps(index).encode())
        for digest, data in blobs.items():
            add(f"blobs/sha256/{digest.split(':')[1]}", data)
    return archive


IMAGE_ID_LABEL = "nasop.dev/docker-image-id"  # on images imported from Docker


class Node:
    """containerd + kubelet (one mount namespace), kube-scheduler, vc-scheduler,
    vc-controller-manager."""

    def __init__(self, plane: ControlPlane, bin_dir: pathlib.Path, workdir: pathlib.Path) -> None:
        self.plane = plane
        self.bin_dir = bin_dir
        self.workdir = workdir
        self.containerd_root = CACHE / "containerd"
        self.socket = workdir / "containerd.sock"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ready_in: float | None = None
        self.dns: ClusterDNS | None = None

    # ------------------------------------------------------------------ images

    def ctr(
        self, *args: str, stdin: Any = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
            check=check,
            text=True,
            capture_output=True,
            stdin=stdin,
        )

    def import_images(self, docker: Any, names: Iterable[str]) -> None:
        """``docker save | ctr images import`` for each image containerd does not hold yet.

        containerd names an imported image by its manifest digest, never by Docker's image ID,
        so each import is labelled with that ID: an image rebuilt since is imported again."""
        held = self.ctr("images", "ls").stdout.splitlines()
        for name in names:
            image_id = docker("image", "inspect", "-f", "{{.Id}}", name).stdout.strip()
            ref, label = f"docker.io/library/{name}", f"{IMAGE_ID_LABEL}={image_id.split(':')[-1]}"
            if any(line.split()[:1] == [ref] and label in line for line in held):
                continue
            self.ctr("images", "rm", "--sync", ref, check=False)  # its layers become garbage
            save = subprocess.Popen(
                ["docker", "-H", docker.host, "save", name], stdout=subprocess.PIPE
            )
            self.ctr("images", "import", "--all-platforms", "--digests", "-", stdin=save.stdout)
            assert save.wait() == 0, f"docker save {name} failed"
            self.ctr("images", "label", ref, label)

    # ------------------------------------------------------------------ lifecycle

    def start(
        self, timeout: float = 120.0, before_kubelet: Callable[[Node], None] | None = None
    ) -> Node:
        """containerd first; then the sandbox image and ``before_kubelet(self)`` (import images
        there: a kubelet started earlier would run pods from an older image of the same tag);
        then the kubelet, the schedulers, Volcano; returns once the node is Ready. The cluster
        DNS (dns.py) starts first: the kubelet points every pod at it."""
        begin = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.containerd_root.mkdir(parents=True, exist_ok=True)
        self.dns = ClusterDNS(
            self.plane, dns_build(), self.workdir / "dns", default_interface()
        ).start()
        self._write_configs()
        self._spawn(
            "node",
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "bash",
                "-euc",
                self._namespace_script(),
            ],
        )
        poll(
            lambda: self.check_alive() or self.socket.exists(), timeout, "containerd did not start"
        )
        if f"docker.io/library/{PAUSE_IMAGE}" not in self.ctr("images", "ls", "-q").stdout:
            self.ctr("images", "import", str(pause_archive(self.workdir)))
        if before_kubelet is not None:
            before_kubelet(self)
        (self.workdir / "start-kubelet").touch()
        admin = str(self.plane.admin_kubeconfig_path)
        self._spawn(
            "kube-scheduler",
            [
                str(self.bin_dir / "kube-scheduler"),
                f"--kubeconfig={admin}",
                "--leader-elect=false",
                "--secure-port=0",
                "--v=0",
            ],
        )
        self._spawn(
            "vc-scheduler",
            [
                str(self.bin_dir / "vc-scheduler"),
                f"--kubeconfig={admin}",
                "--leader-elect=false",
                f"--listen-address=127.0.0.1:{free_port()}",
                f"--healthz-address=127.0.0.1:{free_port()}",
                "--cache-dumper=false",
                "--schedule-period=200ms",
                "--v=0",
            ],
        )
        self._spawn(
            "vc-controller-manager",
            [
                str(self.bin_dir / "vc-controller-manager"),
                f"--kubeconfig={admin}",
                "--leader-elect=false",
                f"--listen-address=127.0.0.1:{free_port()}",
                f"--healthz-address=127.0.0.1:{free_port()}",
                "--controllers=job-controller,pg-controller,queue-controller,gc-controller",
                "--v=0",
            ],
        )
        poll(self._ready, timeout, "the node did not become Ready", interval=0.5)
        self.ready_in = time.monotonic() - begin
        return self

    def stop(self) -> None:
        """Stop the kubelet, kill what containerd runs, stop the rest, remove the pods' cgroups."""
        for name in ("vc-controller-manager", "vc-scheduler", "kube-scheduler"):
            if name in self.procs:
                stop_process(self.procs.pop(name), 10)
        if self.dns is not None:
            self.dns.stop()
        node = self.procs.pop("node", None)
        if node is not None:
            stop_process(node, 15)  # the kubelet (the namespace's first process)
            self._kill_containers()
            pid_file = self.workdir / "containerd.pid"
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text()), 15)
                poll(
                    lambda: not pathlib.Path(f"/proc/{pid_file.read_text().strip()}").exists(),
                    15,
                    "containerd did not stop",
                )
            self._kill_shims()
        self._remove_cgroups()

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ internals

    def _write_configs(self) -> None:
        pki = pathlib.Path(self.plane.ca_file).parent
        w = self.workdir
        (w / "cni").mkdir(exist_ok=True)
        (w / "cni" / "10-nasop.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "0.4.0",
                    "name": "nasop-node",
                    "plugins": [
                        {
                            "type": "macvlan",
                            "master": default_interface(),
                            "mode": "bridge",
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": POD_RANGE, "rangeEnd": POD_RANGE_END}]],
                                "dataDir": str(w / "cni-ipam"),
                            },
                        }
                    ],
                }
            )
        )
        (w / "containerd.toml").write_text(f"""version = 2
root = "{self.containerd_root}"
state = "{w / "containerd-state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/library/{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{w / "cni"}"
""")
        (w / "kubelet.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1beta1",
                    "kind": "KubeletConfiguration",
                    "failCgroupV1": False,
                    "cgroupDriver": "cgroupfs",
                    "protectKernelDefaults": True,
                    "containerRuntimeEndpoint": f"unix://{self.socket}",
                    "failSwapOn": False,
                    "makeIPTablesUtilChains": False,
                    "oomScoreAdj": 0,
                    "maxOpenFiles": 20000,
                    "address": "127.0.0.1",
                    "port": free_port(),
                    "readOnlyPort": 0,
                    "healthzBindAddress": "127.0.0.1",
                    "healthzPort": free_port(),
                    "imageGCHighThresholdPercent": 100,
                    "imageGCLowThresholdPercent": 99,
                    "evictionHard": {
                        "nodefs.available": "0%",
                        "nodefs.inodesFree": "0%",
                        "imagefs.available": "0%",
                        "imagefs.inodesFree": "0%",
                    },
                    "authentication": {
                        "anonymous": {"enabled": False},
                        "webhook": {"enabled": True},
                        "x509": {"clientCAFile": str(pki / "ca.crt")},
                    },
                    "authorization": {"mode": "Webhook"},
                    "serializeImagePulls": False,
                    "podLogsDir": str(w / "pod-logs"),
                    # small and checked often, so that a trial printing megabytes has its log
                    # rotated within seconds (tests/node: lines rotated away are reported)
                    "containerLogMaxSize": CONTAINER_LOG_MAX_SIZE,
                    "containerLogMaxFiles": 2,
                    "containerLogMonitorInterval": "3s",  # the least the kubelet accepts
                    "registerNode": True,
                    "nodeStatusUpdateFrequency": "2s",
                    "syncFrequency": "5s",
                    "fileCheckFrequency": "5s",
                    "clusterDNS": [DNS_ADDRESS],
                    "clusterDomain": CLUSTER_DOMAIN,
                }
            )
        )
        (w / "kubelet.kubeconfig").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "node",
                    "clusters": [
                        {
                            "name": "nasop-test",
                            "cluster": {
                                "server": self.plane.url,
                                "certificate-authority": str(pki / "ca.crt"),
                            },
                        }
                    ],
                    "users": [
                        {
                            "name": "node",
                            "user": {
                                "client-certificate": str(pki / "node.crt"),
                                "client-key": str(pki / "node.key"),
                            },
                        }
                    ],
                    "contexts": [
                        {"name": "node", "context": {"cluster": "nasop-test", "user": "node"}}
                    ],
                }
            )
        )

    def _namespace_script(self) -> str:
        """Runs as the namespace's first process: bind the kernel settings, start containerd, wait
        for the go (``start-kubelet``), exec the kubelet (so that the Popen's pid is the
        kubelet's)."""
        w = self.workdir
        binds = []
        for key, value in KUBELET_SYSCTLS.items():
            plain = w / "sysctl" / key.replace("/", ".")
            plain.parent.mkdir(parents=True, exist_ok=True)
            plain.write_text(value + "\n")
            binds.append(f"mount --bind {shlex.quote(str(plain))} /proc/sys/{key}")
        q = shlex.quote
        return "\n".join(
            [
                "mount --make-rshared /",
                *binds,
                f"containerd --config {q(str(w / 'containerd.toml'))} "
                f"> {q(str(w / 'containerd.log'))} 2>&1 &",
                f"echo $! > {q(str(w / 'containerd.pid'))}",
                f"while [ ! -e {q(str(w / 'start-kubelet'))} ]; do sleep 0.1; done",
                f"exec {q(str(self.bin_dir / 'kubelet'))} --config={q(str(w / 'kubelet.yaml'))}"
                f" --kubeconfig={q(str(w / 'kubelet.kubeconfig'))} --hostname-override={NODE_NAME}"
                f" --root-dir={q(str(w / 'kubelet'))} --cert-dir={q(str(w / 'kubelet-pki'))} --v=1",
            ]
        )

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - the process holds it
        self.procs[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                log = "kubelet" if name == "node" else name
                tail = (self.workdir / f"{name}.log").read_text(errors="replace")[-4000:]
                raise RuntimeError(f"{log} exited with {proc.returncode}:\n{tail}")

    def _ready(self) -> bool:
        self.check_alive()
        with contextlib.suppress(Exception):
            node = self.plane.request("GET", f"/api/v1/nodes/{NODE_NAME}")
            conditions = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
            taints = [t["key"] for t in node["spec"].get("taints", [])]
            return conditions.get("Ready") == "True" and not taints
        return False

    def _kill_containers(self) -> None:
        if not self.socket.exists():
            return
        tasks = self.ctr("tasks", "ls", "-q", check=False).stdout.split()
        for task in tasks:
            self.ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False)
        for task in tasks:
            self.ctr("tasks", "delete", "--force", task, check=False)
        # and the containers with their snapshots: the containerd root is a cache kept across
        # runs, and what the next kubelet does not know of would stay on disk for good
        for container in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("containers", "delete", container, check=False)

    def _kill_shims(self) -> None:
        """containerd-shim-runc-v2 processes of this containerd (each is its own process group)."""
        for proc in pathlib.Path("/proc").iterdir():
            with contextlib.suppress(OSError, ValueError):
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                if b"containerd-shim" in argv[0] and str(self.socket).encode() in argv:
                    os.kill(int(proc.name), 9)

    def _remove_cgroups(self) -> None:
        """The kubelet's cgroups (kubepods) in every hierarchy, deepest first."""
        for root in pathlib.Path("/sys/fs/cgroup").glob("*/kubepods"):
            for folder in sorted(
                (p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
            ):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            with contextlib.suppress(OSError):
                root.rmdir()
