"""A fork server for local Python trials: import torch and Lightning once, fork every trial.

A local trial (`python -m nasop_trainer ...`) spends seconds of CPU importing torch and Lightning
before its first epoch: on a small tutorial trial a large share of its time, and time that early
stopping cannot save. `nasop run --preload lightning.pytorch` starts this server, which imports
the named modules once and then forks a child per trial; the child takes the trial's stdio
(passed over a Unix socket), environment, working directory and argv, and runs the module
or script as `python -m`/`python FILE` would.

Stdlib only until the preload imports, like `nasop.local.trialwrap`, whose trials it runs. The
protocol on one connection: the wrapper sends an 8-byte length and a JSON request
(`argv`, `env`, `cwd`) with its fds 0, 1, 2 attached; the child answers `pid N` and, when
the trial ends, `exit N` (the server, its parent, sends `exit N` too once it has reaped it:
that covers os._exit and signals; the wrapper takes the first). A server that will not run
the request answers `fresh <why>`. A wrapper that dies (EOF) takes its child's process group
with it.

Differences from a fresh interpreter, by design: the preloaded modules are already imported,
so environment variables that they read at import time (e.g. `OMP_NUM_THREADS` for torch)
keep the server's values; set thread counts in code (the trainer's `--threads`).

Usage: python -m nasop.local.forkserver SOCKET_PATH MODULE [MODULE ...]
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import signal
import socket
import struct
import sys
import threading
import traceback
from typing import Any

ENV_VAR = "NASOP_FORKSERVER"  # the socket path, in a trial wrapper's environment
PARENT_ENV_VAR = "NASOP_FORKSERVER_PARENT"  # the pid the server lives for (`nasop run`)
_HEADER = struct.Struct("!Q")
_POLL_S = 0.2  # how often the server reaps children and checks that `nasop run` is alive
HANDSHAKE_TIMEOUT_S = 120.0  # for the server's answer: it may still be importing under load
_REQUEST_TIMEOUT_S = 10.0  # for a wrapper's request, so one stalled wrapper cannot block others


# ----------------------------------------------------------------------------- requests


def program(argv: list[str]) -> tuple[str, str] | None:
    """`("module", name)` or `("path", file)` for a command this server can run, else None.

    Only `<this interpreter> -m MODULE ...` and `<this interpreter> FILE ...`: other flags
    or another Python would change what the trial runs, so those start a fresh process.
    """
    if len(argv) < 2 or not _same_interpreter(argv[0]):
        return None
    if argv[1] == "-m":
        return ("module", argv[2]) if len(argv) > 2 and argv[2] else None
    return None if argv[1].startswith("-") else ("path", argv[1])


def _same_interpreter(exe: str) -> bool:
    try:
        return os.path.samefile(exe, sys.executable)
    except OSError:
        return False


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("fork server connection closed mid-request")
        buf += chunk
    return buf


# ----------------------------------------------------------------------------- client (wrapper)


class Launched:
    """A trial running in a child of the fork server, as seen by its wrapper."""

    def __init__(self, conn: socket.socket, answers: Any, pid: int) -> None:
        self._conn = conn
        self._answers = answers  # the one buffered reader: `exit N` may arrive with `pid N`
        self.pid = pid

    def send_signal(self, signum: int) -> None:
        """To the trial's process group (it leads one), like a signal to a fresh trial's group."""
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass

    def wait(self) -> int | None:
        """The child's exit code; None when it died without reporting one (killed)."""
        try:
            for line in self._answers:
                if line.startswith("exit "):
                    return int(line.split()[1])
            return None
        except (OSError, ValueError):
            return None
        finally:
            self._answers.close()
            self._conn.close()


def launch(path: str, argv: list[str], env: dict[str, str], cwd: str) -> Launched | None:
    """Ask the server at `path` to run `argv`; None when it cannot (the caller starts a process)."""
    if program(argv) is None:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(HANDSHAKE_TIMEOUT_S)  # a wedged server: start fresh rather than wait
    try:
        conn.connect(path)
        body = json.dumps({"argv": argv, "env": env, "cwd": cwd}).encode()
        socket.send_fds(conn, [_HEADER.pack(len(body))], [0, 1, 2])
        conn.sendall(body)
        answers = conn.makefile("r", encoding="utf-8")
        line = answers.readline()
        if not line.startswith("pid "):  # e.g. `fresh <why>`: the server declined
            raise ConnectionError(f"fork server answered {line!r}")
        conn.settimeout(None)  # the trial may run for hours
        return Launched(conn, answers, int(line.split()[1]))
    except (OSError, ValueError):
        conn.close()
        return None


