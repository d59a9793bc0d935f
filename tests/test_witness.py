"""Independent witnesses of the headline failover: kubectl's own outage and the VRRP wire.

halab's verdict rests on its own probe (TLS + GET through the VIP) and on what each LB
says it holds (VipWatch). Here two witnesses that share none of that code must agree:
kubectl (client-go), run again and again from the client, and the VRRP adverts captured
on the lab's switch.
"""

from __future__ import annotations

import signal
import time

import pytest

from lab import faults, observe, timing, wire
from lab.kubectl import agreement_tolerance, around_recovery, outage_after, startup_seconds
from lab.wait import until

pytestmark = [pytest.mark.needs_lab]
# Waiting room only (the LBs' state is polled over SSH); assertions use recorded times.
OBSERVE_SLACK_S = 10.0
# The wire vs the LBs' samples, beyond the sampling gaps: scheduling of the samplers.
WIRE_SLACK_S = 0.1
STEADY_RUNS = 5  # good kubectl runs before the fault: kubectl's start-up time


@pytest.fixture
def lbs(lab):
    backup = max(lab.topo.backup_lbs, key=lambda n: n.vrrp.priority)
    return lab.node(lab.topo.master_lb.name), lab.node(backup.name)


def _wait_kubectl_good(loop, after: float, count: int, timeout: float) -> None:
    until(f"{count} good kubectl run(s) started after {after:.2f}",
          lambda: sum(1 for a in list(loop.attempts) if a.ok and a.start >= after) >= count,
          timeout=timeout, interval=0.05)


def _around(attempts, tl, t0: float, t: float, span: float = 1.2) -> str:
    """kubectl's runs and halab's probes near ``t`` (times from the fault at ``t0``)."""
    lines = [f"kubectl {a.start - t0:7.3f} +{a.seconds:.3f} {'ok ' if a.ok else 'BAD'} "
             f"{a.error[:90]}" for a in attempts if abs(a.start - t) < span]
    lines += [f"probe   {r.t - t0:7.3f} +{r.latency:.3f} {'ok ' if r.ok else 'BAD'} "
              f"{r.error[:90]}" for r in tl.of() if abs(r.t - t) < span]
    return "\n".join(sorted(lines, key=lambda ln: float(ln.split()[1])))


def _wait_advert(cap, lb, advert_int: float) -> None:
    """The capture hears ``lb`` before the fault: adverts come once per advert_int, so a
    capture opened a moment ago may not have heard one yet."""
    until(f"an advert from {lb.name} on the wire",
          lambda: any(a.src == lb.address for a in list(cap.adverts)),
          timeout=3 * advert_int + 2, interval=0.05)


@pytest.mark.disruptive
def _agree(kloop, tl, t_kill: float, startup: float, k_outage: float, h_outage: float,
           h_bad, k_bad, k_good, report_outage) -> None:
    """kubectl's outage against halab's, each to within the resolution of its client."""
    tolerance = agreement_tolerance(tl.interval, h_bad.latency, startup, k_bad, k_good)
    report_outage("kubectl's outage (haproxy SIGKILL)", k_outage,
                  f"halab's {h_outage:.3f} s +- {tolerance:.3f} s (kubectl start-up "
                  f"{startup:.3f} s; last failed probe {h_bad.latency:.3f} s; kubectl's last "
                  f"failed run {k_bad.seconds:.3f} s, first good {k_good.seconds:.3f} s)")
    assert abs(k_outage - h_outage) <= tolerance, (
        f"kubectl lost {k_outage:.3f} s, halab's probe {h_outage:.3f} s: they differ by more "
        f"than the requests around the recovery can tell apart ({tolerance:.3f} s)\n"
        + _around(kloop.attempts, tl, t_kill, min(k_outage, h_outage) + t_kill))


