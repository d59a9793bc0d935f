"""The one measuring path, offline: figures and verdicts from recorded timelines.

Two journals recorded on the embedded lab (tests/unit/data): HAProxy SIGKILLed on lb01 in
a healthy lab, and the same with lb02's kernel dropping traffic to the VIP (the VIP moves,
nobody serves). Every other timeline here is built by hand for one rule of the verdict.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from lab import measure, observe, timing, topology
from lab.chaos import runner, scenario
from lab.errors import TransportError
from lab.probes import Holding, Prober, Record, Timeline
from lab.transport import Result

DATA = Path(__file__).with_name("data")


def _recorded(name: str) -> tuple[Timeline, dict]:
    d = json.loads((DATA / f"{name}.json").read_text())
    return Timeline.from_dict(d["timeline"]), d


def _tl(pattern: str, step: float = 0.05, *, stage: str = "connect",
        holders: dict[str, str] | None = None) -> Timeline:
    """Probes from a pattern ('.' good, 'x' failed), one every ``step`` s from t=0;
    ``holders``: per LB a pattern of '1' (holds), '0' (does not), '?' (unknown)."""
    tl = Timeline(step, timeout=0.5, started=0.0, ended=len(pattern) * step)
    tl.records = [Record(i * step, "api", c == ".", 0.001, "" if c == "." else "refused",
                         stage="" if c == "." else stage) for i, c in enumerate(pattern)]
    for lb, p in (holders or {}).items():
        tl.holdings += [Holding(i * step, lb, None if c == "?" else c == "1")
                        for i, c in enumerate(p)]
    return tl


# -- recorded journals ---------------------------------------------------------------------
def test_recorded_haproxy_crash_passes_within_its_bound(default_topo):
    tl, d = _recorded("haproxy-crash")
    bound = timing.haproxy_crash(default_topo)
    v = measure.judge(measure.measure(tl, 0.0, to=d["backup"]), outage=bound, move=bound)
    assert v.passed, str(v)
    f = v.figures
    assert f.recovered and 2.0 < f.outage_s <= bound.with_margin
    assert f.moved_s is not None and abs(f.moved_s - f.outage_s) < 0.5
    assert f.served_via == "192.168.0.102"


def test_recorded_backup_that_never_serves_fails(default_topo):
    tl, d = _recorded("backup-blackholed")
    bound = timing.haproxy_crash(default_topo)
    v = measure.judge(measure.measure(tl, 0.0, to=d["backup"]), outage=bound, move=bound)
    assert v.status == "failed"
    assert "no good api probe after the failures" in str(v)
    # The VIP did move: a verdict on the VIP alone would have passed.
    assert v.figures.moved_s is not None and v.figures.moved_s < bound.with_margin


def test_recorded_journal_round_trips_with_stage():
    tl, _ = _recorded("haproxy-crash")
    again = Timeline.from_dict(tl.to_dict())
    assert [r.stage for r in again.of()] == [r.stage for r in tl.of()]
    assert {r.stage for r in tl.of() if not r.ok} <= {"connect", "exchange"}
    assert any(r.stage == "connect" for r in tl.of())


# -- the rules -----------------------------------------------------------------------------
def test_outage_ends_at_the_first_good_probe_after_the_last_failure():
    f = measure.measure(_tl("..xx.xx..."), 0.05)
    assert f.recovered and abs(f.outage_s - 0.30) < 1e-9 and f.failed == 4


def test_no_recovery_within_the_span_fails_whatever_the_bound():
    tl = _tl("....xxxxxxxx" + "....")  # good again only after t=0.6
    f = measure.measure(tl, 0.2, until=0.6)
    assert not f.recovered
    v = measure.judge(f, outage=timing.Bound(100, "generous"))
    assert v.status == "failed" and "no good api probe" in str(v)


def test_outage_beyond_the_bound_fails():
    v = measure.judge(measure.measure(_tl("..xxxxxxxx.."), 0.1),
                      outage=timing.Bound(0.1, "tiny", margin=0.0))
    assert v.status == "failed" and "exceeds the bound" in str(v)


def test_refused_and_cut_are_told_apart():
    tl = _tl("..x..")
    tl.records.append(Record(0.12, "api", False, 0.01, "reset", stage="exchange"))
    f = measure.measure(tl, 0.0)
    assert (f.refused, f.cut) == (1, 1)
    assert measure.judge(f, max_refused=0).status == "failed"
    assert measure.judge(f, max_refused=1, max_cut=1).passed


def test_a_cut_exchange_fails_a_zero_allowance():
    tl = _tl(".....")
    tl.records.append(Record(0.12, "api", False, 0.1, "reset", stage="exchange"))
    assert measure.judge(measure.measure(tl, 0.0), max_refused=0, max_cut=0).status == "failed"


def test_bad_answers_are_counted():
    tl = _tl("...")
    tl.records.append(Record(0.07, "api", False, 0.01, "HTTP 500", 500, stage="answer"))
    f = measure.measure(tl, 0.0)
    assert f.bad_answers == 1 and measure.judge(f, max_failed=0).status == "failed"


def test_vip_never_seen_alone_on_the_backup_fails():
    tl = _tl("..........", holders={"lb01": "1111111111", "lb02": "0000011111"})
    v = measure.judge(measure.measure(tl, 0.1, to="lb02"))
    assert v.status == "failed" and "never seen on lb02 alone" in str(v)


def test_vip_move_is_timed_by_the_samples():
    tl = _tl("..........", holders={"lb01": "1111000000", "lb02": "0000001111"})
    f = measure.measure(tl, 0.1, to="lb02")
    assert abs(f.moved_s - 0.2) < 1e-9
    assert measure.judge(f, move=timing.Bound(0.1, "x", margin=0.0)).status == "failed"
    assert measure.judge(f, move=timing.Bound(0.3, "x", margin=0.0)).passed


def test_a_move_between_samples_that_straddle_the_bound_is_unknown():
    # lb02 sampled every 0.3 s (an emulated VM's sampler): last seen without the VIP 0.15 s
    # after the fault, first seen with it alone 0.45 s after. A bound of 0.3 s lies between:
    # neither kept nor broken, as far as the samples tell.
    tl = _tl("..............", holders={"lb01": "11000000000000"})
    tl.holdings += [Holding(t, "lb02", t > 0.3) for t in (0.0, 0.25, 0.55)]
    f = measure.measure(tl, 0.1, to="lb02")
    assert f.moved_after_s == pytest.approx(0.15) and f.moved_s == pytest.approx(0.45)
    v = measure.judge(f, move=timing.Bound(0.3, "x", margin=0.0))
    assert v.status == "unknown" and "sampled too far apart" in str(v)
    # Samples close enough to tell: the same move against a bound below both is late.
    assert measure.judge(f, move=timing.Bound(0.1, "x", margin=0.0)).status == "failed"
    assert measure.judge(f, move=timing.Bound(0.5, "x", margin=0.0)).passed


def test_an_lb_that_cannot_be_asked_is_unknown_not_absent():
    # lb01 unknown from the fault on: "only lb02 holds the VIP" cannot be said.
    tl = _tl("..........", holders={"lb01": "11????????", "lb02": "0000011111"})
    assert tl.holders_at(0.4) is None
    v = measure.judge(measure.measure(tl, 0.1, to="lb02"))
    assert v.status == "unknown" and "could not be asked" in str(v)


def test_an_lb_that_is_down_holds_nothing():
    tl = _tl("..........", holders={"lb02": "0000011111"})
    tl.holdings += [Holding(i * 0.05, "lb01", i < 2, "" if i < 2 else "crashed")
                    for i in range(10)]
    assert tl.holders_at(0.4) == ["lb02"]
    assert measure.measure(tl, 0.1, to="lb02").moved_s == pytest.approx(0.15)


def test_holders_are_judged_in_time_order_not_arrival_order():
    # lb02's samples arrive late (appended after lb01's): at t=0.2 both held the VIP.
    tl = Timeline(0.05)
    tl.holdings += [Holding(t, "lb01", t <= 0.2) for t in (0.0, 0.1, 0.2, 0.3)]
    tl.holdings += [Holding(t, "lb02", t >= 0.2) for t in (0.0, 0.1, 0.2, 0.3)]
    assert tl.holders_at(0.2) == ["lb01", "lb02"]
    assert tl.held_alone_from("lb02", 0.0) == 0.3


def test_stale_samples_are_unknown():
    tl = Timeline(0.05)
    tl.holdings += [Holding(0.0, "lb01", True), Holding(0.0, "lb02", False),
                    Holding(2.0, "lb02", False)]
    assert tl.holders_at(2.0) is None  # lb01 silent for 2 s: neither holding nor not


def test_a_hole_in_the_probing_is_unknown():
    tl = _tl("....." + "....")
    tl.records = [r for r in tl.records if not 0.1 < r.t < 0.4] + [
        Record(1.5, "api", True, 0.001)]
    tl.ended = 1.6
    v = measure.judge(measure.measure(tl, 0.0))
    assert v.status == "unknown" and "no api probe started for" in str(v)


def test_a_dead_probe_thread_is_recorded_and_unknown(tmp_path):
    class Dying(Prober):
        def __init__(self) -> None:
            self.timeout, self.calls = 0.5, 0

        def probe(self, kind: str = "api", path: str = "/healthz",
                  timeout: float | None = None) -> Record:
            self.calls += 1
            if self.calls > 3:
                raise RuntimeError("probe blew up")
            return Record(time.monotonic(), kind, True, 0.001)

    with Dying().continuous(interval=0.01) as tl:
        time.sleep(0.2)
    assert any("probe thread died" in e and "probe blew up" in e for e in tl.errors)
    v = measure.judge(measure.measure(tl, tl.started))
    assert v.status == "unknown"


def test_an_unexpected_watch_error_is_recorded():
    # Any exception in a watch stream thread (not a transport error) ends up in errors.
    tl = Timeline(0.05)
    w = observe.VipWatch.__new__(observe.VipWatch)
    w._stop, w._lock, w._streams = threading.Event(), threading.Lock(), {}

    class Broken:
        def lines(self, idle_timeout: float):
            raise ValueError("garbled")

        def close(self) -> None:
            w._stop.set()

    class Lab:
        vip = "192.168.0.203"

        class topo:
            class network:
                interface = "eth1"

        class provider:
            @staticmethod
            def node_state(name):
                return "running"

        @staticmethod
        def node(name):
            class N:
                class transport:
                    @staticmethod
                    def stream(cmd):
                        return Broken()
            return N

    w.lab = Lab
    w._follow("lb01", tl, 0.05)
    assert any("garbled" in e for e in tl.errors)
    assert tl.holdings[-1].holds is None


# -- observe: unknown is never "does not hold" ---------------------------------------------
class _Lb:
    def __init__(self, name: str, result: Result | Exception) -> None:
        self.name, self._result = name, result

    def run(self, command: str, *args: object, timeout: float | None = 60) -> Result:
        if isinstance(self._result, Exception):
            raise self._result
        return self._result


class _Lab:
    vip = "192.168.0.203"

    def __init__(self, lbs: list[_Lb], states: dict[str, str]) -> None:
        self.load_balancers, self._states = lbs, states
        self.topo = type("T", (), {"network": type("N", (), {"interface": "eth1"})})
        self.provider = type("P", (), {"node_state": lambda _s, n: states[n]})()

    def node(self, name: str) -> _Lb:
        return next(lb for lb in self.load_balancers if lb.name == name)


HOLDS = Result("ip", 0, "3: eth1    inet 192.168.0.102/24 brd x\n"
                        "3: eth1    inet 192.168.0.203/32 scope global eth1\n", "")
EMPTY = Result("ip", 0, "3: eth1    inet 192.168.0.101/24 brd x\n", "")


def test_vip_holders_raise_when_a_running_lb_cannot_be_asked():
    lab = _Lab([_Lb("lb01", TransportError("ssh broke")), _Lb("lb02", HOLDS)],
               {"lb01": "running", "lb02": "running"})
    with pytest.raises(observe.ObservationError, match="cannot ask lb01"):
        observe.vip_holders(lab)
    lab = _Lab([_Lb("lb01", Result("ip", 1, "", "Device not found")), _Lb("lb02", HOLDS)],
               {"lb01": "running", "lb02": "running"})
    with pytest.raises(observe.ObservationError, match="exited 1"):
        observe.vip_holders(lab)


def test_vip_holders_skip_an_lb_that_is_down():
    lab = _Lab([_Lb("lb01", TransportError("gone")), _Lb("lb02", HOLDS)],
               {"lb01": "crashed", "lb02": "running"})
    assert observe.vip_holders(lab) == ["lb02"]
    lab = _Lab([_Lb("lb01", EMPTY), _Lb("lb02", HOLDS)], {"lb01": "running", "lb02": "running"})
    assert observe.vip_holders(lab) == ["lb02"]


# -- bounds that can tell paths apart ------------------------------------------------------
@pytest.mark.parametrize("advert, version", [(1, 2), (3, 2), (0.1, 3), (1, 3)])
def test_keepalived_stop_bound_excludes_the_slow_path(default_topo, advert, version):
    k = default_topo.keepalived.model_copy(update={"advert_int": advert,
                                                   "vrrp_version": version})
    topo = default_topo.model_copy(update={"keepalived": k})
    b = timing.keepalived_stop(topo)
    prio = topo.best_backup_lb.vrrp.priority + topo.keepalived.check.weight
    slow_earliest = timing.master_down_interval(prio, advert, version) - advert
    assert b.with_margin < slow_earliest


# -- chaos: a scenario is judged on the client's recovery, and skips are honest -------------
def test_chaos_method_with_no_recovery_before_the_rollback_fails(default_topo):
    sc = scenario.load_all(names=["lb-crash"])[0]
    tl = _tl("...." + "x" * 100 + "....", holders={"lb01": "1" * 4 + "0" * 104,
                                                    "lb02": "0" * 20 + "1" * 88})
    run = runner.Run(1, sc.name, sc.title)
    t_fault, t_rb = 0.2, 5.2  # the rollback at 5.2 s: within the node_crash bound
    runner.judge_outages(run, sc, default_topo, tl, t_fault, t_rb, tl.ended, lambda t: t)
    assert any("no good api probe" in p for p in run.problems), run.problems
    assert run.expected and not run.expected[0]["ok"]


def test_chaos_method_with_recovery_passes_its_outage(default_topo):
    sc = scenario.load_all(names=["lb-crash"])[0]
    tl = _tl("...." + "x" * 60 + "." * 40, holders={"lb01": "1" * 4 + "0" * 100,
                                                    "lb02": "0" * 20 + "1" * 84})
    run = runner.Run(1, sc.name, sc.title)
    runner.judge_outages(run, sc, default_topo, tl, 0.2, 5.0, tl.ended, lambda t: t)
    assert run.problems == [] and run.expected[0]["ok"]


def test_chaos_method_excuses_its_own_preemptions_handover_gap():
    """haproxy-restart on the fast profile, as a chaos run recorded it: two probes lost
    as the VIP went to lb02 (0.1 s, within the crash bound), then one cut in flight 0.45 s
    after the fault, as lb01 preempted it back. That one is the preemption's handover gap,
    excused as the rollback's and the failover test's are, not the crash's outage."""
    topo = topology.load(Path(__file__).parents[2] / "lab.yaml", profile="fast")
    sc = scenario.load_all(names=["haproxy-restart"])[0]
    tl = _tl("." * 20 + "xx" + "." * 7 + "x" + "." * 20)
    t_fault, t_rb = 1.0, 2.2
    gap = (1.446, 1.46)  # lb01's first advert as MASTER again, then its gratuitous ARP
    run = runner.Run(1, sc.name, sc.title)
    runner.judge_outages(run, sc, topo, tl, t_fault, t_rb, tl.ended, lambda t: t,
                         method_gap=gap)
    assert run.outages["api"] == pytest.approx(0.1) and run.problems == [], run.problems
    # Without the gap (no preemption seen on the wire) the cut probe ends the outage.
    run = runner.Run(1, sc.name, sc.title)
    runner.judge_outages(run, sc, topo, tl, t_fault, t_rb, tl.ended, lambda t: t)
    assert run.outages["api"] == pytest.approx(0.5)
    assert any("exceeds the bound" in p for p in run.problems), run.problems
    # A failure outside the gap is never excused.
    run = runner.Run(1, sc.name, sc.title)
    runner.judge_outages(run, sc, topo, tl, t_fault, t_rb, tl.ended, lambda t: t,
                         method_gap=(1.2, 1.3))
    assert any("exceeds the bound" in p for p in run.problems), run.problems