# ----------------------------------------------------------------------------- server


def _child(
    conn: socket.socket, fds: list[int], request: dict[str, Any], inherited: list[socket.socket]
) -> None:
    """In the forked child: become the trial, run it, report its exit code. Never returns.
    `inherited`: the server's sockets (listener, other trials' connections) to close."""
    code = 1
    try:
        for sock in inherited:
            sock.close()
        # as a fresh interpreter has them (SIGPIPE stays ignored, as Python sets it at start)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # its own session and process group: the wrapper signals the group, so processes the
        # trial starts are reached too, as TorchX's killpg reaches a fresh trial's
        os.setsid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        _fresh_stdio(request["env"])
        conn.settimeout(None)
        # processes the trial forks (workers) must not hold the wrapper's connection open
        os.register_at_fork(after_in_child=conn.close)
        conn.sendall(f"pid {os.getpid()}\n".encode())
        threading.Thread(target=_die_with_wrapper, args=(conn,), daemon=True).start()
        code = _run_trial(request)
    except BaseException:
        traceback.print_exc()
    try:
        # what a fresh interpreter does at exit: join non-daemon threads (executors' work
        # included), then atexit handlers (e.g. flushing writers), then flush stdio
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        conn.sendall(f"exit {code}\n".encode())
    finally:
        os._exit(code if code >= 0 else 128 - code)


def _fresh_stdio(env: dict[str, str]) -> None:
    """sys.stdout/stderr as a fresh interpreter builds them for these fds: unbuffered with
    PYTHONUNBUFFERED (TorchX sets it for every local trial), else line-buffered on a terminal
    (stderr always), block-buffered otherwise."""
    import io

    unbuffered = bool(env.get("PYTHONUNBUFFERED"))

    def stream(fd: int, line: bool, errors: str) -> io.TextIOWrapper:
        raw = io.FileIO(fd, "wb", closefd=False)
        return io.TextIOWrapper(
            raw if unbuffered else io.BufferedWriter(raw),
            encoding=sys.stdout.encoding,
            errors=errors,
            line_buffering=line and not unbuffered,
            write_through=unbuffered,
        )

    # __stdout__/__stderr__ too: the forked trial is a fresh program, and they are its originals
    sys.stdout = sys.__stdout__ = stream(1, os.isatty(1), "strict")  # type: ignore[misc]
    sys.stderr = sys.__stderr__ = stream(2, True, "backslashreplace")  # type: ignore[misc]


def _die_with_wrapper(conn: socket.socket) -> None:
    """The wrapper never writes after its request: EOF means it died, so the trial ends too."""
    try:
        while conn.recv(64):
            pass
    except OSError:
        pass
    os.killpg(0, signal.SIGKILL)  # the trial and whatever it started


