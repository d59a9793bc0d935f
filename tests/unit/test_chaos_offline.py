"""Chaos runs without a lab: scenario files, seeded plans, journal, JUnit, report."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.chaos import bounds, journal, junit, report, runner, scenario
from lab.errors import HalabError
from lab.faults import CATALOGUE
from lab.probes import Holding, Record, Timeline

FIXED = {"kill", "stop", "restart", "crash", "freeze", "link-down", "partition", "loss",
         "delay", "apiservers-down", "ingress-down"}


def test_builtin_scenarios_load_and_cover_the_catalogue():
    scs = scenario.load_all()
    used = {s.fault or s.undo for sc in scs for s in [*sc.method, *sc.rollback_steps()]
            if s.fault or s.undo}
    assert FIXED <= used, FIXED - used
    assert FIXED <= set(CATALOGUE)
    for sc in scs:
        assert sc.hypothesis.probes and sc.method


def test_every_builtin_bound_comes_from_the_config(default_topo):
    for sc in scenario.load_all():
        for e in [*sc.expect.outage, *sc.expect.rollback_outage]:
            b = bounds.bound(e.bound, default_topo)
            assert b.seconds >= 0 and b.why


def test_aliases_resolve_against_the_topology(default_topo):
    assert scenario.resolve(default_topo, ["@master-lb", "@backup-lb", "@apiserver-3",
                                           "@ingress-1", "client"]) == [
        "lb01", "lb02", "k8s-master-07", "k8s-master-01", "client"]
    with pytest.raises(HalabError, match="@apiserver-1 ... @apiserver-3"):
        scenario.resolve(default_topo, ["@apiserver-4"])
    with pytest.raises(HalabError, match="no node 'lb09'"):
        scenario.resolve(default_topo, ["lb09"])


@pytest.mark.parametrize("text, message", [
    ("title: x\nsteady-state-hypothesis: {probes: [{name: lab-steady}]}\n"
     "method: [{fault: nosuch}]\n", "unknown fault 'nosuch'"),
    ("title: x\nsteady-state-hypothesis: {probes: [{name: lab-steady}]}\n"
     "method: [{pause: 1, fault: kill}]\n", "exactly one of"),
    ("title: x\nsteady-state-hypothesis: {probes: [{name: lab-steady}]}\n"
     "method: [{wait: {vip: [lb02], within: forever}}]\n", "unknown bound 'forever'"),
    ("title: x\nmethod: [{pause: 1}]\n", "steady-state-hypothesis"),
    ("title: [x\n", "YAML syntax error at line"),
])
def test_bad_scenario_is_one_clear_error(tmp_path, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(HalabError, match=message.replace("(", r"\(").replace(".", r"\.")):
        scenario.load(f)


def test_unknown_scenario_name(tmp_path):
    with pytest.raises(HalabError, match="no scenario 'nope'"):
        scenario.load_all(names=["nope"])


def test_the_seed_fixes_the_sequence():
    scs = scenario.load_all()
    a = [s.name for s in runner.plan(scs, 10, 1)]
    assert a == [s.name for s in runner.plan(list(reversed(scs)), 10, 1)]
    assert a != [s.name for s in runner.plan(scs, 10, 2)]


def _recorded_timeline() -> Timeline:
    """Probes every 50 ms; the API fails from 1.0 s to 4.5 s, the VIP moves at 4.4 s."""
    tl = Timeline(0.05)
    for i in range(160):
        t = i * 0.05
        tl.records.append(Record(t, "api", not (1.0 <= t < 4.5), 0.002 if t < 1 else 0.5,
                                 via="192.168.0.101" if t < 1 else "192.168.0.102"))
        tl.holdings += [Holding(t, "lb01", t < 4.4), Holding(t, "lb02", t >= 4.4)]
    tl.marks.append((1.0, "kill lb01 service=haproxy"))
    return tl


def test_outage_from_recorded_timeline_survives_the_journal(tmp_path):
    tl = _recorded_timeline()
    assert abs(tl.outage_after(1.0) - 3.5) < 1e-6
    back = Timeline.from_dict(json.loads(json.dumps(tl.to_dict())))
    (o,) = back.outages("api")
    assert abs(o.start - 1.0) < 1e-6 and abs(o.end - 4.5) < 1e-6 and o.failed == 70
    # Cut at a rollback at 3.0 s: the last failure (2.95 s) counts with its 0.5 s timeout.
    assert abs(back.outage_after(1.0, until=3.0) - 2.45) < 1e-6
    assert back.holders_at(2.0) == ["lb01"] and back.holders_at(5.0) == ["lb02"]
    assert back.holders_at(20.0) is None  # no fresh sample: unknown, not "nobody"


def _journal(tmp_path: Path) -> dict:
    tl = _recorded_timeline()
    run = runner.Run(1, "haproxy-kill", "HAProxy SIGKILLed", status="failed",
                     problems=["api outage 3.50 s exceeds the bound 3.00 s"],
                     windows=[runner.FaultWindow("kill lb01 service=haproxy", 1.0, 6.0)],
                     outages={"api": 3.5},
                     expected=[{"kind": "api", "phase": "method", "bound": "haproxy_crash",
                                "seconds": 1.5, "allowed": 3.0, "why": "test", "measured": 3.5,
                                "ok": False, "from": 1.0}],
                     steps=[runner.StepResult("kill lb01 service=haproxy", "method", True,
                                              1.0, 0.01)],
                     timeline=tl.to_dict())
    j = journal.Journal(tmp_path / "journal.json", {"seed": 1, "iterations": 2, "lab": "t",
                                                    "provider": "netns", "lb_addresses": {
                                                        "192.168.0.101": "lb01",
                                                        "192.168.0.102": "lb02"}})
    i = j.begin({"index": 1, "scenario": run.scenario, "title": run.title})
    j.finish(i, run.to_dict())
    j.begin({"index": 2, "scenario": "split-brain", "title": "crashed mid-way"})
    return journal.read(tmp_path / "journal.json")


def test_journal_parses_after_every_event_and_keeps_unfinished_runs(tmp_path):
    data = _journal(tmp_path)
    assert [r["status"] for r in data["runs"]] == ["failed", "running"]
    assert data["finished"] is None and runner.failed(data)


def test_junit_and_report_from_a_journal(tmp_path):
    data = _journal(tmp_path)
    junit.write(tmp_path / "junit.xml", data)
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "1", "1")
    case = suite.find("testcase")
    assert case.find("failure").get("message").startswith("api outage 3.50 s")
    html = report.render(data)
    assert html.count("<svg") == 1  # the unfinished run has no timeline to plot
    assert "EXCEEDED" in html and "kill lb01 service=haproxy" in html
    assert "no timeline" in html
