"""Chaos runs against the real lab: the split-brain scenario, and a short `halab chaos`
whose journal, JUnit XML and HTML report must exist and parse."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from lab import observe
from lab.chaos import runner, scenario

pytestmark = [pytest.mark.needs_lab, pytest.mark.disruptive]
ROOT = Path(__file__).resolve().parents[1]
# Short scenarios for CI: a fast failover each way, and a backend one.
CI_SCENARIOS = "keepalived-stop,haproxy-restart,apiserver-kill"


def test_split_brain_is_detected_and_heals_to_one_holder(steady, report_outage):
    lab = steady
    sc = scenario.load_all(names=["split-brain"])[0]
    run = runner.run_scenario(lab, sc)
    assert run.status == "passed", run.problems
    labels = [s.label for s in run.steps if s.ok]
    master = lab.topo.master_lb.name
    backup = lab.topo.best_backup_lb.name
    # Detected: the VIP on both LBs while partitioned ...
    assert any(f"VIP on {master} + {backup}" in x for x in labels), labels
    # ... and the timeline saw both holding at once.
    tl = run.timeline
    both = {h["t"] for h in tl["holdings"] if h["holds"] and h["lb"] == master} and {
        h["t"] for h in tl["holdings"] if h["holds"] and h["lb"] == backup}
    assert both
    # Healed: exactly one holder, and the client's ARP entry points at it.
    assert observe.vip_holders(lab) == [master]
    assert observe.neighbour_mac(lab, lab.vip) == observe.lab_mac(lab, master)
    report_outage("split brain heal (partition lb01<->lb02)", run.outages["api (windows)"],
                  next(e["why"] for e in run.expected if e["kind"] == "api"))


class _Svgs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.svgs = 0

    def handle_starttag(self, tag, attrs):
        self.svgs += tag == "svg"


def test_short_chaos_run_writes_a_report_that_parses(steady, lab_file, tmp_path):
    out = tmp_path / "report"
    p = subprocess.run([sys.executable, "-m", "lab", "chaos", "-f", str(lab_file),
                        "--iterations", "2", "--seed", "7", "--scenarios", CI_SCENARIOS,
                        "--report", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    j = json.loads((out / "journal.json").read_text())
    assert j["seed"] == 7 and len(j["runs"]) == 2 and j["finished"]
    assert [r["scenario"] for r in j["runs"]] == j["plan"]
    assert all(r["status"] == "passed" for r in j["runs"])
    for r in j["runs"]:
        assert r["timeline"]["records"] and r["timeline"]["holdings"] and r["windows"]
        assert all(e["ok"] and e["measured"] <= e["allowed"] for e in r["expected"])
    suite = ET.parse(out / "junit.xml").getroot()
    assert suite.tag == "testsuite" and suite.get("tests") == "2"
    assert suite.get("failures") == "0" and len(suite.findall("testcase")) == 2
    parser = _Svgs()
    parser.feed((out / "report.html").read_text())
    assert parser.svgs == 2  # one timeline plot per scenario run
    # The same seed plans the same sequence (the run is reproducible).
    chosen = scenario.load_all(names=CI_SCENARIOS.split(","))
    assert [s.name for s in runner.plan(chosen, 2, 7)] == j["plan"]
