"""Snapshot <-> JSON document, through Ax's JSON encoders and a registry bundle."""

from __future__ import annotations

import gzip
import json
from typing import Any

from ax.storage.json_store.decoder import generation_strategy_from_json, object_from_json
from ax.storage.json_store.encoder import object_to_json
from ax.storage.registry_bundle import RegistryBundleBase

from nasop.state.base import Snapshot

FORMAT = "nasop.dev/state-v1"


def encode(snapshot: Snapshot, registry: RegistryBundleBase) -> dict[str, Any]:
    kw = dict(
        encoder_registry=registry.encoder_registry,
        class_encoder_registry=registry.class_encoder_registry,
    )
    return {
        "format": FORMAT,
        "experiment": object_to_json(snapshot.experiment, **kw),
        "strategy": object_to_json(snapshot.strategy, **kw),
    }


def decode(doc: dict[str, Any], registry: RegistryBundleBase) -> Snapshot:
    if doc.get("format") != FORMAT:
        raise ValueError(f"not a nasop state document (format={doc.get('format')!r})")
    kw = dict(
        decoder_registry=registry.decoder_registry,
        class_decoder_registry=registry.class_decoder_registry,
    )
    experiment = object_from_json(doc["experiment"], **kw)
    strategy = generation_strategy_from_json(doc["strategy"], experiment=experiment, **kw)
    return Snapshot(experiment=experiment, strategy=strategy)


def to_bytes(snapshot: Snapshot, registry: RegistryBundleBase, compress: bool = False) -> bytes:
    raw = json.dumps(encode(snapshot, registry), separators=(",", ":")).encode()
    return gzip.compress(raw, mtime=0) if compress else raw


def from_bytes(data: bytes, registry: RegistryBundleBase) -> Snapshot:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return decode(json.loads(data), registry)


__all__ = ["decode", "encode", "from_bytes", "to_bytes"]