def test_skipped_step_with_a_failed_rollback_is_a_failure():
    steps = [runner.StepResult("delay lb02", "method", False, 0, 0, "no netem", True),
             runner.StepResult("undo delay lb02", "rollback", False, 0, 0, "ssh broke")]
    assert runner.outcome(steps, []) == "failed"
    assert runner.outcome(steps[:1], []) == "skipped"
    assert runner.outcome(steps[:1], ["could not restore the lab afterwards: x"]) == "failed"
    assert runner.outcome([], []) == "passed"


# -- the lab's own timers ------------------------------------------------------------------
def _adverts(src: str, times: list[float], prio: int = 100):
    from lab.wire import Advert

    return [Advert(t, src, "192.168.0.102", 2, 51, prio, 1.0, ("192.168.0.203",), 255)
            for t in times]


def test_cadence_is_the_median_interval_of_one_sender():
    ads = _adverts("192.168.0.101", [0, 1.0, 2.0, 3.1]) + _adverts("192.168.0.102", [6.5, 7.5])
    c = measure.cadence(ads, 1.0)
    assert c is not None and c.measured_s == pytest.approx(1.0) and c.kept


def test_late_timers_make_a_timing_verdict_inconclusive_never_a_pass_or_too_slow():
    slow = measure.cadence(_adverts("192.168.0.101", [0, 1.9, 3.8, 5.7]), 1.0)
    assert slow is not None and not slow.kept
    late = measure.measure(_tl("..xxxxxxxxxx.."), 0.1)
    v = measure.judge(late, outage=timing.Bound(0.1, "tiny", margin=0.0), cadence=slow)
    assert v.status == "inconclusive" and "1.90 s where advert_int is 1" in str(v)
    fine = measure.measure(_tl("......"), 0.1)
    assert measure.judge(fine, cadence=slow).status == "inconclusive"
    # A broken promise that no timer explains stays failed.
    never = measure.measure(_tl("..xxxx"), 0.1)
    assert measure.judge(never, cadence=slow).status == "failed"


