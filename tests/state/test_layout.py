"""The split layout (state/layout.py) on the file store: what is saved comes back equal, each save
writes the core and at most one new chunk, a chunk is never rewritten, and a state of the first
format (one whole document, as main's stores wrote it before the split) loads and continues.

Equal means equal to Ax's own JSON round trip of the same snapshot (`codec`, the first format:
Ax turns a float bound of 10.0 into 10 in both, so the in-memory original differs from both).
"""

from __future__ import annotations

import gzip
import json
import os
import random

import pytest
from ax.core.base_trial import TrialStatus
from state_builders import ENDS, FIXTURE, METRICS, assert_equal, grow, new_search

from nasop import errors
from nasop.state import codec, files, layout
from nasop.state.base import Snapshot
from nasop.trials import registry


def test_split_and_join_give_back_the_snapshot(tmp_path):
    rnd = random.Random(0)
    s = new_search(tmp_path)
    for status in ENDS * 3:
        grow(s, 1, rnd, status)
    grow(s, 2, rnd, TrialStatus.RUNNING)
    s.state.reasons[99] = "a reason for no trial stays in the core"
    snap = s.snapshot()
    plan = layout.split(snap, registry.bundle(), None, chunk_trials=4)
    # 9 ended trials: two full chunks of 4; the ninth and the running two stay in the core
    assert [len(d["records"]) for d in plan.chunks.values()] == [4, 4]
    assert sorted(r["index"] for r in plan.core["tail"]) == [8, 9, 10]
    assert plan.core["strategy"]["experiment"] is None  # not a second copy of the experiment
    assert plan.core["strategy"]["nasop_generator_runs"] == [[0, 10]]
    reasons = plan.core["experiment"]["properties"]["nasop"]["reasons"]
    assert sorted(reasons, key=int) == ["8", "9", "10", "99"]  # sealed ones went with the trials
    # a curve is three arrays, not twenty rows
    rec = next(iter(plan.chunks.values()))["records"][0]
    assert [(seg["metric"], len(seg["mean"])) for seg in rec["data"]["segments"]] == [
        (m, 20) for m in METRICS
    ]
    # through the bytes a store writes
    core = layout.from_bytes(layout.to_bytes(plan.core, compress=True))
    chunks = {k: layout.from_bytes(layout.to_bytes(d)) for k, d in plan.chunks.items()}
    back, written = layout.join(core, chunks, registry.bundle())
    assert_equal(back, snap)
    # saving what was just read changes nothing
    again = layout.split(back, registry.bundle(), written, chunk_trials=4)
    assert not again.chunks and not again.core_changed
    s.close()


def test_each_save_writes_the_core_and_at_most_one_chunk(tmp_path):
    rnd = random.Random(1)
    store = files.FileStore(str(tmp_path / "state"), registry=registry.bundle(), chunk_trials=5)
    s = new_search(tmp_path)
    chunk_dir = tmp_path / "state" / "split.chunks"
    seen: dict[str, tuple[int, int, bytes]] = {}
    writes, core_sizes = [], []
    for _ in range(40):
        grow(s, 1, rnd)
        before = store.writes
        store.save(name="split", snapshot=s.snapshot())
        writes.append(store.writes - before)
        core_sizes.append(os.path.getsize(store.path("split")))
        for f in sorted(os.listdir(chunk_dir)) if chunk_dir.exists() else []:
            st = os.stat(chunk_dir / f)
            now = (st.st_ino, st.st_mtime_ns, (chunk_dir / f).read_bytes())
            assert seen.setdefault(f, now) == now, f"chunk {f} was rewritten"
    assert writes == [1, 1, 1, 1, 2] * 8  # the core; and a chunk at each fifth ended trial
    assert len(seen) == 8
    # the core does not grow with the trials: it holds at most the unsealed tail
    assert max(core_sizes[20:]) <= 1.2 * max(core_sizes[:10])
    # nothing changed: nothing written
    before = store.writes
    store.save(name="split", snapshot=s.snapshot())
    assert store.writes == before
    back = files.FileStore(str(tmp_path / "state"), registry=registry.bundle()).load(name="split")
    assert_equal(back, s.snapshot())
    s.close()


def test_heavy_trials_make_smaller_chunks(tmp_path, monkeypatch):
    """Chunks stay under CHUNK_BYTES gzipped whatever a trial weighs (here the budget shrinks)."""
    monkeypatch.setattr(layout, "CHUNK_BYTES", 2000)
    store = files.FileStore(str(tmp_path / "state"), registry=registry.bundle(), chunk_trials=8)
    s = new_search(tmp_path)
    grow(s, 8, random.Random(5))
    store.save(name="split", snapshot=s.snapshot())
    chunks = sorted((tmp_path / "state" / "split.chunks").iterdir())
    sizes = [len(json.loads(c.read_bytes())["records"]) for c in chunks]
    assert sum(sizes) == 8 and len(sizes) > 1
    assert all(len(gzip.compress(c.read_bytes(), 1)) <= 2000 for c in chunks)
    back = files.FileStore(str(tmp_path / "state"), registry=registry.bundle()).load(name="split")
    assert_equal(back, s.snapshot())
    s.close()


