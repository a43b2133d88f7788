"""Local sessions: where `nasop run` keeps state and logs, and how it builds a Search.

Layout under the state directory (default `.nasop/` in the current directory):
`state/<name>.json` (Ax experiment + generation strategy), `logs/<name>/trial-NNNN/` (each
trial's TensorBoard files), `torchx/` (each trial's stdout and stderr).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from nasop import spec
from nasop.engine.search import Search
from nasop.state import base, open_store
from nasop.trials import registry
from nasop.trials.runner import TorchXTrialRunner

DEFAULT_STATE_DIR = ".nasop"


@dataclass(frozen=True)
class LocalPaths:
    root: str

    @property
    def state(self) -> str:
        return os.path.join(self.root, "state")

    @property
    def logs(self) -> str:
        return os.path.join(self.root, "logs")

    @property
    def torchx(self) -> str:
        return os.path.join(self.root, "torchx")


def local_runner(
    manifest: spec.NASExperiment, paths: LocalPaths, preload: Sequence[str] = ()
) -> TorchXTrialRunner:
    """`preload`: modules a fork server imports once, so Python trials skip importing them."""
    return TorchXTrialRunner(
        scheduler="local_cwd",
        template=manifest.spec.trial.dump(),
        log_root=os.path.abspath(paths.logs),
        experiment_name=manifest.name,
        scheduler_cfg={"log_dir": os.path.abspath(paths.torchx)},
        preload=preload,
    )


def local_store(paths: LocalPaths, state_url: str | None) -> base.ExperimentStore:
    return open_store(state_url or os.path.abspath(paths.state), registry.bundle())


def open_local_search(
    manifest: spec.NASExperiment,
    state_dir: str | None = None,
    state_url: str | None = None,
    preload: Sequence[str] = (),
) -> Search:
    """Resume or start the search of this manifest on this machine."""
    paths = LocalPaths(state_dir or DEFAULT_STATE_DIR)
    return Search.open(
        manifest.spec,
        manifest.name,
        local_runner(manifest, paths, preload),
        local_store(paths, state_url),
    )


__all__ = ["DEFAULT_STATE_DIR", "LocalPaths", "open_local_search"]
