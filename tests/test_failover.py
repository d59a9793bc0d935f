"""The headline: break the load balancer that holds the VIP and watch the VIP move.

Every time bound comes from the configuration the lab deployed (lab.timing), never from
a number written here; every verdict comes from lab.measure, the path `halab demo` and the
chaos scenarios take too. tests/test_sabotage.py breaks the lab under these same checks
and shows each of them fail.
"""

from __future__ import annotations

import signal

import pytest

from lab import failover, faults, observe, timing
from lab.failover import WATCH_BEYOND_S
from lab.measure import Verdict
from lab.timing import Bound

pytestmark = [pytest.mark.needs_lab]


@pytest.fixture
def lbs(lab):
    return lab.topo.master_lb.name, lab.topo.best_backup_lb.name


def _report(report_outage, label, v: Verdict, bound: Bound) -> None:
    report_outage(label, v.figures.outage_s, str(bound))


def _holds(v: Verdict) -> None:
    """Passed, or the test fails; inconclusive (the lab did not keep its own timers, as
    the wire measured) is reported as a skip with the measured cadence: neither a pass nor
    a false "too slow"."""
    __tracebackhide__ = True
    if v.status == "inconclusive":
        pytest.skip(str(v))
    assert v.passed, str(v)


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
    v = failover.haproxy_crash(lab)
    _report(report_outage, f"haproxy SIGKILL on {master}", v, timing.haproxy_crash(lab.topo))
    _holds(v)
    assert v.figures.served_via == lab.node(backup).address, "the backup LB should forward"


@pytest.mark.disruptive
def test_haproxy_return_preempts_vip_back(steady, lbs, report_outage):
    lab = steady
    master, backup = lbs
    if not timing.haproxy_crash_fails_over(lab.topo):
        pytest.skip("this lab's check weights never let the backup outrank the master")
    v = failover.preempt_back(lab)
    f = v.figures
    report_outage(f"haproxy back on {master} (preempt; {f.failed} failed probe(s))",
                  f.outage_s, str(timing.preempt_back(lab.topo)))
    _holds(v)
    assert f.served_via == lab.node(master).address


@pytest.mark.disruptive
def test_keepalived_stop_fails_over_fast(steady, lbs, report_outage):
    """The fast path: a priority-0 advert, then the backup's skew time. The bound's margin
    is narrower than the gap to the slow path (the master-down timer), so a backup that
    missed the advert fails this test."""
    lab = steady
    master, backup = lbs
    v = failover.keepalived_stop(lab)
    _report(report_outage, f"keepalived SIGTERM on {master}", v,
            timing.keepalived_stop(lab.topo))
    _holds(v)


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
    v = failover.master_lost(lab, fault)
    _report(report_outage, f"{master} {fault}", v, timing.node_crash(lab.topo))
    _holds(v)
    # The client follows the backup's gratuitous ARP.
    assert observe.neighbour_mac(lab, lab.vip) == observe.lab_mac(lab, backup)


@pytest.mark.disruptive
def test_master_crash_behind_the_vip(steady, lbs, report_outage):
    """A control-plane node dies: the VIP stays on the MASTER LB, HAProxy marks the node
    DOWN on every LB, and the client's outage (the connections sent to the dead node
    meanwhile) stays within what HAProxy's check timeouts allow."""
    lab = steady
    master, _ = lbs
    v = failover.master_crash(lab)
    _report(report_outage, "a control-plane node crashed", v, timing.backend_vanished(lab.topo))
    _holds(v)
    assert observe.vip_holders(lab) == [master]


@pytest.mark.disruptive
def test_split_brain_heals_onto_the_master(steady, lbs, report_outage):
    """lb01 and lb02 partitioned: both hold the VIP; healed, lb01 alone holds it within two
    advert intervals, and the client is served again within what its ARP entry allows (up
    to ~53 s without garp_master_refresh: timing.arp_after_heal)."""
    lab = steady
    master, _ = lbs
    v = failover.split_brain_heal(lab)
    _report(report_outage, "split brain healed", v, timing.arp_after_heal(lab.topo))
    _holds(v)
    assert observe.vip_holders(lab) == [master]
