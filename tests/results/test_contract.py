"""The trial contract v2 on its own: lines, termination messages and the collector, including
what a hostile trial prints (refused, counted by reason, never crashing the reader)."""

from __future__ import annotations

import base64
import json
import zlib

import pytest

from nasop import results
from nasop.results import lines, termination
from nasop.results.collector import Collector, LineSplitter

DECLARED = ("val_acc", "num_params")


def test_a_point_line_round_trips():
    line = results.format_point(7, 6, {"val_acc": 0.93})
    assert line == 'NASOP1 {"seq":7,"step":6,"v":{"val_acc":0.93}}'
    record = lines.parse_nasop(line)
    assert record == lines.Record(6, {"val_acc": 0.93}, 7, None)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("NASOP1 {not json", "not JSON after the prefix"),
        ("NASOP1 [1, 2]", "not a JSON object after the prefix"),
        ('NASOP1 {"step": -1, "v": {"val_acc": 1}}', "step is not an integer in [0, 1000000]"),
        (
            'NASOP1 {"step": 10000001, "v": {"val_acc": 1}}',
            "step is not an integer in [0, 1000000]",
        ),
        ('NASOP1 {"step": 1.5, "v": {"val_acc": 1}}', "step is not an integer in [0, 1000000]"),
        ('NASOP1 {"step": true, "v": {"val_acc": 1}}', "step is not an integer in [0, 1000000]"),
        ('NASOP1 {"step": 1, "v": {"val_acc": "0.9"}}', "val_acc is not a number"),
        ('NASOP1 {"step": 1, "v": {"val_acc": true}}', "val_acc is not a number"),
        ('NASOP1 {"step": 1, "v": {}}', "no values"),
        ('NASOP1 {"step": 1, "v": {"a": 1}, "m": -3}', "member index out of range"),
        ('NASOP1 {"step": 1, "v": {"a": 1}, "seq": "x"}', "seq is not a non-negative integer"),
        ('NASOP1 {"m": 1, "end": "exploded"}', "end without a member or with an unknown state"),
    ],
)
def test_a_bad_line_is_refused_with_its_reason(line, reason):
    assert lines.parse_nasop(line) == reason


def test_other_output_is_not_a_record():
    assert lines.parse_nasop("epoch 3: val_acc=0.9") is None
    assert lines.parse_nasop("NASOP1{}") is None  # the prefix has its space


def test_undeclared_names_are_counted_up_to_a_bound():
    c = Collector(DECLARED)
    for i in range(100):
        c.feed_line(results.format_point(i, i, {f"m{i}": 1.0, "val_acc": 0.5}))
    assert len(c.ignored) == 32 and not c.rejected and len(c.curve("val_acc")) == 100


def test_katib_lines_give_declared_metrics_in_order():
    c = Collector(DECLARED, fmt=results.KATIB)
    for line in [
        "epoch 0: val_acc=0.5 loss=2.0",
        "garbage val_acc = nan",
        "epoch 1: val_acc=0.75, num_params=1234",
        "val_acc=1e-1",
    ]:
        c.feed_line(line)
    assert c.curve("val_acc") == [(0, 0.5), (1, 0.75), (2, 0.1)]
    assert c.curve("num_params") == [(0, 1234.0)]


def test_the_termination_message_round_trips_and_compresses_when_large():
    final = {"val_acc": (3, 0.93), "num_params": (0, 2778.0)}
    small = results.encode_final(final)
    assert small.startswith("NASOP1 ") and results.decode_final(small) == {None: {"final": final}}
    many = {f"metric_{i:04d}": (i % 7, 0.5) for i in range(400)}
    big = results.encode_final(many)
    assert big.startswith(termination.ZPREFIX) and len(big) <= results.MAX_MESSAGE_BYTES
    assert results.decode_final(big) == {None: {"final": many}}


def test_a_final_too_large_even_compressed_is_an_error():
    noise = {f"m{i}": (0, float(i) / 7.0) for i in range(3000)}
    with pytest.raises(ValueError, match="termination message holds 4096"):
        results.encode_final(noise)


