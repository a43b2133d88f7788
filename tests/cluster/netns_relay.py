"""A TCP relay from one network namespace into the machine's own: it listens on an address inside
the namespace (e.g. 127.0.0.1:6443 there) and connects each client to the same or another
address here (the API server on this machine's 127.0.0.1).

Why: the cluster DNS runs in a namespace of its own, on a macvlan child of the default interface
(as the pods are), and a macvlan child cannot reach its parent's host: no veth, bridge or route
may be added to the machine, so one process holds a socket on each side. The listening socket
is made inside the namespace (``setns`` for this thread only, then back), the outgoing ones here.

    python netns_relay.py NETNS_PATH LISTEN_HOST:PORT CONNECT_HOST:PORT
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000


def setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({path})")
    finally:
        os.close(fd)


def listen_in(netns: str, host: str, port: int) -> socket.socket:
    """A listening socket inside ``netns``; the calling thread comes back to its own namespace."""
    home = f"/proc/self/task/{threading.get_native_id()}/ns/net"
    home_fd = os.open(home, os.O_RDONLY)
    try:
        setns(netns)
        try:
            server = socket.create_server((host, port), reuse_port=False)
        finally:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.setns(home_fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(home_fd)
    return server


def pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def serve(server: socket.socket, target: tuple[str, int]) -> None:
    while True:
        client, _ = server.accept()
        try:
            upstream = socket.create_connection(target, timeout=10)
            upstream.settimeout(None)
        except OSError:
            client.close()
            continue
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=pipe, args=(a, b), daemon=True).start()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str]) -> None:
    netns, listen, connect = argv
    if os.stat(netns).st_ino == os.stat("/proc/self/ns/net").st_ino:
        raise SystemExit(f"{netns} is this process's own network namespace")
    server = listen_in(netns, *_address(listen))
    print(f"relaying {listen} in {netns} to {connect}", flush=True)
    serve(server, _address(connect))


if __name__ == "__main__":
    main(sys.argv[1:])
