"""A snapshot split into a small core document and fixed-size, append-only chunks of trials.

Why: one document holding everything grows with every trial, is rewritten whole on every save,
and (for the ConfigMap store) meets the API server's 1 MiB limit after a few hundred trials with
learning curves. Here:

- the **core** holds what does not grow with the search: the experiment without its trials and
  data, the generation strategy without the experiment that Ax's encoder writes into it a second
  time (its generator runs become references to the trials that hold the same runs), nasop's own
  book minus the entries of sealed trials, and the **tail**: the trials not sealed yet;
- a trial is **sealed** once it has ended (completed, failed, stopped early, abandoned); every
  `chunk_trials` sealed trials, with their data rows (rows.py) and book entries, form a **chunk**
  (halved until it is under CHUNK_BYTES gzipped), named by its number and content hash. A chunk
  is written once and never rewritten: a writer that loses a race leaves an unreferenced chunk
  of another name, never a changed one. The core
  names its chunks and their hashes, so a reader sees exactly the chunks of the core it read;
- a sealed trial that changes after all (Ax allows it) goes back into the tail, whose record wins
  over the chunk's on load.

`split` plans a save from what the store wrote before (`Written`): the new chunks and the core,
whose hash tells whether it changed. `join` rebuilds the snapshot and the `Written` that matches
it. Neither does I/O; the stores (files.py, configmap.py) move the bytes.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import gzip
import hashlib
import json
import operator
import weakref
from collections.abc import Mapping
from typing import Any

from ax.core.base_trial import BaseTrial
from ax.core.data import Data, DataRow
from ax.core.experiment import Experiment
from ax.core.generator_run import GeneratorRun
from ax.generation_strategy.generation_strategy import GenerationStrategy
from ax.storage.json_store.decoder import generation_strategy_from_json, object_from_json
from ax.storage.json_store.encoder import object_to_json
from ax.storage.registry_bundle import RegistryBundleBase

from nasop.state import codec, rows
from nasop.state.base import Snapshot

FORMAT = "nasop.dev/state-v2"
CHUNK_FORMAT = "nasop.dev/state-v2-chunk"
CHUNK_TRIALS = 100  # trials per chunk: ~65 kB gzipped with 20-epoch curves on 3 metrics
CHUNK_BYTES = 400_000  # gzipped; a heavier chunk is halved (the API server's limit is 1 MiB)
BOOK = "nasop"  # the key of nasop's book in experiment._properties (engine/state.py: PROPS)
PER_TRIAL = ("reasons", "warm")  # book entries keyed by trial index: they travel with the trial
_TRIAL_INDEX = operator.attrgetter("trial_index")
_SAME_RUNNER = {"__nasop": "experiment.runner"}  # a trial's runner equal to the experiment's

Fingerprint = tuple[str, int]  # (status, number of data rows): a sealed trial changed if it differs


def chunk_key(number: int, digest: str) -> str:
    """A chunk's name in its store: its number and the first 16 hex digits of its SHA-256."""
    return f"{number:05d}-{digest}"


@dataclasses.dataclass
class Written:
    """What a store last wrote (or read) of one experiment: the base of the next save."""

    chunks: list[str] = dataclasses.field(default_factory=list)  # digests, in order
    sealed: dict[int, Fingerprint | None] = dataclasses.field(default_factory=dict)  # None: changed
    book: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # sealed entries
    core_sha256: str | None = None
    experiment: weakref.ref[Experiment] | None = None  # the experiment object it describes


@dataclasses.dataclass
class Plan:
    """One save: chunks to create (key -> document), then the core if it changed."""

    core: dict[str, Any]
    core_sha256: str
    chunks: dict[str, dict[str, Any]]
    written: Written  # what the store holds once this plan is written
    core_before: str | None = None  # the hash of the core the store holds now

    @property
    def core_changed(self) -> bool:
        return self.core_sha256 != self.core_before


def dumps(doc: Mapping[str, Any]) -> bytes:
    """The canonical bytes of a document (the hash is taken over them)."""
    return json.dumps(doc, separators=(",", ":")).encode()


