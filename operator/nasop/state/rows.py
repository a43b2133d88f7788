"""One trial's Ax data rows <-> a compact JSON form: a curve is one array per metric, not a row
per epoch.

Ax's own JSON keeps a trial's data as a DataFrame written by pandas (`to_json`): every row
repeats the trial, arm and metric names, and floats keep only 10 significant digits. Here
consecutive rows of one (arm, metric) become a *segment* with arrays of steps, means and SEMs,
in the order Ax holds them, so the rows read back are the rows written (floats exactly, through
Python's JSON). Rows that carry the rarely used `start_time`, `end_time` or `n` fields are kept
through Ax's own encoder instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ax.core.data import Data, DataRow
from ax.storage.json_store.decoder import object_from_json
from ax.storage.json_store.encoder import object_to_json
from ax.storage.registry_bundle import RegistryBundleBase


def encode(rows: Sequence[DataRow], registry: RegistryBundleBase) -> dict[str, Any]:
    """`{"segments": [...]}`, or `{"ax": <Ax's JSON of the rows>}` for rows with extra fields."""
    if any(r.start_time is not None or r.end_time is not None or r.n is not None for r in rows):
        return {
            "ax": object_to_json(
                Data(data_rows=rows),
                encoder_registry=registry.encoder_registry,
                class_encoder_registry=registry.class_encoder_registry,
            )
        }
    segments: list[dict[str, Any]] = []
    last: tuple[str, str, str, bool] | None = None
    for r in rows:
        key = (r.arm_name, r.metric_name, r.metric_signature, r.step is None)
        if key != last:
            seg: dict[str, Any] = {"arm": r.arm_name, "metric": r.metric_name, "mean": []}
            if r.metric_signature != r.metric_name:
                seg["signature"] = r.metric_signature
            if r.step is not None:
                seg["step"] = []
            seg["sem"] = []
            segments.append(seg)
            last = key
        seg = segments[-1]
        seg["mean"].append(float(r.mean))
        seg["sem"].append(float(r.se))
        if r.step is not None:
            seg["step"].append(float(r.step))
    for seg in segments:  # an unknown SEM (NaN) everywhere is the usual case: say it once
        if all(math.isnan(v) for v in seg["sem"]):
            del seg["sem"]
    return {"segments": segments}


def decode(doc: dict[str, Any], trial_index: int, registry: RegistryBundleBase) -> list[DataRow]:
    """The rows `encode` was given, for the trial of this index."""
    if "ax" in doc:
        data = object_from_json(
            doc["ax"],
            decoder_registry=registry.decoder_registry,
            class_decoder_registry=registry.class_decoder_registry,
        )
        return list(data._data_rows)
    rows: list[DataRow] = []
    for seg in doc["segments"]:
        means = seg["mean"]
        sems = seg.get("sem") or [math.nan] * len(means)
        steps = seg.get("step") or [None] * len(means)
        arm, metric = seg["arm"], seg["metric"]
        signature = seg.get("signature", metric)
        rows += [
            DataRow(
                trial_index=trial_index,
                arm_name=arm,
                metric_name=metric,
                metric_signature=signature,
                mean=m,
                se=s,
                step=x,
            )
            for m, s, x in zip(means, sems, steps, strict=True)
        ]
    return rows


__all__ = ["decode", "encode"]
