"""The soak's verdict from a journal and the harness's samples (no lab): each check passes on
a good soak and fails on the loss it is there to see."""

from __future__ import annotations

import copy

from lab import soak
from lab.soak import Sample


def _run(seq: int, fds: int = 14, rss: int = 70_000) -> dict:
    return {"seq": seq, "fds": fds, "rss_kib": rss, "scenario": "haproxy-kill", "status": "passed",
            "faults": ["kill lb01 service=haproxy"], "undone": ["kill lb01 service=haproxy"],
            "probes": {"api": 300, "https": 300}, "max_gap_s": {"api": 0.6, "https": 0.55},
            "probe_errors": []}


GOOD = {"runs": [_run(1), _run(2, 15, 70_600), _run(3, 15, 70_500)]}
SAMPLES = [Sample(0, 60_000, 9, 1), Sample(20, 70_000, 14, 3), Sample(40, 71_000, 22, 9),
           Sample(60, 70_500, 15, 3)]


def _failed(v: soak.Verdict) -> list[str]:
    return [c.name for c in v.checks if not c.ok]


def test_a_good_soak_passes_and_says_its_numbers():
    v = soak.verify(GOOD, 3, SAMPLES)
    assert v.ok, v.checks
    text = "\n".join([c.detail for c in v.checks] + v.lines)
    assert "seq 1..3 contiguous" in text and "3 faults, each undone" in text
    assert "open files: start 9, after warm-up 14, max 22, end 15 (+1 since warm-up" in text
    assert "memory (RSS): start 58.6 MiB, after warm-up 68.4 MiB, max 69.3 MiB" in text


def test_a_lost_record_fails():
    data = copy.deepcopy(GOOD)
    del data["runs"][1]
    assert _failed(soak.verify(data, 3, SAMPLES)) == ["records"]
    assert _failed(soak.verify(GOOD, 4, SAMPLES)) == ["records"]  # played 4, journalled 3


def test_a_fault_without_its_undo_fails():
    data = copy.deepcopy(GOOD)
    data["runs"][2]["undone"] = []
    v = soak.verify(data, 3, SAMPLES)
    assert _failed(v) == ["undos"] and "#3 kill lb01 service=haproxy" in v.checks[2].detail


def test_an_unfinished_record_fails():
    data = copy.deepcopy(GOOD)
    data["runs"][2]["status"] = "running"
    assert _failed(soak.verify(data, 3, SAMPLES)) == ["finished"]


def test_probes_that_stopped_recording_fail():
    data = copy.deepcopy(GOOD)
    data["runs"][0]["max_gap_s"]["api"] = soak.STALL_S + 1
    assert _failed(soak.verify(data, 3, SAMPLES)) == ["probes"]
    data = copy.deepcopy(GOOD)
    data["runs"][1]["probe_errors"] = ["the api probe thread died"]
    assert _failed(soak.verify(data, 3, SAMPLES)) == ["probes"]


def test_growing_open_files_or_memory_fail():
    leaking = copy.deepcopy(GOOD)
    leaking["runs"][2]["fds"] = 14 + soak.FD_SLACK + 1
    assert _failed(soak.verify(leaking, 3, SAMPLES)) == ["open files"]
    bloating = copy.deepcopy(GOOD)
    bloating["runs"][2]["rss_kib"] = 70_000 + soak.RSS_SLACK_KIB + 1
    assert _failed(soak.verify(bloating, 3, SAMPLES)) == ["memory (RSS)"]
