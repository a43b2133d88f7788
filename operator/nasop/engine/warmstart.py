"""Warm start: copy completed trials of earlier searches into a new one, data included.

A user who widens a search space should not pay again for the trials already run. A source trial
is reused when it completed, its parameters lie in the new search space (Ax's own membership
check: every parameter present, in bounds, constraints satisfied) and it has data for every
objective. Copied trials are COMPLETED without running, keep their learning curves, and cost no
budget; the generation strategy counts them towards its initial (Sobol) trials.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

from ax.core.arm import Arm
from ax.core.base_trial import TrialStatus
from ax.core.data import Data
from ax.core.experiment import Experiment
from ax.core.generator_run import GeneratorRun

from nasop import errors, spec
from nasop.state.base import ExperimentStore
from nasop.state.files import FileStore
from nasop.trials import registry

GENERATOR_KEY = "WarmStart"


@dataclass
class WarmStartResult:
    copied: dict[int, str] = field(default_factory=dict)  # new trial index -> "source#index"
    skipped: Counter[str] = field(default_factory=Counter)  # why -> how many

    def summary(self) -> str:
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
        return f"reused {len(self.copied)} trials" + (f"; skipped {why}" if why else "")


def load_sources(
    sources: list[spec.WarmStartSource], store: ExperimentStore | None
) -> list[tuple[str, Experiment]]:
    """The experiments named by spec.warmStart; a missing one is an error, not a silent skip."""
    out = []
    for i, src in enumerate(sources):
        if src.experiment is not None:
            snapshot = store.load(name=src.experiment) if store else None
            where = store.describe() if store else "no store"
        else:
            path = os.path.abspath(str(src.state_file))
            name = os.path.basename(path).removesuffix(".json")
            snapshot = FileStore(os.path.dirname(path), registry=registry.bundle()).load(name=name)
            where = path
        if snapshot is None:
            raise errors.SpecError(
                f"spec.warmStart[{i}]: {src.describe()!r} not found ({where})",
                hint="name an experiment that ran in the same state dir / namespace, or a state "
                "file written by `nasop run`",
            )
        out.append((src.describe(), snapshot.experiment))
    return out


def seed(
    target: Experiment, s: spec.NASExperimentSpec, sources: list[tuple[str, Experiment]]
) -> WarmStartResult:
    """Add every compatible completed source trial to `target` as a completed trial."""
    result = WarmStartResult()
    wanted = set(s.metric_names)
    objectives = {o.metric for o in s.objectives}
    seen: set[tuple[tuple[str, object], ...]] = set()
    for label, source in sources:
        data = source.lookup_data()
        full = data.full_df
        for trial in source.trials.values():
            if trial.status is not TrialStatus.COMPLETED:
                result.skipped["not completed"] += 1
                continue
            params = dict(trial.arm.parameters)  # type: ignore[attr-defined]  # one-arm Trials
            if not target.search_space.check_membership(params):
                result.skipped["outside the search space"] += 1
                continue
            rows = full[(full["trial_index"] == trial.index) & full["metric_name"].isin(wanted)]
            if not objectives <= set(rows["metric_name"]):
                result.skipped["missing an objective"] += 1
                continue
            key = tuple(sorted(params.items()))
            if key in seen:  # the same arm from two sources: keep the first
                result.skipped["duplicate"] += 1
                continue
            seen.add(key)
            new = target.new_trial(
                generator_run=GeneratorRun(
                    arms=[Arm(parameters=params)], generator_key=GENERATOR_KEY
                )
            )
            new.update_run_metadata(
                {k: v for k, v in trial.run_metadata.items() if isinstance(v, str)}
                | {"warm_start": f"{label}#{trial.index}"}
            )
            new.mark_running(no_runner_required=True)
            copied = rows.copy()
            copied["trial_index"] = new.index
            copied["arm_name"] = new.arm.name  # type: ignore[union-attr]  # made with its arm
            target.attach_data(Data(df=copied))
            new.mark_completed()
            result.copied[new.index] = f"{label}#{trial.index}"
    return result


__all__ = ["GENERATOR_KEY", "WarmStartResult", "load_sources", "seed"]