# -- the handover gap of a preemption (keepalived: advert, then VIP, then gratuitous ARP) ---
LB01_MAC = "52:54:00:de:f8:e8"


def _garps(t: float, mac: str = LB01_MAC, ip: str = "192.168.0.203"):
    from lab.wire import Arp

    return [Arp(t + i * 0.001, 1, mac, ip, ip) for i in range(5)]


def test_the_handover_gap_runs_from_the_new_masters_advert_to_its_gratuitous_arp():
    # Recorded on the VM lab: lb02 advertising, lb01 back at +5.202, its ARP at +5.241;
    # lb02's own delayed ARP burst (garp_master_delay) at +3.606 is not lb01's.
    ads = _adverts("192.168.0.102", [0.29, 1.29, 2.29, 3.3, 4.3, 5.3]) + _adverts(
        "192.168.0.101", [5.202, 6.244], prio=102)
    arps = _garps(3.606, mac="52:54:00:f0:8a:be") + _garps(5.241)
    gap = measure.handover_gap(ads, arps, src="192.168.0.101", mac=LB01_MAC,
                               vip="192.168.0.203", after=0.0)
    assert gap == pytest.approx((5.202, 5.241))
    # No gratuitous ARP from the new MASTER: no gap, nothing is excused.
    assert measure.handover_gap(ads, arps[:5], src="192.168.0.101", mac=LB01_MAC,
                                vip="192.168.0.203", after=0.0) is None
    # No advert from it after the fault: no gap either.
    assert measure.handover_gap(ads, arps, src="192.168.0.101", mac=LB01_MAC,
                                vip="192.168.0.203", after=5.5) is None


