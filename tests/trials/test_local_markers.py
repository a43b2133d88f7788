"""The local trial wrapper leaves pid/exit markers; a cancel always ends with an exit code."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from nasop.trials import local_markers


def _wrapped(tmp_path, code):
    return subprocess.Popen(
        local_markers.wrap([sys.executable, "-c", code], str(tmp_path)), start_new_session=True
    )


def _wait(path, timeout=20.0):
    deadline = time.time() + timeout
    while not path.exists() and time.time() < deadline:
        time.sleep(0.02)
    return path.exists()


def test_normal_run_leaves_pid_and_exit_code(tmp_path):
    p = _wrapped(tmp_path, "import sys; sys.exit(3)")
    assert p.wait(timeout=30) == 3
    assert local_markers.exit_code(str(tmp_path)) == 3
    pids = json.loads((tmp_path / ".nasop" / "pid").read_text())
    assert set(pids) == {"wrapper", "child"}
    assert not local_markers.is_running(str(tmp_path))


def test_sigterm_is_forwarded_and_recorded(tmp_path):
    p = _wrapped(tmp_path, "import time; time.sleep(60)")
    assert _wait(tmp_path / ".nasop" / "pid")
    assert local_markers.is_running(str(tmp_path))
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)
    assert local_markers.exit_code(str(tmp_path)) == -signal.SIGTERM
    child = json.loads((tmp_path / ".nasop" / "pid").read_text())["child"]
    assert not local_markers._alive(child)


def test_cancel_before_the_wrapper_started_is_recorded(tmp_path):
    local_markers.record_cancelled(str(tmp_path))
    assert local_markers.exit_code(str(tmp_path)) == -signal.SIGTERM


def test_record_cancelled_leaves_a_started_trial_to_its_wrapper(tmp_path):
    (tmp_path / ".nasop").mkdir()
    (tmp_path / ".nasop" / "pid").write_text(json.dumps({"wrapper": 1, "child": 2}))
    local_markers.record_cancelled(str(tmp_path))
    assert local_markers.exit_code(str(tmp_path)) is None
