"""The headline: break the load balancer that holds the VIP and watch the VIP move.

Every time bound comes from the configuration the lab deployed (lab.timing), never from
a number written here; every verdict comes from lab.measure, the path `halab demo` and the
chaos scenarios take too. tests/test_sabotage.py breaks the lab under these same checks
and shows each of them fail.
"""

from __future__ import annotations

import signal

import pytest

from lab import experiment, faults, measure, observe, timing
from lab.timing import Bound

pytestmark = [pytest.mark.needs_lab]
# How long to watch beyond a bound before giving up on a recovery: the verdict, not the
# deadline, decides; the deadline only ends the watching of a lab that never recovers.
WATCH_BEYOND_S = 5.0


def _judged(lab, label, inject, to, bound: Bound, **allow) -> measure.Verdict:
    seen = experiment.under_fault(lab, label, inject, to=to,
                                  deadline_s=bound.with_margin + WATCH_BEYOND_S)
    fig = measure.measure(seen.timeline, seen.fault_at, to=to)
    return measure.judge(fig, outage=bound, move=bound, **allow)


def haproxy_crash_verdict(lab, master: str, backup: str) -> measure.Verdict:
    """SIGKILL HAProxy on the MASTER LB: the VIP must move to the backup within the bound
    and the client must be served through it. (Shared with the sabotage suite.)"""
    return _judged(lab, f"SIGKILL haproxy on {master}",
                   lambda: faults.kill(lab, master, "haproxy", signal.SIGKILL), backup,
                   timing.haproxy_crash(lab.topo))


def keepalived_stop_verdict(lab, master: str, backup: str) -> measure.Verdict:
    return _judged(lab, f"SIGTERM keepalived on {master}",
                   lambda: faults.kill(lab, master, "keepalived", signal.SIGTERM), backup,
                   timing.keepalived_stop(lab.topo))


def master_lost_verdict(lab, master: str, backup: str, fault: str) -> measure.Verdict:
    inject = {"link cut": faults.link_down, "crash": faults.crash}[fault]
    return _judged(lab, f"{master}: {fault}", lambda: inject(lab, master), backup,
                   timing.node_crash(lab.topo))


def preempt_verdict(lab, master: str, backup: str) -> measure.Verdict:
    """HAProxy back on the old MASTER, which takes the VIP back: new connections must
    never fail, and no exchange may be cut beyond what the provider is known to cost."""
    faults.kill(lab, master, "haproxy")
    observe.wait_vip(lab, [backup], timing.haproxy_crash(lab.topo).with_margin + WATCH_BEYOND_S)
    return _judged(lab, f"haproxy back on {master}",
                   lambda: faults.start(lab, master, "haproxy"), master,
                   timing.preempt_back(lab.topo), max_refused=0,
                   max_cut=lab.provider.preempt_cuts)


@pytest.fixture
def lbs(lab):
    return lab.topo.master_lb.name, lab.topo.best_backup_lb.name


def _report(report_outage, label, v: measure.Verdict, bound: Bound) -> None:
    report_outage(label, v.figures.outage_s, str(bound))


def test_vip_starts_on_the_master_lb(lab, probe, lbs):
    master, _ = lbs
    assert observe.vip_holders(lab) == [master]
    r = probe.probe("api")
    assert r.ok, r.error
    assert r.via == lab.node(master).address, "the MASTER LB should forward the request"


@pytest.mark.disruptive
def test_haproxy_crash_moves_vip_to_backup(steady, lbs, report_outage):
    lab = steady
    master, backup = lbs
    if not timing.haproxy_crash_fails_over(lab.topo):
        pytest.skip("this lab's check weights never let the backup outrank the master")
    v = haproxy_crash_verdict(lab, master, backup)
    _report(report_outage, f"haproxy SIGKILL on {master}", v, timing.haproxy_crash(lab.topo))
    assert v.passed, str(v)
    assert v.figures.served_via == lab.node(backup).address, "the backup LB should forward"


@pytest.mark.disruptive
def test_haproxy_return_preempts_vip_back(steady, lbs, report_outage):
    lab = steady
    master, backup = lbs
    if not timing.haproxy_crash_fails_over(lab.topo):
        pytest.skip("this lab's check weights never let the backup outrank the master")
    v = preempt_verdict(lab, master, backup)
    f = v.figures
    report_outage(f"haproxy back on {master} (preempt; {f.failed} failed probe(s))",
                  f.outage_s, str(timing.preempt_back(lab.topo)))
    assert v.passed, str(v)
    assert f.served_via == lab.node(master).address


@pytest.mark.disruptive
def test_keepalived_stop_fails_over_fast(steady, lbs, report_outage):
    """The fast path: a priority-0 advert, then the backup's skew time. The bound's margin
    is narrower than the gap to the slow path (the master-down timer), so a backup that
    missed the advert fails this test."""
    lab = steady
    master, backup = lbs
    v = keepalived_stop_verdict(lab, master, backup)
    _report(report_outage, f"keepalived SIGTERM on {master}", v,
            timing.keepalived_stop(lab.topo))
    assert v.passed, str(v)


@pytest.mark.disruptive
def test_client_arp_entry_follows_the_vip(steady, probe, lbs):
    lab = steady
    master, backup = lbs
    assert probe.probe("api").ok
    assert observe.neighbour_mac(lab, lab.vip) == observe.lab_mac(lab, master)
    faults.kill(lab, master, "keepalived", signal.SIGTERM)
    observe.wait_vip(lab, [backup],
                     timing.keepalived_stop(lab.topo).with_margin + WATCH_BEYOND_S)
    assert probe.probe("api").ok
    # The new holder's gratuitous ARP, not a timeout of the old entry, moved the client.
    assert observe.neighbour_mac(lab, lab.vip) == observe.lab_mac(lab, backup)


@pytest.mark.disruptive
@pytest.mark.parametrize("fault", ["link cut", "crash"])
def test_master_lb_lost_fails_over(steady, lbs, report_outage, fault):
    """The MASTER LB drops off the network (its cable pulled) or dies at once (power cut):
    the backup hears no advert for its master-down interval and takes the VIP."""
    lab = steady
    master, backup = lbs
    v = master_lost_verdict(lab, master, backup, fault)
    _report(report_outage, f"{master} {fault}", v, timing.node_crash(lab.topo))
    assert v.passed, str(v)
    # The client follows the backup's gratuitous ARP.
    assert observe.neighbour_mac(lab, lab.vip) == observe.lab_mac(lab, backup)