def _run_trial(request: dict[str, Any]) -> int:
    """Run the module or script like the interpreter would; returns the process exit code."""
    import runpy

    argv, cwd = list(request["argv"]), request["cwd"]
    # the client sends only commands that program() accepted (forkserver_process checks first)
    kind, target = program(argv)  # type: ignore[misc]
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(request["env"])
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    first = os.path.dirname(os.path.realpath(target)) if kind == "path" else os.getcwd()
    sys.path[:] = [first, *extra, *[p for p in sys.path[1:] if p not in extra]]
    _reseed()
    sys.argv = argv[2:] if kind == "module" else argv[1:]  # argv[0]: runpy sets the file's path
    try:
        if kind == "module":
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(target, run_name="__main__")
    except SystemExit as e:
        if e.code is None:
            return 0
        if isinstance(e.code, int):
            return e.code & 0xFF  # as the OS reports it: sys.exit(-1) is 255
        print(e.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
        return -signal.SIGINT  # Python re-raises SIGINT on itself: killed by it
    except BaseException:
        sys.excepthook(*sys.exc_info())
        return 1
    return 0


def _reseed() -> None:
    """A fresh process draws new seeds; a fork would repeat the server's random streams."""
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if "torch" in sys.modules:
        sys.modules["torch"].seed()
    # `random` reseeds itself after fork (os.register_at_fork)


def _interpreter_env(env: Any) -> set[str]:
    """Variables Python reads at start-up (PYTHONHASHSEED, PYTHONWARNINGS, ...), which a forked
    child cannot honour; PYTHONPATH and PYTHONUNBUFFERED are applied per trial."""
    return {
        k for k in env if k.startswith("PYTHON") and k not in ("PYTHONPATH", "PYTHONUNBUFFERED")
    }


def _handle(
    conn: socket.socket, listener: socket.socket, children: dict[int, socket.socket]
) -> None:
    """Read one request and fork its trial; the parent keeps a copy of the connection in
    `children`, to report the exit status that only a parent can read (see `_reap`)."""
    fds: list[int] = []
    try:
        header, fds, _flags, _addr = socket.recv_fds(conn, _HEADER.size, 3)
        if len(header) < _HEADER.size:
            header += _recv_exact(conn, _HEADER.size - len(header))
        (length,) = _HEADER.unpack(header)
        request = json.loads(_recv_exact(conn, length))
        if len(fds) != 3 or program(request["argv"]) is None:
            raise ValueError("request needs fds 0, 1, 2 and a python -m / python FILE argv")
        differ = sorted(
            k
            for k in {*_interpreter_env(request["env"]), *_interpreter_env(os.environ)}
            if request["env"].get(k) != os.environ.get(k)
        )
        if differ:  # read at interpreter start: only a fresh interpreter honours them
            conn.sendall(f"fresh {','.join(differ)} differ\n".encode())
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(conn, fds, request, [listener, *children.values()])
        # blocking, as the child sets it: the two share the socket's file status flags, and a
        # timeout here would make the child's reads non-blocking under its feet
        conn.settimeout(None)
        children[pid] = conn.dup()
    except (OSError, ValueError, KeyError) as e:
        print(f"nasop fork server: bad request: {e}", file=sys.stderr, flush=True)
    finally:
        for fd in fds:
            os.close(fd)
        conn.close()


def _reap(children: dict[int, socket.socket]) -> None:
    """Report each ended child's exit status to its wrapper. A child reports its own exit code
    too; this covers the ends it cannot report (os._exit, a signal, a crash). The wrapper takes
    the first `exit` line and closes: a send that fails is one it no longer needs."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is not None:
            try:
                conn.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
            except OSError:
                pass
            conn.close()


def serve(path: str, preload: list[str]) -> int:
    """Listen first (a trial that connects early waits for the imports), then import, then serve
    until `nasop run` (the parent) is gone or sends SIGTERM."""
    # `nasop run` passes its pid: a parent that died before this line must still stop the server
    parent = int(os.environ.pop(PARENT_ENV_VAR, "") or os.getppid())
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _f: stop.append(signum))
    try:
        for name in preload:
            try:
                importlib.import_module(name)
            except Exception as e:
                print(f"nasop fork server: cannot preload {name}: {e}", file=sys.stderr, flush=True)
                return 1
        print(
            f"nasop fork server: pid {os.getpid()} on {path}, preloaded {', '.join(preload)}",
            file=sys.stderr,
            flush=True,
        )
        children: dict[int, socket.socket] = {}
        server.settimeout(_POLL_S)
        while not stop and os.getppid() == parent:
            _reap(children)
            try:
                conn, _ = server.accept()
            except (TimeoutError, InterruptedError):
                continue
            conn.settimeout(_REQUEST_TIMEOUT_S)
            _handle(conn, server, children)
        return 0
    finally:
        server.close()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def main(argv: list[str]) -> int:
    if len(argv) < 1:
        print("usage: python -m nasop.local.forkserver SOCKET_PATH [MODULE ...]", file=sys.stderr)
        return 2
    return serve(argv[0], argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