def test_a_sealed_trial_that_changes_is_saved_in_the_core(tmp_path):
    rnd = random.Random(2)
    store = files.FileStore(str(tmp_path / "state"), registry=registry.bundle(), chunk_trials=3)
    s = new_search(tmp_path)
    grow(s, 7, rnd)
    store.save(name="split", snapshot=s.snapshot())
    chunks = {
        f: (tmp_path / "state" / "split.chunks" / f).read_bytes()
        for f in os.listdir(tmp_path / "state" / "split.chunks")
    }
    assert len(chunks) == 2
    s.experiment.trials[1].mark_failed(reason="found broken later", unsafe=True)
    s.state.reasons[1] = "found broken later"
    store.save(name="split", snapshot=s.snapshot())
    after = {f: (tmp_path / "state" / "split.chunks" / f).read_bytes() for f in chunks}
    assert after == chunks  # sealed chunks stay as they were
    back = files.FileStore(str(tmp_path / "state"), registry=registry.bundle()).load(name="split")
    assert back.experiment.trials[1].status is TrialStatus.FAILED
    assert back.experiment._properties["nasop"]["reasons"]["1"] == "found broken later"
    assert_equal(back, s.snapshot())
    s.close()


def test_a_chunk_that_does_not_match_the_core_is_refused(tmp_path):
    store = files.FileStore(str(tmp_path / "state"), registry=registry.bundle(), chunk_trials=2)
    s = new_search(tmp_path)
    grow(s, 2, random.Random(3))
    store.save(name="split", snapshot=s.snapshot())
    (chunk,) = (tmp_path / "state" / "split.chunks").iterdir()
    doc = json.loads(chunk.read_bytes())
    doc["records"][0]["trial"]["status_reason"] = "edited"
    chunk.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="does not match its hash"):
        files.FileStore(str(tmp_path / "state"), registry=registry.bundle()).load(name="split")
    chunk.unlink()
    with pytest.raises(errors.NasopError, match="which is missing"):
        files.FileStore(str(tmp_path / "state"), registry=registry.bundle()).load(name="split")
    s.close()


@pytest.mark.parametrize("source", ["fixture", "encoder"])
def test_a_state_of_the_first_format_loads_and_continues(tmp_path, source):
    """`fixture`: bytes main's ConfigMap store wrote (gzipped; tests/state/fixtures, made with
    main at 21012be); `encoder`: main's file store format, written now by the first format's
    encoder (codec.py, kept as the reader of old states)."""
    rnd = random.Random(4)
    state = tmp_path / "state"
    state.mkdir()
    if source == "fixture":
        old = FIXTURE.read_bytes()
        name = "v1state"
    else:
        s0 = new_search(tmp_path, "old")
        grow(s0, 5, rnd)
        grow(s0, 1, rnd, TrialStatus.RUNNING)
        old = codec.to_bytes(s0.snapshot(), registry.bundle())
        name = "old"
        s0.close()
    (state / f"{name}.json").write_bytes(old)
    store = files.FileStore(str(state), registry=registry.bundle(), chunk_trials=3)
    loaded = store.load(name=name)
    ref = codec.from_bytes(old, registry.bundle())
    assert loaded.experiment == ref.experiment and loaded.strategy == ref.strategy
    n = len(loaded.experiment.trials)
    # it continues: a trial more, saved in the new layout in place of the old file
    s = new_search(tmp_path, name)
    snap = Snapshot(loaded.experiment, loaded.strategy)
    grow(_Holder(snap, s.state), 1, rnd)
    store.save(name=name, snapshot=snap)
    core = layout.from_bytes((state / f"{name}.json").read_bytes())
    assert core["format"] == layout.FORMAT and len(core["chunks"]) >= 1
    assert core["strategy"]["experiment"] is None
    back = files.FileStore(str(state), registry=registry.bundle()).load(name=name)
    assert len(back.experiment.trials) == n + 1
    assert_equal(back, snap)
    s.close()


class _Holder:
    """What `grow` needs of a Search, over a loaded snapshot."""

    def __init__(self, snap, state):
        self.experiment, self.strategy, self.state = snap.experiment, snap.strategy, state


def test_the_fixture_is_what_main_wrote():
    doc = json.loads(gzip.decompress(FIXTURE.read_bytes()))
    assert doc["format"] == codec.FORMAT and doc["strategy"]["experiment"] is not None


def test_the_registry_alone_decodes_nasops_generator_classes() -> None:
    """A process that only loads a saved state (a bench, `nasop report`) imports the registry,
    not the engine: the registry must register the acquisition and transforms it saved."""
    import subprocess
    import sys

    code = (
        "from nasop.trials import registry; registry.bundle()\n"
        "from ax.storage.botorch_modular_registry import REVERSE_ACQUISITION_REGISTRY as A\n"
        "from ax.storage.transform_registry import REVERSE_TRANSFORM_REGISTRY as T\n"
        "assert 'ExhaustiveAcquisition' in A, sorted(A)\n"
        "assert {'FitSubset', 'StoppedAsShorter'} <= {c.__name__ for c in T.values()}\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
