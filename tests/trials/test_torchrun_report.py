"""A distributed trial's failure reason from torchrun's failure report (a real torchrun's log)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from nasop.trials import torchrun_report


def test_a_plain_log_gives_its_last_line():
    assert torchrun_report.reason(["a", "nasop-trainer: error: bad", "  "]) == (
        "nasop-trainer: error: bad"
    )
    assert torchrun_report.reason([]) == ""
    stamped = ["2026-12-07T01:47:26.123456789Z fake trainer: asked to fail"]
    assert torchrun_report.reason(stamped) == "fake trainer: asked to fail"
    assert not torchrun_report.has_report(["a"])


@pytest.mark.slow
def test_a_real_torchrun_failure_names_the_program_line_rank_and_exit_code(tmp_path):
    script = tmp_path / "failer.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys
            if os.environ["RANK"] == "1":
                print("program: rank 1 gives up", file=sys.stderr)
                sys.exit(3)
            """
        )
    )
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "torch.distributed.run", "--rdzv_backend", "c10d"),
            *("--rdzv_endpoint", "localhost:0", "--nnodes", "1", "--nproc_per_node", "2"),
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    lines = (proc.stdout + proc.stderr).splitlines()
    assert torchrun_report.has_report(lines)
    assert torchrun_report.reason(lines) == "program: rank 1 gives up (rank 1, exit code 3)"
    stamped = [f"2026-12-07T01:47:26.000000001Z {line}" for line in lines]  # as TorchX reads a pod
    assert torchrun_report.reason(stamped) == "program: rank 1 gives up (rank 1, exit code 3)"
    # the kubernetes client hands the whole log back as the repr of its bytes
    as_read = torchrun_report.log_lines([repr("\n".join(stamped).encode())])
    assert torchrun_report.reason(as_read) == "program: rank 1 gives up (rank 1, exit code 3)"
