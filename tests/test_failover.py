"""The headline: break the load balancer that holds the VIP and watch the VIP move.

Every time bound comes from the configuration the lab deployed (lab.timing), never from
a number written here.
"""

from __future__ import annotations

import signal
import time

import pytest

from lab import faults, observe, timing
from lab.wait import until

pytestmark = [pytest.mark.needs_lab]
# Observing the VIP over SSH takes a round trip per LB (slow on emulated VMs): waits get this
# much extra room, while the assertions use the LBs' own sampling clocks (VipWatch).
OBSERVE_SLACK_S = 10.0


def _moved(lab, tl, to: str, since: float, bound) -> float:
    """Wait until ``to`` alone holds the VIP; return when it did, by the LBs' own samples."""
    observe.wait_vip(lab, [to], bound.with_margin + OBSERVE_SLACK_S, since=since)
    # The LBs' own samples may arrive a moment after the poll saw the move.
    at = until(f"a sample of {to} alone holding the VIP", lambda: tl.held_alone_from(to, since),
               timeout=5, interval=0.05)
    return at - since


@pytest.fixture
def lbs(lab):
    return lab.topo.master_lb.name, lab.topo.best_backup_lb.name


def test_vip_starts_on_the_master_lb(lab, probe, lbs):
    master, _ = lbs
    assert observe.vip_holders(lab) == [master]
    r = probe.probe("api")
    assert r.ok, r.error
    assert r.via == lab.node(master).address, "the MASTER LB should forward the request"


@pytest.mark.disruptive
def test_haproxy_crash_moves_vip_to_backup(steady, probe, lbs, report_outage):
    lab = steady
    master, backup = lbs
    if not timing.haproxy_crash_fails_over(lab.topo):
        pytest.skip("this lab's check weights never let the backup outrank the master")
    bound = timing.haproxy_crash(lab.topo)
    with probe.continuous(watch=observe.VipWatch(lab)) as tl:
        t_kill = tl.mark(f"SIGKILL haproxy on {master}")
        faults.kill(lab, master, "haproxy", signal.SIGKILL)
        took = _moved(lab, tl, backup, t_kill, bound)
        time.sleep(0.5)  # let the client see the new holder a few times
    outage = tl.outage_after(t_kill)
    report_outage(f"haproxy SIGKILL on {master}", outage, str(bound))
    assert took <= bound.with_margin
    r = probe.probe("api")
    assert r.ok, r.error
    assert r.via == lab.node(backup).address, "the backup LB should now forward"
    assert tl.of()[-1].ok, "6443 should answer through the VIP after the failover"
    assert outage <= bound.with_margin


@pytest.mark.disruptive
def test_haproxy_return_preempts_vip_back(steady, probe, lbs, report_outage):
    lab = steady
    master, backup = lbs
    if not timing.haproxy_crash_fails_over(lab.topo):
        pytest.skip("this lab's check weights never let the backup outrank the master")
    faults.kill(lab, master, "haproxy")
    observe.wait_vip(lab, [backup], timing.haproxy_crash(lab.topo).with_margin + OBSERVE_SLACK_S)
    bound = timing.preempt_back(lab.topo)
    # A client that allows a connection 3 s: one lost SYN (sent to the old holder in the
    # instant between its giving the VIP up and the new holder's gratuitous ARP) is
    # retransmitted after 1 s and lands; seen on emulated VMs, never on the embedded lab.
    patient = probe.with_timeout(3.0)
    with patient.continuous(watch=observe.VipWatch(lab)) as tl:
        t_back = tl.mark(f"haproxy back on {master}")
        faults.start(lab, master, "haproxy")
        took = _moved(lab, tl, master, t_back, bound)
        time.sleep(0.5)
    failed = tl.failures(after=t_back)
    slowest = max(r.latency for r in tl.of())
    report_outage(f"haproxy back on {master} (preempt; slowest connect {slowest:.2f} s, "
                  f"{len(failed)} request(s) cut)", tl.outage_after(t_back), str(bound))
    assert took <= bound.with_margin
    # New connections keep working through a preemption: the old holder accepts until the
    # new one has the VIP, and both LBs reach every master.
    assert [r for r in failed if r.refused_new_connection] == []
    # An exchange in flight through the old holder at the switch is cut (its next packets
    # reach the new holder, which knows no such connection): the prober has one request in
    # flight at a time, so at most one breaks.
    assert len(failed) <= 1, [r.error for r in failed]
    assert probe.probe("api").via == lab.node(master).address


@pytest.mark.disruptive
def test_keepalived_stop_fails_over_fast(steady, probe, lbs, report_outage):
    lab = steady
    master, backup = lbs
    bound = timing.keepalived_stop(lab.topo)
    with probe.continuous(watch=observe.VipWatch(lab)) as tl:
        t_stop = tl.mark(f"SIGTERM keepalived on {master}")
        faults.kill(lab, master, "keepalived", signal.SIGTERM)
        took = _moved(lab, tl, backup, t_stop, bound)
        time.sleep(0.3)
    outage = tl.outage_after(t_stop)
    report_outage(f"keepalived SIGTERM on {master}", outage, str(bound))
    assert took <= bound.with_margin
    assert outage <= bound.with_margin
    assert probe.probe("api").ok


@pytest.mark.disruptive
def test_client_arp_entry_follows_the_vip(steady, probe, lbs):
    lab = steady
    master, backup = lbs
    assert probe.probe("api").ok
    assert observe.neighbour_mac(lab, lab.vip) == observe.lab_mac(lab, master)
    faults.kill(lab, master, "keepalived", signal.SIGTERM)
    observe.wait_vip(lab, [backup], timing.keepalived_stop(lab.topo).with_margin + OBSERVE_SLACK_S)
    assert probe.probe("api").ok
    # The new holder's gratuitous ARP, not a timeout of the old entry, moved the client.
    assert observe.neighbour_mac(lab, lab.vip) == observe.lab_mac(lab, backup)


@pytest.mark.disruptive
@pytest.mark.parametrize("fault", ["link cut", "crash"])
def test_master_lb_lost_fails_over(steady, probe, lbs, report_outage, fault):
    """The MASTER LB drops off the network (its cable pulled) or dies at once (power cut):
    the backup hears no advert for its master-down interval and takes the VIP."""
    lab = steady
    master, backup = lbs
    bound = timing.node_crash(lab.topo)
    inject = {"link cut": faults.link_down, "crash": faults.crash}[fault]
    with probe.continuous(watch=observe.VipWatch(lab)) as tl:
        t_fault = tl.mark(f"{master}: {fault}")
        inject(lab, master)
        took = _moved(lab, tl, backup, t_fault, bound)
        time.sleep(0.5)
    outage = tl.outage_after(t_fault)
    report_outage(f"{master} {fault}", outage, str(bound))
    assert took <= bound.with_margin
    assert outage <= bound.with_margin
    assert probe.probe("api").ok
    # The client follows the backup's gratuitous ARP.
    assert observe.neighbour_mac(lab, lab.vip) == observe.lab_mac(lab, backup)
