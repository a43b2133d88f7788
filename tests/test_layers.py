"""The dependency arrows of DESIGN.md, checked by import-linter (`.importlinter`)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_contracts_kept():
    pytest.importorskip("importlinter")  # a dev dependency: present wherever `make test` runs
    # next to this interpreter, not on PATH: `make test` runs .venv/bin/python without activating
    exe = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    p = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:]
    assert "BROKEN" not in p.stdout
