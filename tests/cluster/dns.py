"""The test cluster's DNS: CoreDNS (built from its Go module, ``build.sh dns``) with its
``kubernetes`` plugin, as a user's cluster runs it, so that pods find each other by name: a
Volcano job's ``<job>-<task>-0.<job>`` (its ``svc`` plugin's headless Service), an Indexed Job's
``<job>-0.<service>``.

Where it runs, and why: the pods sit on ``macvlan`` children of the machine's default interface
(node.py), which reach each other but not their parent's own addresses, so a CoreDNS on this
machine would be out of their reach. CoreDNS runs instead in a network namespace of its own
(``unshare --net``: nothing is added to the machine's) on one more macvlan child, made by the same
CNI plugin that makes the pods' (with a fixed address, ``DNS_ADDRESS``, which the pods' range
leaves out); the kubelet's ``clusterDNS`` names that address. CoreDNS reads the API server
through ``netns_relay.py``: a listener on 127.0.0.1 inside the namespace, connected to the API
server on this machine's 127.0.0.1 (the server's certificate names 127.0.0.1).
"""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import subprocess
import sys
from typing import Any

from controlplane import HERE, ControlPlane, poll, stop_process

DNS_ADDRESS = "100.64.0.253"  # in node.POD_RANGE, above the pods' own addresses
CLUSTER_DOMAIN = "cluster.local"
CNI_PATH = "/usr/lib/cni"


def build() -> pathlib.Path:
    """Build CoreDNS (once per version) and return the binary."""
    out = subprocess.run(
        ["bash", str(HERE / "build.sh"), "dns"], check=True, text=True, stdout=subprocess.PIPE
    ).stdout
    return pathlib.Path(out.strip().splitlines()[-1]) / "coredns"


class ClusterDNS:
    """CoreDNS in its own network namespace at ``DNS_ADDRESS``, and its relay to the API server."""

    def __init__(
        self, plane: ControlPlane, binary: pathlib.Path, workdir: pathlib.Path, interface: str
    ) -> None:
        self.plane = plane
        self.binary = binary
        self.workdir = workdir
        self.interface = interface
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def netns(self) -> str:
        return f"/proc/{self.procs['coredns'].pid}/ns/net"

    def start(self, timeout: float = 60.0) -> ClusterDNS:
        w = self.workdir
        w.mkdir(parents=True, exist_ok=True)
        self._write_configs()
        go = w / "start-coredns"
        # the namespace's first process waits for its network, then becomes CoreDNS (same pid)
        self._spawn(
            "coredns",
            [
                "unshare",
                "--net",
                "bash",
                "-euc",
                f"while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.05; done\n"
                f"exec {shlex.quote(str(self.binary))} -conf {shlex.quote(str(w / 'Corefile'))}",
            ],
        )
        # until `unshare` has made the namespace, its pid's is still this machine's: never
        # touch the network before it is a different one
        poll(lambda: self._alive() or self._own_namespace(), 10, "no namespace for CoreDNS")
        self._cni("loopback", {"cniVersion": "0.4.0", "name": "lo", "type": "loopback"}, "lo")
        self._cni(
            "macvlan",
            {
                "cniVersion": "0.4.0",
                "name": "nasop-dns",
                "type": "macvlan",
                "master": self.interface,
                "mode": "bridge",
                "ipam": {"type": "static", "addresses": [{"address": f"{DNS_ADDRESS}/24"}]},
            },
            "eth0",
        )
        api = f"127.0.0.1:{self.plane.port}"
        self._spawn("relay", [sys.executable, str(HERE / "netns_relay.py"), self.netns, api, api])
        poll(
            lambda: self._alive() or "relaying" in self._log("relay"),
            10,
            "the relay to the API server did not start",
        )
        go.touch()
        # CoreDNS prints its banner once the kubernetes plugin has synced (or given up after 5 s)
        poll(
            lambda: self._alive() or "CoreDNS-" in self._log("coredns"),
            timeout,
            "CoreDNS did not start",
            interval=0.2,
        )
        return self

    def stop(self) -> None:
        """CoreDNS (its namespace and the macvlan child in it go with it), then the relay."""
        for name in ("coredns", "relay"):
            if name in self.procs:
                stop_process(self.procs.pop(name), 10)

    def _own_namespace(self) -> bool:
        try:
            return os.stat(self.netns).st_ino != os.stat("/proc/self/ns/net").st_ino
        except FileNotFoundError:
            return False

    def _alive(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self._log(name)}")
        return False

    def _log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")[-4000:]

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - the process holds it
        self.procs[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def _cni(self, plugin: str, config: dict[str, Any], ifname: str) -> None:
        """ADD, as the container runtime calls a CNI plugin for a pod's sandbox."""
        subprocess.run(
            [f"{CNI_PATH}/{plugin}"],
            input=json.dumps(config),
            text=True,
            check=True,
            capture_output=True,
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "CNI_COMMAND": "ADD",
                "CNI_CONTAINERID": "nasop-cluster-dns",
                "CNI_NETNS": self.netns,
                "CNI_IFNAME": ifname,
                "CNI_PATH": CNI_PATH,
            },
        )

    def _write_configs(self) -> None:
        w = self.workdir
        # no `cache`: a trial's rank asks for rank 0's name as soon as it starts, perhaps before
        # the endpoint exists; a cached "no such name" would outlive the endpoint's arrival
        (w / "Corefile").write_text(
            f""".:53 {{
    bind {DNS_ADDRESS}
    errors
    kubernetes {CLUSTER_DOMAIN} {{
        kubeconfig {self.plane.admin_kubeconfig_path}
        ttl 0
    }}
}}
"""
        )