def to_bytes(doc: Mapping[str, Any], compress: bool = False) -> bytes:
    data = dumps(doc)
    return gzip.compress(data, mtime=0) if compress else data


def from_bytes(data: bytes) -> dict[str, Any]:
    """A document written by `to_bytes` or by the first format's `codec.to_bytes`."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    doc: dict[str, Any] = json.loads(data)
    return doc


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _kw_enc(registry: RegistryBundleBase) -> dict[str, Any]:
    return dict(
        encoder_registry=registry.encoder_registry,
        class_encoder_registry=registry.class_encoder_registry,
    )


def _kw_dec(registry: RegistryBundleBase) -> dict[str, Any]:
    return dict(
        decoder_registry=registry.decoder_registry,
        class_decoder_registry=registry.class_decoder_registry,
    )


def _generator_run(trial: BaseTrial) -> GeneratorRun | None:
    return getattr(trial, "_generator_run", None)


def _run_key(gr: GeneratorRun) -> tuple[Any, ...]:
    """Equal for the copies of one generator run (a state decoded by the old format keeps the
    strategy's runs apart from the trials' runs)."""
    return (gr._generation_node_name, gr.time_created, tuple(a.signature for a in gr.arms))


# ----------------------------------------------------------------------------------- split


def split(
    snapshot: Snapshot,
    registry: RegistryBundleBase,
    written: Written | None,
    chunk_trials: int = CHUNK_TRIALS,
) -> Plan:
    """Plan the save of `snapshot` on top of what was `written` (None: nothing yet)."""
    experiment, strategy = snapshot.experiment, snapshot.strategy
    if written is None or written.experiment is None or written.experiment() is not experiment:
        written = Written()  # another object: assume nothing (chunks of equal content keep names)
    trials = experiment.trials
    data_rows: list[DataRow] = experiment.data._data_rows
    counts = collections.Counter(map(_TRIAL_INDEX, data_rows))  # O(rows), at C speed

    def fingerprint(t: BaseTrial) -> Fingerprint:
        return (t.status.name, counts.get(t.index, 0))

    sealed = dict(written.sealed)
    tail: list[int] = []
    for index, trial in trials.items():
        if index in sealed:
            if sealed[index] is not None and sealed[index] != fingerprint(trial):
                sealed[index] = None  # changed after sealing: back to the tail for good
            if sealed[index] is None:
                tail.append(index)
        else:
            tail.append(index)
    ended = sorted(i for i in tail if i not in sealed and trials[i].status.is_terminal)
    full = len(ended) // chunk_trials
    to_seal = [ended[k * chunk_trials : (k + 1) * chunk_trials] for k in range(full)]
    newly = {i for group in to_seal for i in group}
    tail = [i for i in tail if i not in newly]

    wanted = set(tail) | newly
    by_trial: dict[int, list[DataRow]] = collections.defaultdict(list)
    for r in data_rows:
        if r.trial_index in wanted:
            by_trial[r.trial_index].append(r)

    kw = _kw_enc(registry)
    core_exp = copy.copy(experiment)  # a shallow copy without trials and data: the core's part
    core_exp._trials = {}
    core_exp.data = Data()
    exp_json = object_to_json(core_exp, **kw)
    runner_json = exp_json.get("runner")
    book_json = (exp_json.get("properties") or {}).get(BOOK) or {}

    def record(index: int) -> dict[str, Any]:
        trial_json = object_to_json(trials[index], **kw)
        if trial_json.get("runner") == runner_json and runner_json is not None:
            trial_json["runner"] = _SAME_RUNNER
        rec: dict[str, Any] = {"index": index, "trial": trial_json}
        if by_trial.get(index):
            rec["data"] = rows.encode(by_trial[index], registry)
        entries = {
            k: book_json[k][str(index)] for k in PER_TRIAL if str(index) in (book_json.get(k) or {})
        }
        if entries:
            rec["book"] = entries
        return rec

    chunks = list(written.chunks)
    book = {k: dict(v) for k, v in written.book.items()}
    new_chunks: dict[str, dict[str, Any]] = {}
    sealing = [[record(i) for i in group] for group in to_seal]
    while sealing:
        records = sealing.pop(0)
        doc: dict[str, Any] = {"format": CHUNK_FORMAT, "records": records}
        data = dumps(doc)
        if len(records) > 1 and len(gzip.compress(data, 1)) > CHUNK_BYTES:
            half = len(records) // 2  # heavy trials (long curves): smaller chunks
            sealing[:0] = [records[:half], records[half:]]
            continue
        sha = _sha(data)
        new_chunks[chunk_key(len(chunks), sha[:16])] = doc
        chunks.append(sha[:16])
        for rec in records:
            sealed[rec["index"]] = fingerprint(trials[rec["index"]])
            for k, v in (rec.get("book") or {}).items():
                book.setdefault(k, {})[str(rec["index"])] = v

    if book_json:  # sealed book entries live in their chunks; a changed one stays here
        core_book = dict(book_json)
        for k in PER_TRIAL:
            if k in core_book:
                entries, in_chunks = core_book[k], book.get(k, {})
                core_book[k] = {i: v for i, v in entries.items() if in_chunks.get(i, _MISSING) != v}
        exp_json["properties"] = {**exp_json["properties"], BOOK: core_book}

    core = {
        "format": FORMAT,
        "experiment": exp_json,
        "strategy": _strategy_json(strategy, trials, registry),
        "chunks": chunks,  # 16 hex digits of each chunk's SHA-256: 19 bytes per 100 trials
        "tail": [record(i) for i in sorted(tail)],
    }
    core_sha = _sha(dumps(core))
    after = Written(chunks, sealed, book, core_sha, weakref.ref(experiment))
    return Plan(core, core_sha, new_chunks, after, core_before=written.core_sha256)


_MISSING = object()


def _strategy_json(
    strategy: GenerationStrategy, trials: Mapping[int, BaseTrial], registry: RegistryBundleBase
) -> dict[str, Any]:
    """The strategy without its experiment; its generator runs as ranges of trial indices
    (`[first, last]`) where a trial holds the same run, else as the run itself."""
    encode = registry.encoder_registry[type(strategy)]
    raw = dict(encode(strategy))
    raw["experiment"] = None
    runs: list[GeneratorRun] = raw.pop("generator_runs")
    raw["generator_runs"] = []
    doc = object_to_json(raw, **_kw_enc(registry))
    by_id = {id(gr): i for i, t in trials.items() if (gr := _generator_run(t)) is not None}
    by_key: dict[tuple[Any, ...], int] | None = None
    refs: list[Any] = []
    for gr in runs:
        index = by_id.get(id(gr))
        if index is None:
            if by_key is None:
                by_key = {
                    _run_key(g): i
                    for i, t in trials.items()
                    if (g := _generator_run(t)) is not None
                }
            index = by_key.get(_run_key(gr))
        if index is None:
            refs.append({"run": object_to_json(gr, **_kw_enc(registry))})
        elif refs and isinstance(refs[-1], list) and refs[-1][1] == index - 1:
            refs[-1][1] = index
        else:
            refs.append([index, index])
    doc["nasop_generator_runs"] = refs
    return doc


# ------------------------------------------------------------------------------------ join


def is_core(doc: Mapping[str, Any]) -> bool:
    return doc.get("format") == FORMAT


def chunk_keys(core: Mapping[str, Any]) -> list[str]:
    """The chunks a core document needs, in order."""
    return [chunk_key(k, digest) for k, digest in enumerate(core["chunks"])]


def check_chunk(core: Mapping[str, Any], key: str, doc: Mapping[str, Any]) -> None:
    """Raise if the chunk read is not the one the core names (a hand-edited or torn state)."""
    number, digest = key.split("-")
    if core["chunks"][int(number)] != digest:
        raise ValueError(f"the core document names no state chunk {key}")
    if doc.get("format") != CHUNK_FORMAT or _sha(dumps(doc))[:16] != digest:
        raise ValueError(f"state chunk {key} does not match its hash in the core document")


def join(
    core: dict[str, Any], chunks: Mapping[str, dict[str, Any]], registry: RegistryBundleBase
) -> tuple[Snapshot, Written]:
    """The snapshot that `split` saved as this core and these chunks (key -> document)."""
    if not is_core(core):
        raise ValueError(f"not a nasop state core document (format={core.get('format')!r})")
    core_sha = _sha(dumps(core))
    core = copy.deepcopy(core)  # decoding pops keys
    records: dict[int, dict[str, Any]] = {}
    in_chunks: set[int] = set()
    book: dict[str, dict[str, Any]] = {}
    for key in chunk_keys(core):
        doc = chunks[key]
        check_chunk(core, key, doc)
        for rec in doc["records"]:
            records[rec["index"]] = rec
            in_chunks.add(rec["index"])
            for k, v in (rec.get("book") or {}).items():
                book.setdefault(k, {})[str(rec["index"])] = v
    tail = {rec["index"] for rec in core["tail"]}
    records.update({rec["index"]: rec for rec in core["tail"]})

    exp_json = core["experiment"]
    runner_json = exp_json.get("runner")
    trials_json = {}
    for index in sorted(records):
        trial_json = records[index]["trial"]
        if trial_json.get("runner") == _SAME_RUNNER:
            trial_json["runner"] = copy.deepcopy(runner_json)
        trials_json[str(index)] = trial_json
    exp_json["trials"] = trials_json
    exp_json["data_by_trial"] = {}
    props = exp_json.get("properties") or {}
    if BOOK in props:
        for k in PER_TRIAL:
            merged = {**book.get(k, {}), **(props[BOOK].get(k) or {})}
            if k in props[BOOK] or merged:
                props[BOOK][k] = dict(sorted(merged.items(), key=lambda kv: int(kv[0])))
    kw = _kw_dec(registry)
    experiment: Experiment = object_from_json(exp_json, **kw)
    data_rows = [
        r
        for index in sorted(records)
        if "data" in records[index]
        for r in rows.decode(records[index]["data"], index, registry)
    ]
    experiment.data = Data(data_rows=data_rows) if data_rows else Data()

    strategy_json = core["strategy"]
    refs = strategy_json.pop("nasop_generator_runs", [])
    strategy = generation_strategy_from_json(strategy_json, experiment=experiment, **kw)
    runs: list[GeneratorRun] = []
    for ref in refs:
        if isinstance(ref, list):
            runs += [
                gr
                for i in range(ref[0], ref[1] + 1)
                if (gr := _generator_run(experiment.trials[i])) is not None
            ]
        else:
            runs.append(object_from_json(ref["run"], **kw))
    strategy._generator_runs = runs

    counts = collections.Counter(map(_TRIAL_INDEX, data_rows))
    sealed: dict[int, Fingerprint | None] = {
        i: None if i in tail else (experiment.trials[i].status.name, counts.get(i, 0))
        for i in in_chunks
    }
    written = Written(list(core["chunks"]), sealed, book, core_sha, weakref.ref(experiment))
    return Snapshot(experiment=experiment, strategy=strategy), written


def load_document(
    doc: dict[str, Any], chunks: Mapping[str, dict[str, Any]], registry: RegistryBundleBase
) -> tuple[Snapshot, Written]:
    """A core document with its chunks, or a whole document of the first format (which loads
    and continues: its first save writes the new layout)."""
    if is_core(doc):
        return join(doc, chunks, registry)
    return codec.decode(doc, registry), Written()


__all__ = [
    "CHUNK_BYTES",
    "CHUNK_FORMAT",
    "CHUNK_TRIALS",
    "FORMAT",
    "Plan",
    "Written",
    "check_chunk",
    "chunk_key",
    "chunk_keys",
    "dumps",
    "from_bytes",
    "is_core",
    "join",
    "load_document",
    "split",
    "to_bytes",
]
