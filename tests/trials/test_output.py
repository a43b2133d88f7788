"""A local trial's output read as the engine reads it: incrementally, bounded, and the same
collector a pod's log feeds (tests/results for the collector's own rules)."""

from __future__ import annotations

import os

from nasop import results
from nasop.results import Collector
from nasop.trials import output
from nasop.trials.appdef import TERMINATION_FILE


def _append(folder, text: bytes) -> None:
    os.makedirs(os.path.join(folder, ".nasop"), exist_ok=True)
    with open(os.path.join(folder, ".nasop", "stdout"), "ab") as fh:
        fh.write(text)


def test_reads_what_is_new_each_time_and_the_final_values_once(tmp_path):
    folder = str(tmp_path)
    reader = output.LocalOutput(folder, Collector(["val_acc", "num_params"]))
    assert reader.read().points == {}  # nothing written yet: no error
    _append(folder, (results.format_point(0, 0, {"num_params": 10}) + "\n").encode())
    _append(folder, b"progress: half a line NASOP1 ")  # an unfinished line waits
    assert reader.read().curve("num_params") == [(0, 10.0)]
    first_offset = reader.offset
    _append(folder, b"...\n" + (results.format_point(1, 0, {"val_acc": 0.5}) + "\n").encode())
    _append(folder, b"x" * (1 << 20) + b"\n")  # a 1 MiB line: skipped and counted
    _append(folder, (results.format_point(2, 1, {"val_acc": 0.75}) + "\n").encode())
    collector = reader.read()
    assert reader.offset > first_offset
    assert collector.curve("val_acc") == [(0, 0.5), (1, 0.75)]
    assert collector.rejected == {output.TOO_LONG: 1}
    with open(os.path.join(folder, ".nasop", TERMINATION_FILE), "w") as fh:
        fh.write(results.encode_final({"val_acc": (1, 0.75), "num_params": (0, 10.0)}))
    collector = reader.read()
    assert collector.finals == {None: {"val_acc": (1, 0.75), "num_params": (0, 10.0)}}
    assert collector.rejected == {output.TOO_LONG: 1}  # reading again added nothing


def test_a_reader_after_a_restart_rebuilds_the_same_points(tmp_path):
    folder = str(tmp_path)
    for i in range(5):
        _append(folder, (results.format_point(i, i, {"val_acc": i / 10}) + "\n").encode())
    first = output.LocalOutput(folder, Collector(["val_acc"])).read()
    again = output.LocalOutput(folder, Collector(["val_acc"])).read()
    assert first.points == again.points and len(first.points) == 5


def test_a_flood_is_read_in_bounded_steps(tmp_path, monkeypatch):
    monkeypatch.setattr(output, "MAX_READ_BYTES", 4096)
    folder = str(tmp_path)
    lines = [results.format_point(i, i, {"val_acc": 0.5}) + "\n" for i in range(400)]
    _append(folder, "".join(lines).encode())
    reader = output.LocalOutput(folder, Collector(["val_acc"]))
    reader.read()
    assert reader.offset == 4096 and 0 < len(reader.collector.points) < 400
    while reader.offset < sum(len(x) for x in lines):
        reader.read()
    assert len(reader.collector.points) == 400 and not reader.collector.gaps


def test_a_bad_termination_message_is_counted(tmp_path):
    folder = str(tmp_path)
    os.makedirs(os.path.join(folder, ".nasop"))
    with open(os.path.join(folder, ".nasop", TERMINATION_FILE), "w") as fh:
        fh.write("NASOP1 {broken")
    collector = output.LocalOutput(folder, Collector(["val_acc"])).read()
    assert collector.rejected == {"termination message is not JSON": 1}
    assert "1 x termination message is not JSON" in collector.problems()
