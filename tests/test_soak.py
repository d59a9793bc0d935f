"""A short soak (~1 minute) on the session's lab: `halab soak` plays random LB failovers
under probes, then its journal must have lost no record (sequence contiguous, every fault
undone, probes recording throughout) and the harness's memory and open files must be flat.
The figures it prints are the soak's record of this machine."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.needs_lab, pytest.mark.disruptive, pytest.mark.soak]


def test_one_minute_soak_loses_nothing_and_stays_flat(steady, lab_file, tmp_path):
    report = tmp_path / "soak"
    p = subprocess.run([sys.executable, "-m", "lab", "soak", "-f", str(lab_file), "--minutes",
                        "1", "--seed", "7", "--report", str(report)],
                       capture_output=True, text=True, timeout=600)
    print(p.stdout)
    assert "Traceback" not in p.stderr, p.stderr
    lines = p.stdout.splitlines()
    for check in ("records", "finished", "undos", "probes", "memory (RSS)", "open files"):
        assert any(ln.startswith(f"ok: {check}: ") for ln in lines), \
            f"soak check {check} did not pass:\n{p.stdout}\n{p.stderr}"
    data = json.loads((report / "journal.json").read_text())
    assert data["kind"] == "soak" and data["seed"] == 7
    assert len(data["runs"]) >= 2, "a minute holds at least two failovers"
    assert len(data["summary"]["samples"]) >= 20  # every 2 s