def test_a_pack_message_holds_each_members_end():
    members = {3: {"state": "completed", "final": {"val_acc": (1, 0.9)}}, 4: {"state": "stopped"}}
    decoded = results.decode_final(results.encode_final({}, members))
    assert decoded[3] == {"final": {"val_acc": (1, 0.9)}, "state": "completed", "reason": ""}
    assert decoded[4]["state"] == "stopped" and decoded[4]["final"] == {}


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("done", "no NASOP1 result in the termination message"),
        ("NASOP1 " + "x" * 5000, "termination message over 4 KiB"),
        ("NASOP1 {", "termination message is not JSON"),
        ('NASOP1 {"final": {"val_acc": [1, "high"]}}', "final val_acc is not a number"),
        ('NASOP1 {"final": {"val_acc": 0.9}}', "final val_acc is not [step, value]"),
        ('NASOP1 {"final": {"val_acc": [1, NaN]}}', "final val_acc is not finite"),
        ("NASOP1Z !!!", "compressed termination message is not valid"),
        ('NASOP1 {"final": {}, "lines": -1}', "lines is not a non-negative integer"),
        ('NASOP1 {"members": {"3": {"lines": "7"}}}', "lines is not a non-negative integer"),
    ],
)
def test_a_bad_termination_message_is_refused(message, reason):
    assert results.decode_final(message) == reason


def test_a_zip_bomb_is_refused_within_its_bound():
    bomb = zlib.compress(b'{"final": {"a": [0, 1]}, "pad": "' + b" " * 2_500_000 + b'"}', 9)
    message = termination.ZPREFIX + base64.b64encode(bomb).decode()
    assert len(message) <= results.MAX_MESSAGE_BYTES
    assert results.decode_final(message) == "compressed termination message too large or cut"


def test_the_collector_keys_points_so_a_second_read_records_nothing_twice():
    c = Collector(DECLARED)
    text = [results.format_point(i, i, {"val_acc": 0.5 + i / 10}) for i in range(3)]
    for line in text + text:  # the same log read twice (an operator restart)
        c.feed_line(line)
    assert c.curve("val_acc") == [(0, 0.5), (1, 0.6), (2, 0.7)]
    assert not c.rejected and not c.gaps


def test_the_collector_refuses_and_counts_what_a_hostile_trial_prints():
    c = Collector(DECLARED)
    c.feed_line(results.format_point(0, 0, {"val_acc": 0.5}))
    c.feed_line(results.format_point(1, 0, {"val_acc": 0.99}))  # rewrites step 0
    c.feed_line(results.format_point(2, 1, {"val_acc": 0.6}, member=3))  # a pack member's
    c.feed_line(results.format_point(3, 1, {"secret": 1.0}))  # undeclared
    c.feed_line("NASOP1 {oops")
    c.feed_line(results.format_point(9, 2, {"val_acc": 0.7}))  # seq 4..8 never arrived
    assert c.curve("val_acc") == [(0, 0.5), (2, 0.7)]
    assert c.rejected == {
        "conflicting value for a step already reported": 1,
        "member index from a lone trial": 1,
        "not JSON after the prefix": 1,
    }
    assert c.ignored == {"secret": 1}  # not recorded; counted apart (not an error)
    assert c.gaps == [(None, 4, 8)]
    assert "5 lines missing (sequence gaps)" in c.problems()


def test_a_pack_collector_keeps_each_member_apart_and_refuses_strangers():
    c = Collector(DECLARED, members=[3, 4])
    c.feed_line(results.format_point(0, 0, {"val_acc": 0.5}, member=3))
    c.feed_line(results.format_point(0, 0, {"val_acc": 0.8}, member=4))
    c.feed_line(results.format_point(0, 0, {"val_acc": 0.9}, member=5))
    c.feed_line(lines.format_end(1, 3, "stopped", "asked to"))
    assert c.curve("val_acc", 3) == [(0, 0.5)] and c.curve("val_acc", 4) == [(0, 0.8)]
    assert c.rejected == {"member index not in this pack": 1}
    assert c.ends == {3: ("stopped", "asked to")}