def test_only_failures_in_flight_in_the_handover_gap_are_excused():
    tl = _tl("." * 200)  # 10 s of good probes
    lost_syn = Record(5.21, "api", False, 0.5, "timed out", stage="connect")
    cut = Record(5.19, "api", False, 0.5, "handshake timed out", stage="exchange")
    late = Record(5.30, "api", False, 0.5, "timed out", stage="connect")
    tl.records += [lost_syn, cut]
    gap = (5.202, 5.241)
    f = measure.measure(tl, 0.0, excuse=gap)
    assert (f.refused, f.cut, f.excused) == (0, 0, 2)
    assert measure.judge(f, max_refused=0, max_cut=0).passed
    assert "2 in the handover gap" in f.summary()
    # The same failures with no gap seen on the wire fail a zero allowance.
    assert measure.judge(measure.measure(tl, 0.0), max_refused=0, max_cut=0).status == "failed"
    # A connection refused after the client was told the new MAC is not the protocol's cost.
    tl.records.append(late)
    f = measure.measure(tl, 0.0, excuse=gap)
    assert (f.refused, f.excused) == (1, 2)
    assert measure.judge(f, max_refused=0, max_cut=0).status == "failed"
    # A bad answer (HTTP 5xx) is never excused, gap or not.
    tl.records.append(Record(5.22, "api", False, 0.01, "HTTP 500", stage="answer"))
    assert measure.measure(tl, 0.0, excuse=gap).bad_answers == 1


