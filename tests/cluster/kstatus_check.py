"""Flux's verdict on an object: kstatus itself (github.com/fluxcd/cli-utils, the library Flux's
`wait` and `healthChecks` call), built once from its Go module in tests/packaging/kstatus/ and
cached outside the checkout by the hash of its go.sum and main.go."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
from typing import Any

MODULE = pathlib.Path(__file__).resolve().parents[1] / "packaging" / "kstatus"
GO = shutil.which("go")


def build() -> pathlib.Path:
    """The checker binary (built on first use; Go must be installed)."""
    if GO is None:
        raise RuntimeError("Go is not installed: kstatus is built from its Go module")
    key = hashlib.sha256((MODULE / "go.sum").read_bytes() + (MODULE / "main.go").read_bytes())
    cache = pathlib.Path(
        os.environ.get("NASOP_CLUSTER_CACHE", pathlib.Path.home() / ".cache" / "nasop" / "cluster")
    )
    binary = cache / f"kstatus-{key.hexdigest()[:12]}" / "kstatus"
    if not binary.exists():
        binary.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "GOWORK": "off", "GOFLAGS": "-mod=readonly", "CGO_ENABLED": "0"}
        subprocess.run(
            [GO, "build", "-trimpath", "-o", str(binary) + ".tmp", "."],
            cwd=MODULE,
            env=env,
            check=True,
            timeout=600,
        )
        os.replace(str(binary) + ".tmp", binary)
    return binary


def verdicts(
    objects: list[dict[str, Any]], binary: pathlib.Path | None = None
) -> list[tuple[str, str]]:
    """(status, message) per object, as kstatus computes them (InProgress, Current, Failed...)."""
    out = subprocess.run(
        [str(binary or build())],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [(s, m) for s, _, m in (line.partition("\t") for line in out.splitlines())]
