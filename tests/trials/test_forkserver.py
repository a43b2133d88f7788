"""The fork server runs a wrapped Python trial as a fresh interpreter would, minus the imports.

Every test starts the real server process (`ForkServer`, as `nasop run --preload` does) and the
real trial wrapper; the preloaded module is a stdlib one that Python does not import at start
(`wave`), so a trial can tell whether it was forked (already imported) or started fresh.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from nasop.local import forkserver
from nasop.trials import local_markers
from nasop.trials.forkserver_process import ForkServer

PROBE = textwrap.dedent("""
    import json, os, signal, sys
    preloaded = "wave" in sys.modules
    print(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "preloaded": preloaded,
                      "path0": sys.path[0], "x": os.environ.get("PROBE_X"),
                      "server_var": os.environ.get("NASOP_FORKSERVER"),
                      "sigpipe_ignored": signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN}))
    print("to stderr", file=sys.stderr)
    sys.exit(int(os.environ.get("PROBE_RC", "0")))
""")


@pytest.fixture
def server(tmp_path):
    fs = ForkServer(["wave"], str(tmp_path / "server.log"))
    fs.env()  # starts it
    yield fs
    fs.close()


def _wrapped(tmp_path, argv, server=None, name="t", **env):
    """Start the wrapper as TorchX would (own session); stdout/stderr go to files."""
    full_env = {**os.environ, **env}
    full_env.pop(forkserver.ENV_VAR, None)
    if server is not None:
        full_env.update(server.env())
    with open(tmp_path / f"{name}.out", "w") as out, open(tmp_path / f"{name}.err", "w") as err:
        return subprocess.Popen(
            local_markers.wrap(argv, str(tmp_path / name)),
            cwd=tmp_path,
            env=full_env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )


def _probe_result(tmp_path, name="t"):
    """The trial's stdout goes beside its markers (where the contract's lines are read); the
    probe prints its JSON first."""
    assert (tmp_path / f"{name}.out").read_text() == ""  # the wrapper itself prints nothing
    stdout = tmp_path / name / ".nasop" / "stdout"
    return json.loads(stdout.read_text().strip().splitlines()[0])


def _pids(tmp_path, name="t", timeout=30.0):
    path = tmp_path / name / ".nasop" / "pid"
    deadline = time.time() + timeout
    while not path.exists() and time.time() < deadline:
        time.sleep(0.02)
    return json.loads(path.read_text())


def _gone(pid, timeout=10.0):
    deadline = time.time() + timeout
    while local_markers._alive(pid) and time.time() < deadline:
        time.sleep(0.05)
    return not local_markers._alive(pid)


def test_script_trial_is_forked_with_its_argv_env_cwd_stdio_and_exit_code(tmp_path, server):
    (tmp_path / "probe.py").write_text(PROBE)
    script = str(tmp_path / "probe.py")
    p = _wrapped(
        tmp_path, [sys.executable, script, "--a=1", "b"], server, PROBE_X="y", PROBE_RC="3"
    )
    assert p.wait(timeout=60) == 3
    got = _probe_result(tmp_path)
    assert got == {
        "argv": [script, "--a=1", "b"],
        "cwd": str(tmp_path),
        "preloaded": True,
        "path0": str(tmp_path),
        "x": "y",
        "server_var": None,
        "sigpipe_ignored": True,
    }  # as Python sets it at start
    assert (tmp_path / "t.err").read_text() == "to stderr\n"
    assert local_markers.exit_code(str(tmp_path / "t")) == 3
    pids = _pids(tmp_path)
    assert pids["child"] != p.pid and pids["wrapper"] == p.pid


def test_module_trial_is_forked_like_python_dash_m(tmp_path, server):
    (tmp_path / "probe_mod.py").write_text(PROBE)
    p = _wrapped(tmp_path, [sys.executable, "-m", "probe_mod", "--k=v"], server)
    assert p.wait(timeout=60) == 0
    got = _probe_result(tmp_path)
    assert got["preloaded"] is True
    assert got["argv"] == [str(tmp_path / "probe_mod.py"), "--k=v"]
    assert got["path0"] == str(tmp_path)  # python -m puts the working directory first


def test_without_a_server_the_same_trial_starts_fresh(tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)
    p = _wrapped(tmp_path, [sys.executable, str(tmp_path / "probe.py")], PROBE_RC="4")
    assert p.wait(timeout=60) == 4
    got = _probe_result(tmp_path)
    assert got["preloaded"] is False and got["sigpipe_ignored"] is True


def test_trials_that_exit_at_once_report_their_own_exit_codes(tmp_path, server):
    """`pid` and `exit` can arrive in one read; neither may be lost (a lost exit reads as
    killed)."""
    (tmp_path / "quick.py").write_text("import sys\nsys.exit(int(sys.argv[1]))\n")
    procs = {
        code: _wrapped(
            tmp_path,
            [sys.executable, str(tmp_path / "quick.py"), str(code)],
            server,
            name=f"q{code}",
        )
        for code in (0, 1, 7, 255, 256 + 9)
    }
    for code, p in procs.items():
        assert p.wait(timeout=60) == code & 0xFF
        assert local_markers.exit_code(str(tmp_path / f"q{code}")) == code & 0xFF


def test_ends_only_the_parent_sees_are_reported_by_the_server(tmp_path, server):
    """os._exit and death by a signal leave the child no chance to report: the server, its
    parent, reads the status and reports it, as waitpid would for a fresh process."""
    (tmp_path / "hard.py").write_text(
        "import os, signal, sys\n"
        "if sys.argv[1] == 'exit': os._exit(3)\n"
        "os.kill(os.getpid(), signal.SIGUSR1)\n"
    )
    for how, code in (("exit", 3), ("signal", -signal.SIGUSR1)):
        p = _wrapped(tmp_path, [sys.executable, str(tmp_path / "hard.py"), how], server, name=how)
        p.wait(timeout=60)
        assert local_markers.exit_code(str(tmp_path / how)) == code


def test_exit_runs_executor_work_and_atexit_handlers(tmp_path, server):
    (tmp_path / "tail.py").write_text(
        textwrap.dedent("""
        import atexit, concurrent.futures, pathlib, time
        pool = concurrent.futures.ThreadPoolExecutor(1)
        pool.submit(lambda: (time.sleep(0.3), pathlib.Path("executor.done").write_text("x")))
        atexit.register(lambda: pathlib.Path("atexit.done").write_text("x"))
        print("main done", flush=True)
    """)
    )
    p = _wrapped(tmp_path, [sys.executable, str(tmp_path / "tail.py")], server)
    assert p.wait(timeout=60) == 0
    assert (tmp_path / "executor.done").exists() and (tmp_path / "atexit.done").exists()


def test_interpreter_settings_in_the_environment_are_honoured(tmp_path, server):
    """PYTHONUNBUFFERED (TorchX sets it) is applied to the forked trial's stdout; a variable
    only a new interpreter can apply (PYTHONHASHSEED) makes the trial start fresh."""
    (tmp_path / "probe.py").write_text(
        "import json, os, sys\n"
        "print(json.dumps({'preloaded': 'wave' in sys.modules}))\n"
        "print('after', end='')\n"
        "os._exit(0)  # no flush at exit: only an unbuffered stdout has written 'after'\n"
    )
    p = _wrapped(
        tmp_path,
        [sys.executable, str(tmp_path / "probe.py")],
        server,
        name="u",
        PYTHONUNBUFFERED="x",
    )
    assert p.wait(timeout=60) == 0
    out = (tmp_path / "u" / ".nasop" / "stdout").read_text()
    assert out.endswith("after") and json.loads(out.splitlines()[0])["preloaded"] is True
    p = _wrapped(
        tmp_path,
        [sys.executable, str(tmp_path / "probe.py")],
        server,
        name="h",
        PYTHONHASHSEED="123",
    )
    assert p.wait(timeout=60) == 0
    assert _probe_result(tmp_path, "h")["preloaded"] is False


def test_other_commands_start_fresh_even_with_a_server(tmp_path, server):
    code = "import sys, json; print(json.dumps({'preloaded': 'wave' in sys.modules}))"
    p = _wrapped(tmp_path, [sys.executable, "-c", code], server)  # -c: not a module or file
    assert p.wait(timeout=60) == 0
    assert _probe_result(tmp_path)["preloaded"] is False
    assert forkserver.program(["/bin/sh", "x.py"]) is None
    assert forkserver.program([sys.executable, "-u", "x.py"]) is None


def test_uncaught_exception_prints_the_traceback_and_exits_1(tmp_path, server):
    (tmp_path / "boom.py").write_text("raise RuntimeError('boom in trial')\n")
    p = _wrapped(tmp_path, [sys.executable, str(tmp_path / "boom.py")], server)
    assert p.wait(timeout=60) == 1
    err = (tmp_path / "t.err").read_text()
    assert "Traceback" in err and "RuntimeError: boom in trial" in err
    assert local_markers.exit_code(str(tmp_path / "t")) == 1


def test_sigterm_to_the_wrapper_stops_the_forked_trial(tmp_path, server):
    (tmp_path / "sleepy.py").write_text("import time\ntime.sleep(120)\n")
    p = _wrapped(tmp_path, [sys.executable, str(tmp_path / "sleepy.py")], server)
    child = _pids(tmp_path)["child"]
    assert local_markers._alive(child) and child != p.pid
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)
    assert local_markers.exit_code(str(tmp_path / "t")) == -signal.SIGTERM
    assert _gone(child)


def test_a_killed_wrapper_takes_its_forked_trial_with_it(tmp_path, server):
    (tmp_path / "sleepy.py").write_text("import time\ntime.sleep(120)\n")
    p = _wrapped(tmp_path, [sys.executable, str(tmp_path / "sleepy.py")], server)
    child = _pids(tmp_path)["child"]
    os.killpg(p.pid, signal.SIGKILL)  # what TorchX does after its SIGTERM grace period
    p.wait(timeout=30)
    assert _gone(child)


def test_forked_trials_draw_fresh_random_numbers(tmp_path):
    fs = ForkServer(["numpy", "torch"], str(tmp_path / "server.log"))
    try:
        (tmp_path / "rng.py").write_text(
            "import json, random, numpy, torch\n"
            "print(json.dumps([random.random(), float(numpy.random.rand()),"
            " float(torch.rand(1))]))\n"
        )
        draws = []
        for name in ("a", "b"):
            p = _wrapped(tmp_path, [sys.executable, str(tmp_path / "rng.py")], fs, name=name)
            assert p.wait(timeout=120) == 0
            draws.append(_probe_result(tmp_path, name))
        assert all(x != y for x, y in zip(*draws))
    finally:
        fs.close()


def test_a_module_that_cannot_be_preloaded_leaves_trials_starting_fresh(tmp_path):
    fs = ForkServer(["no_such_module_nasop"], str(tmp_path / "server.log"))
    try:
        (tmp_path / "probe.py").write_text(PROBE)
        for name in ("a", "b"):
            p = _wrapped(tmp_path, [sys.executable, str(tmp_path / "probe.py")], fs, name=name)
            assert p.wait(timeout=60) == 0
            assert _probe_result(tmp_path, name)["preloaded"] is False
        log = (tmp_path / "server.log").read_text()
        assert log.count("cannot preload no_such_module_nasop") == 1  # not restarted per trial
        assert fs.env() == {}
    finally:
        fs.close()


def test_the_server_exits_with_nasop_run(tmp_path):
    """Its parent gone (a `nasop run` killed with SIGKILL), the server stops and cleans up."""
    sock = tmp_path / "s.sock"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import subprocess, sys, time\n"
                "p = subprocess.Popen([sys.executable, '-m', 'nasop.local.forkserver',"
                f" {str(sock)!r}])\n"
                "print(p.pid, flush=True)\n"
                "time.sleep(120)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    server_pid = int(parent.stdout.readline())
    deadline = time.time() + 30
    while not sock.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert sock.exists()
    parent.kill()
    parent.wait()
    assert _gone(server_pid)
    assert not sock.exists()


def test_a_server_whose_parent_died_before_it_looked_exits(tmp_path):
    """The parent's pid comes from `nasop run`, so a server that starts after its parent died
    (and was re-parented at once) does not serve forever."""
    sock = tmp_path / "s.sock"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    server = subprocess.Popen(
        [sys.executable, "-m", "nasop.local.forkserver", str(sock)],
        env={**os.environ, forkserver.PARENT_ENV_VAR: str(dead.pid)},
    )
    assert server.wait(timeout=30) == 0
    assert not sock.exists()


def test_nasop_run_hints_at_preload_for_python_trials_only():
    from nasop.cli import preload_hint

    assert "--preload" in preload_hint([sys.executable, "-m", "nasop_trainer"], [])
    assert "--preload" in preload_hint(["python3", "train.py"], [])
    assert preload_hint(["python", "-m", "nasop_trainer"], ["lightning.pytorch"]) is None
    assert preload_hint(["/bin/train"], []) is None