def test_a_vip_back_before_haproxy_listens_is_named():
    # Recorded on the VM lab under load: lb01's HAProxy took seconds to parse its config,
    # keepalived's `killall -0 haproxy` passed meanwhile and the VIP came back at ~5.6 s.
    tl = _tl("." * 200, holders={"lb01": "0" * 112 + "1" * 88, "lb02": "1" * 112 + "0" * 88})
    why = measure.served_before_ready(tl, "lb01", 0.0, 9.0, "its HAProxy listened")
    assert why == "the VIP came back to lb01 3.40 s before its HAProxy listened"
    assert "never its HAProxy listened" in measure.served_before_ready(
        tl, "lb01", 0.0, None, "its HAProxy listened")
    # Listening first (the healthy order), or the VIP never came: nothing to say.
    assert measure.served_before_ready(tl, "lb01", 0.0, 1.0, "x") is None
    assert measure.served_before_ready(tl, "lb02", 6.0, None, "x") is None


def test_chaos_on_a_lab_that_lost_its_timers_is_inconclusive_not_failed(default_topo):
    sc = scenario.load_all(names=["lb-crash"])[0]
    slow = measure.cadence(_adverts("192.168.0.101", [0, 1.9, 3.8, 5.7]), 1.0)
    # An outage far beyond lb-crash's bound, the client served again before the rollbacks.
    tl = _tl("...." + "x" * 200 + "." * 40, holders={"lb01": "1" * 4 + "0" * 240,
                                                     "lb02": "0" * 204 + "1" * 40})
    run = runner.Run(1, sc.name, sc.title)
    runner.judge_outages(run, sc, default_topo, tl, 0.2, 12.0, tl.ended, lambda t: t, slow)
    assert run.problems == [] and run.inconclusive
    assert "exceeds the bound" in " ".join(run.inconclusive)
    assert runner.outcome([], run.problems, run.inconclusive) == "inconclusive"
    # The same outage on a lab that kept its timers fails.
    kept = runner.Run(1, sc.name, sc.title)
    runner.judge_outages(kept, sc, default_topo, tl, 0.2, 12.0, tl.ended, lambda t: t,
                         measure.cadence(_adverts("192.168.0.101", [0, 1, 2, 3]), 1.0))
    assert any("exceeds the bound" in p for p in kept.problems)
    # A client never served again fails whatever the timers.
    never = runner.Run(1, sc.name, sc.title)
    dead = _tl("...." + "x" * 240, holders={"lb01": "1" * 4 + "0" * 240})
    runner.judge_outages(never, sc, default_topo, dead, 0.2, 12.0, dead.ended, lambda t: t,
                         slow)
    assert never.problems and runner.outcome([], never.problems, never.inconclusive) == "failed"