def test_non_finite_values_are_kept_apart_for_the_final_value_rule():
    c = Collector(DECLARED)
    c.feed_line(results.format_point(0, 0, {"val_acc": 0.5}))
    c.feed_line(results.format_point(1, 1, {"val_acc": float("nan")}))
    assert c.curve("val_acc") == [(0, 0.5)]
    steps = c.curve("val_acc", finite_only=False)
    assert steps[0] == (0, 0.5) and steps[1][0] == 1 and steps[1][1] != steps[1][1]


def test_final_values_are_points_at_their_steps():
    c = Collector(DECLARED)
    c.add_final(None, {"val_acc": (3, 0.9), "num_params": (0, 100.0), "other": (0, 1.0)})
    assert c.curve("val_acc") == [(3, 0.9)] and c.curve("num_params") == [(0, 100.0)]
    assert c.finals == {None: {"val_acc": (3, 0.9), "num_params": (0, 100.0)}}


def test_the_splitter_skips_an_overlong_line_without_holding_it():
    s = LineSplitter(max_line=100)
    out = s.feed(b"short\n" + b"x" * 60)
    out += s.feed(b"y" * 60)  # over the cap: dropped as it streams
    assert s.pending == 0
    out += s.feed(b"z" * 10_000 + b"\nnext line\npart")
    assert out == ["short", "next line"] and s.too_long == 1 and s.pending == 4
    assert s.feed(b"ial\n") == ["partial"]


def test_a_megabyte_line_costs_a_bounded_buffer():
    s = LineSplitter()
    chunk = b"NASOP1 " + json.dumps({"step": 1, "v": {"a": "x" * (1 << 20)}}).encode()
    for i in range(0, len(chunk), 65536):
        s.feed(chunk[i : i + 65536])
        assert s.pending <= 64 * 1024
    assert s.feed(b"\n") == [] and s.too_long == 1


def test_a_first_line_past_seq_0_follows_lost_lines_and_is_a_gap():
    """Sequences start at 0: a log whose first lines were rotated away before any read (the
    kubelet serves only the current file) starts later, and that is a gap, not a clean start."""
    c = Collector(DECLARED)
    for seq in (3, 4):
        c.feed_line(results.format_point(seq, seq, {"val_acc": seq / 10}))
    assert c.gaps == [(None, 0, 2)]
    assert c.problems() == "3 lines missing (sequence gaps)"
    packed = Collector(DECLARED, members=[3, 4])
    packed.feed_line(results.format_point(0, 0, {"val_acc": 0.5}, member=3))
    packed.feed_line(results.format_point(2, 1, {"val_acc": 0.6}, member=4))
    assert packed.gaps == [(4, 0, 1)]  # each member's sequence starts at 0


def test_lines_lost_after_the_last_one_read_are_a_gap_from_the_termination_message():
    """No later line shows lines lost at the end (a log rotated after the trial's last lines);
    the termination message says how many were printed, so the reader knows."""
    message = results.encode_final({"val_acc": (4, 0.9)}, lines=6)
    decoded = results.decode_final(message)
    assert decoded == {None: {"final": {"val_acc": (4, 0.9)}, "lines": 6}}
    c = Collector(DECLARED)
    for seq in range(3):
        c.feed_line(results.format_point(seq, seq, {"val_acc": seq / 10}))
    c.add_printed(None, 6)
    assert c.gaps == [] and c.missing() == [(None, 3, 5)]
    assert c.problems() == "3 lines missing (sequence gaps)"
    for seq in range(3, 6):  # read after all (a later read of the same log): nothing missing
        c.feed_line(results.format_point(seq, seq, {"val_acc": seq / 10}))
    assert c.missing() == [] and c.problems() == ""
    pack = results.encode_final({}, {3: {"state": "completed", "final": {}, "lines": 2}})
    assert results.decode_final(pack)[3]["lines"] == 2  # type: ignore[index]
    p = Collector(DECLARED, members=[3])
    p.add_printed(3, 2)
    assert p.missing() == [(3, 0, 1)]  # a member's lines, none read
