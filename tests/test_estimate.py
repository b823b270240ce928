"""The estimate `veritrain run` gives before an epoch's proof starts, and its progress lines
(pipeline/prove/estimate.py): no proving here, the parts' times are given."""

from __future__ import annotations

import json

from veritrain.pipeline.prove import estimate
from veritrain.pipeline.prove.estimate import DEFAULT_SECONDS, Rates, plan


def test_segment_sizes_fill_the_limit_but_the_last():
    # Measured: a digits epoch is 81 segments of 2^14 and one of 2^13 at 14, one of 2^18 at 20.
    assert estimate.segment_po2s(81 * 2**14 + 2**13, 82, 14) == [14] * 81 + [13]
    assert estimate.segment_po2s(2**18, 1, None) == [18]
    assert estimate.segment_po2s(3 * 2**16, 3, 16) == [16, 16, 16]
    # Counts that do not add up are read as segments of the limit, never an error.
    assert estimate.segment_po2s(5, 2, 16) == [16, 16]


def test_rates_keep_the_newest_measurements_and_use_their_median(tmp_path):
    rates = Rates.load(tmp_path)
    assert rates.part_seconds("join") == (DEFAULT_SECONDS["join"], False)
    for s in (100, 900, 110, 120, 130, 140):
        rates.record("join", s)
    kept = json.loads((tmp_path / estimate.RATES_FILE).read_text())
    assert kept == {"join": [900.0, 110.0, 120.0, 130.0, 140.0]}
    assert Rates.load(tmp_path).part_seconds("join") == (130.0, True)


def test_a_segment_size_measured_nowhere_scales_the_nearest_by_cycles(tmp_path):
    rates = Rates.load(tmp_path)
    assert rates.part_seconds("segment-19") == (2 * DEFAULT_SECONDS["segment-18"], False)
    assert rates.part_seconds("segment-18") == (DEFAULT_SECONDS["segment-18"], False)
    rates.record("segment-17", 100.0)
    assert rates.part_seconds("segment-16") == (50.0, True)
    assert rates.part_seconds("segment-18") == (200.0, True)


def test_an_unreadable_rates_file_is_no_rates(tmp_path):
    (tmp_path / estimate.RATES_FILE).write_text('{"join": ["fast"], "resolve": [12')
    assert Rates.load(tmp_path).seconds == {}
    (tmp_path / estimate.RATES_FILE).write_text('{"join": ["fast"], "resolve": [12]}')
    assert Rates.load(tmp_path).seconds == {"resolve": [12.0]}


def test_a_plan_says_cycles_segments_parts_and_where_its_rates_come_from(tmp_path):
    rates = Rates.load(tmp_path)
    p = plan(1, 140_000, 3 * 2**16, 3, 16, rates)
    assert (p.po2s, p.joins, p.resolve, p.parts) == ((16, 16, 16), 2, True, 6)
    s16, join, resolve = (DEFAULT_SECONDS[k] for k in ("segment-16", "join", "resolve"))
    assert p.total == 3 * s16 + 2 * join + resolve
    line = p.line()
    assert line.startswith(
        "epoch 1: to prove 196,608 cycles (140,000 user) in 3 segments (3 of 2^16), 2 joins, "
        "1 resolve: about "
    )
    assert f"({2**16 / s16:,.0f} cycles/s)" in line
    assert line.endswith(f"{estimate.DEFAULT_SOURCE}: none measured on this machine yet)")
    for kind in ("join", "resolve"):
        rates.record(kind, 10.0)
    p = plan(0, 1, 2**18, 1, None, rates)
    assert (p.po2s, p.joins, p.resolve) == ((18,), 0, False)
    assert "1 segment (1 of 2^18), 0 joins, no resolve" in p.line()
    assert p.line().endswith("none measured on this machine yet)"), "its one part is a default"
    assert (
        "rates measured on this machine where it has them" in plan(1, 1, 2**18, 1, 20, rates).line()
    )
    rates.record("segment-16", 10.0)
    assert plan(1, 1, 2**17, 2, 16, rates).line().endswith("; rates measured on this machine)")


def test_progress_lines_count_parts_and_what_is_left(tmp_path):
    p = plan(1, 1, 2 * 2**16, 2, 16, Rates.load(tmp_path))
    progress = estimate.ProofProgress(p)
    first = progress.done("segment", 2, 2, 151.0, by="worker-a")
    assert first.startswith("epoch 1: segment 2/2 proven and lifted by worker-a in 2 min 31 s")
    left = p.total - DEFAULT_SECONDS["segment-16"]
    assert first.endswith(f"elapsed, about {estimate.duration(left)} left)")
    assert "segment 1/2 proven and lifted earlier (stored already)" in progress.done(
        "segment", 1, 2, None
    )
    assert progress.done("join", 1, 1, 3.0).startswith("epoch 1: join 1/1 done in 3 s")
    last = progress.done("resolve", 1, 1, 99.0)
    assert "epoch 1: the previous epoch's receipt resolved in 1 min 39 s" in last
    assert last.endswith("the rest is quick)")
    assert progress.completed == p.parts


def test_durations_read_as_minutes_and_hours():
    assert [estimate.duration(s) for s in (4.4, 59.6, 441, 7322)] == [
        "4 s",
        "1 min 00 s",
        "7 min 21 s",
        "2 h 02 min",
    ]