def test_a_vip_never_seen_moving_is_inconclusive_only_on_a_lab_that_lost_its_timers():
    tl = _tl("." * 100, holders={"lb01": "1" * 100, "lb02": "0" * 100})
    fig = measure.measure(tl, 0.1, to="lb02")
    slow = measure.cadence(_adverts("192.168.0.101", [0, 1.9, 3.8, 5.7]), 1.0)
    kept = measure.cadence(_adverts("192.168.0.101", [0, 1, 2, 3]), 1.0)
    assert measure.judge(fig, cadence=kept).status == "failed"
    assert measure.judge(fig).status == "failed"
    assert measure.judge(fig, cadence=slow).status == "inconclusive"


def test_a_rollback_preemptions_handover_gap_is_excused_as_in_the_failover_test(default_topo):
    """A probe cut in flight while the VIP changes hands back (the wire's handover gap) is
    not the rollback's outage; the same cut outside the gap still fails the scenario."""
    sc = scenario.load_all(names=["haproxy-kill"])[0]
    pattern = "...." + "x" * 60 + "." * 60 + "x" + "." * 40  # the cut at t = 6.2 s
    holders = {"lb01": "1" * 4 + "0" * 120 + "1" * 41, "lb02": "0" * 20 + "1" * 104 + "0" * 41}
    t_fault, t_rb = 0.2, 5.0
    excused = runner.Run(1, sc.name, sc.title)
    tl = _tl(pattern, stage="exchange", holders=holders)
    runner.judge_outages(excused, sc, default_topo, tl, t_fault, t_rb, tl.ended,
                         lambda t: t, gap=(6.19, 6.23))
    # (The scenario also expects tcp probes, which this timeline has none of: unknown.)
    assert not [p for p in excused.problems if p.startswith("api")], excused.problems
    assert excused.outages["api (rollback)"] == 0.0
    elsewhere = runner.Run(1, sc.name, sc.title)
    runner.judge_outages(elsewhere, sc, default_topo, _tl(pattern, stage="exchange",
                                                            holders=holders),
                         t_fault, t_rb, tl.ended, lambda t: t, gap=(7.0, 7.04))
    assert any(p.startswith("api") and "rollback" in p for p in elsewhere.problems), \
        elsewhere.problems
