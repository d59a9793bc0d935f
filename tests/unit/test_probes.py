"""Outage windows computed from recorded probes."""

from __future__ import annotations

from lab.probes import Record, Timeline, compute_outages


def _tl(pattern: str, step: float = 0.05) -> Timeline:
    tl = Timeline(step)
    tl.records = [Record(i * step, "api", c == ".", 0.001) for i, c in enumerate(pattern)]
    return tl


def test_no_failures_no_outage():
    tl = _tl("......")
    assert tl.outages() == [] and tl.outage_after(0.0) == 0.0


def test_one_window_ends_at_the_next_good_probe():
    tl = _tl("..xxxx..")
    (o,) = tl.outages()
    assert o.failed == 4 and o.start == 0.1 and abs(o.seconds - 0.2) < 1e-9


def test_outage_after_a_fault_runs_to_the_last_recovery():
    tl = _tl("..xx.xx...")
    # fault at t=0.05: last failure at 0.3, first good after it at 0.35
    assert abs(tl.outage_after(0.05) - 0.30) < 1e-9
    assert len(tl.outages()) == 2


def test_unfinished_outage_ends_at_the_last_probe():
    (o,) = compute_outages(_tl("..xxx").records)
    assert o.failed == 3 and abs(o.end - (0.2 + 0.001)) < 1e-9


def test_kinds_are_separate():
    tl = _tl("..x..")
    tl.records.append(Record(0.5, "http", False, 0.1))
    assert len(tl.outages("api")) == 1 and len(tl.failures("http")) == 1