def test_haproxy_crash_witnessed_by_kubectl_and_the_wire(steady, probe, kubectl, lbs,
                                                         report_outage):
    lab = steady
    master, backup = lbs
    if not timing.haproxy_crash_fails_over(lab.topo):
        pytest.skip("this lab's check weights never let the backup outrank the master")
    bound = timing.haproxy_crash(lab.topo)
    vrid = lab.topo.keepalived.virtual_router_id
    with wire.VrrpCapture(*lab.provider.wire()) as cap, kubectl.loop() as kloop, \
            probe.continuous(watch=observe.VipWatch(lab)) as tl:
        t_ready = time.monotonic()
        _wait_kubectl_good(kloop, t_ready, STEADY_RUNS, timeout=30)
        _wait_advert(cap, master, lab.topo.keepalived.advert_int)
        t_kill = tl.mark(f"SIGKILL haproxy on {master.name}")
        faults.kill(lab, master.name, "haproxy", signal.SIGKILL)
        observe.wait_vip(lab, [backup.name], bound.with_margin + OBSERVE_SLACK_S, since=t_kill)
        moved_at = until(f"a sample of {backup.name} alone holding the VIP",
                         lambda: tl.held_alone_from(backup.name, t_kill), timeout=5,
                         interval=0.05)
        # Both clients see the new holder a few times before the witnesses are judged: the
        # failover's bound, then three kubectl runs (each its start-up + request, at most).
        _wait_kubectl_good(kloop, moved_at, 3, timeout=bound.with_margin + 3 * (
            startup_seconds(kloop.attempts, before=t_kill) + kloop.request_timeout))
        time.sleep(0.5)
    cap.check()
    kloop.check()

    # kubectl: its outage against halab's, each to within the resolution of its client.
    startup = startup_seconds(kloop.attempts, before=t_kill)
    k_outage = outage_after(kloop.attempts, t_kill)
    h_outage = tl.outage_after(t_kill)
    assert k_outage is not None, "kubectl never succeeded again after the fault"
    assert h_outage > 0, "halab's probe saw no outage: nothing to agree on"
    k_bad, k_good = around_recovery(kloop.attempts, t_kill)
    h_bad = tl.failures(after=t_kill)[-1]
    if k_bad is None:
        # kubectl's requests are one run apart (its start-up and more): an outage shorter
        # than the runs around the fault can fall between two of them. That agrees with
        # halab's only if halab's outage was that short, to within one probe interval.
        runs = [a.seconds for a in kloop.attempts if a.end > t_kill and a.start < t_kill
                + h_outage + tl.interval]
        gap = max([startup, *runs]) + max(tl.interval, h_bad.latency)
        report_outage("kubectl's outage (haproxy SIGKILL)", 0.0,
                      f"halab's {h_outage:.3f} s, within kubectl's runs {gap:.3f} s apart: "
                      "kubectl saw no failure")
        assert h_outage <= gap, (
            f"kubectl saw no failure, but halab's probe lost {h_outage:.3f} s, longer than "
            f"kubectl could miss between two runs ({gap:.3f} s)\n"
            + _around(kloop.attempts, tl, t_kill, h_outage + t_kill))
    else:
        assert k_good is not None, "kubectl never succeeded after its last failure"
        _agree(kloop, tl, t_kill, startup, k_outage, h_outage, h_bad, k_bad, k_good,
               report_outage)

    # The wire: the backup's first advert as MASTER against the LBs' own samples.
    before = [a for a in cap.adverts if a.src == master.address and a.t < t_kill]
    assert before, f"no advert from {master.name} before the fault: the capture saw nothing"
    t_wire = wire.became_master(cap.adverts, backup.address, t_kill, vrid)
    assert t_wire is not None, f"{backup.name} never advertised as MASTER on the wire"
    halab_move = moved_at - t_kill
    wire_move = t_wire - t_kill
    # halab's move time is the backup's first sample holding the VIP while the master's
    # latest sample shows it gone: the master drops the VIP on hearing the backup's first
    # advert, its next sample says so, the backup's next sample after that counts. So it
    # trails the wire by up to one sampling gap of each LB, and never leads it.
    late = tl.sample_gap(master.name) + tl.sample_gap(backup.name) + WIRE_SLACK_S
    report_outage("VIP move by the wire (haproxy SIGKILL)", wire_move,
                  f"halab's samples {halab_move:.3f} s, {halab_move - wire_move:+.3f} s "
                  f"(allowed -{WIRE_SLACK_S} .. +{late:.3f} s)")
    assert -WIRE_SLACK_S <= halab_move - wire_move <= late, (
        f"halab says the VIP moved after {halab_move:.3f} s, the wire {wire_move:.3f} s: "
        f"allowed from {WIRE_SLACK_S} s earlier to {late:.3f} s later (a sampling gap of "
        "each LB + slack)")
    assert wire_move <= bound.with_margin


@pytest.mark.disruptive
def test_keepalived_stop_sends_priority_zero_on_the_wire(steady, lbs, report_outage):
    """A gracefully stopped MASTER resigns with a priority-0 advert, and the backup takes
    over after its skew time, not after the master-down interval: the fast path, which
    the VIP's move time alone cannot tell from the slow one."""
    lab = steady
    master, backup = lbs
    vrid = lab.topo.keepalived.virtual_router_id
    bound = timing.keepalived_stop(lab.topo)
    with wire.VrrpCapture(*lab.provider.wire()) as cap:
        _wait_advert(cap, master, lab.topo.keepalived.advert_int)
        t_stop = time.monotonic()
        faults.kill(lab, master.name, "keepalived", signal.SIGTERM)
        observe.wait_vip(lab, [backup.name], bound.with_margin + OBSERVE_SLACK_S, since=t_stop)
        until(f"{backup.name} advertising on the wire",
              lambda: wire.became_master(list(cap.adverts), backup.address, t_stop, vrid),
              timeout=5, interval=0.05)
    cap.check()
    zero = [a for a in wire.resignations(cap.adverts, t_stop, vrid) if a.src == master.address]
    assert zero, f"no priority-0 advert from {master.name} after keepalived's SIGTERM"
    t_backup = wire.became_master(cap.adverts, backup.address, t_stop, vrid)
    assert t_backup is not None
    takeover = t_backup - zero[0].t
    report_outage("backup's takeover after the priority-0 advert (wire)", takeover,
                  f"{bound.seconds:.2f} s ({bound.why})")
    assert t_backup > zero[0].t, "the backup advertised before the master resigned"
    # Fast path: the skew time after the resignation, within the bound's margin, which
    # lab.timing keeps below half the gap to the slow path (the whole master-down interval
    # of 3 x advert_int + skew after the last advert heard).
    assert takeover <= bound.with_margin, (
        f"{backup.name} took over {takeover:.3f} s after the priority-0 advert: the slow path")
