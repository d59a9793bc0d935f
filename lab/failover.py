"""The headline failovers, each observed and judged: HAProxy crashes on the MASTER LB,
keepalived stops there, the MASTER LB is lost (cable or power), HAProxy returns and the
VIP is preempted back, a control-plane node crashes behind the VIP, a split brain heals.
The failover tests, the sabotage suite, `halab demo` and `halab bench` call these; each
returns the verdict of lab.measure against the bound its config promises.
"""

from __future__ import annotations

import signal
import time

from lab import experiment, faults, measure, observe, timing, wire
from lab.errors import HalabError
from lab.lab import Lab
from lab.timing import Bound
from provision import names

# How long to watch beyond a bound before giving up on a recovery: the verdict, not the
# deadline, decides; the deadline only ends the watching of a lab that never recovers.
WATCH_BEYOND_S = 5.0


def watch(lab: Lab, label: str, inject: experiment.Action, to: str, bound: Bound,
          progress: experiment.Progress | None = None) -> experiment.Observed:
    """Observe ``inject`` until the VIP is on ``to`` alone and the client is served again,
    or the bound and WATCH_BEYOND_S have passed."""
    return experiment.under_fault(lab, label, inject, to=to,
                                  deadline_s=bound.with_margin + WATCH_BEYOND_S,
                                  progress=progress)


def verdict(lab: Lab, seen: experiment.Observed, to: str, bound: Bound, *,
            fault_at: float | None = None, excuse: tuple[float, float] | None = None,
            move: Bound | None = None, **allow: int) -> measure.Verdict:
    """Judge an observation: the VIP on ``to`` alone and the client served again, both
    within ``bound`` of ``fault_at`` (default: when the fault took effect on the node);
    ``move``: another bound for the VIP's move, where it has one of its own; ``excuse``:
    measure's handover gap; ``allow``: judge()'s allowances of refused and cut probes.
    The wire's advert cadence says whether the lab kept its own timers."""
    fig = measure.measure(seen.timeline, seen.fault_at if fault_at is None else fault_at,
                          to=to, excuse=excuse)
    kept = measure.cadence(seen.adverts, lab.topo.keepalived.advert_int)
    return measure.judge(fig, outage=bound, move=bound if move is None else move,
                         cadence=kept, **allow)


def judged(lab: Lab, label: str, inject: experiment.Action, to: str, bound: Bound,
           progress: experiment.Progress | None = None, **allow: int) -> measure.Verdict:
    """watch() then verdict(): a fault timed from when it took effect on the node."""
    return verdict(lab, watch(lab, label, inject, to, bound, progress), to, bound, **allow)


def haproxy_crash(lab: Lab, progress: experiment.Progress | None = None) -> measure.Verdict:
    """SIGKILL HAProxy on the MASTER LB: the VIP must move to the best backup within the
    bound and the client must be served through it."""
    master, backup = lab.topo.master_lb.name, lab.topo.best_backup_lb.name
    return judged(lab, f"SIGKILL haproxy on {master}",
                  lambda: faults.kill(lab, master, names.HAPROXY_UNIT, signal.SIGKILL), backup,
                  timing.haproxy_crash(lab.topo), progress)


def keepalived_stop(lab: Lab) -> measure.Verdict:
    """SIGTERM keepalived on the MASTER LB: the fast path (priority-0 advert, skew time).

    Timed from the priority-0 advert on the wire when it is seen: the bound is the
    backup's promise (its skew time), while how long keepalived takes to act on SIGTERM
    is the node's (0.50 s measured once on TCG VMs, more under load; the client is
    served by the old MASTER meanwhile, which still holds the VIP). Unseen (no advert,
    or no wire), the clock starts at the signal, and a lost advert fails on the slow
    path."""
    master, backup = lab.topo.master_lb.name, lab.topo.best_backup_lb.name
    addr, bound = lab.node(master).address, timing.keepalived_stop(lab.topo)
    label = f"SIGTERM keepalived on {master}"
    seen = watch(lab, label, lambda: faults.kill(lab, master, names.KEEPALIVED_UNIT,
                                                 signal.SIGTERM), backup, bound)
    resigned = next((a.t for a in wire.resignations(seen.adverts, after=seen.fault_at)
                     if a.src == addr), None)
    if resigned is not None:
        seen.timeline.marks.append((resigned, f"{label}: priority-0 advert on the wire"))
    return verdict(lab, seen, backup, bound, fault_at=resigned)


def master_lost(lab: Lab, how: str) -> measure.Verdict:
    """The MASTER LB drops off the network ("link cut") or dies at once ("crash")."""
    master, backup = lab.topo.master_lb.name, lab.topo.best_backup_lb.name
    inject = {"link cut": faults.link_down, "crash": faults.crash}[how]
    return judged(lab, f"{master}: {how}", lambda: inject(lab, master), backup,
                  timing.node_crash(lab.topo))


def preempt_back(lab: Lab, settle_s: float = 0.0) -> measure.Verdict:
    """HAProxy killed on the MASTER, then back: it takes the VIP back. No new connection
    may fail and no exchange may be cut, except those in flight in the handover gap the
    wire shows (measure.handover_gap: keepalived's own order of advert, VIP and ARP).
    Without the wire, the provider's known cost of cut exchanges stands in.

    The VIP must not come back before HAProxy listens: the guide's check (`killall -0
    haproxy`) passes as soon as the process exists, and a slow start (a large config, a
    loaded or emulated machine) then sends clients to an LB that refuses them.

    ``settle_s``: how long to wait on the backup before HAProxy returns. The move to the
    backup ends on keepalived's check timer, so a return right after it would always meet
    that timer at the same phase; `halab bench` passes a random wait to spread it."""
    master, backup = lab.topo.master_lb.name, lab.topo.best_backup_lb.name
    faults.kill(lab, master, names.HAPROXY_UNIT)
    observe.wait_vip(lab, [backup], timing.haproxy_crash(lab.topo).with_margin + WATCH_BEYOND_S)
    time.sleep(settle_s)
    addr, mac = lab.node(master).address, observe.lab_mac(lab, master)
    bound = timing.preempt_back(lab.topo)
    listening: list[float] = []

    def back() -> float | None:
        at = faults.start(lab, master, names.HAPROXY_UNIT)
        # When HAProxy on the returning LB accepts connections on its own address.
        deadline = time.monotonic() + bound.with_margin + WATCH_BEYOND_S
        while time.monotonic() < deadline:
            if lab.prober.listening(addr, names.API_PORT, timeout=0.2):
                listening.append(time.monotonic())
                break
            time.sleep(0.05)
        return at  # when HAProxy was started on the node: the preempt is timed from it

    seen = watch(lab, f"haproxy back on {master}", back, master, bound)
    gap = measure.handover_gap(seen.adverts, seen.arps, src=addr, mac=mac, vip=lab.vip,
                               after=seen.fault_at)
    v = verdict(lab, seen, master, bound, excuse=gap, max_refused=0,
                max_cut=lab.provider.preempt_cuts if seen.wire_error else 0)
    early = measure.served_before_ready(seen.timeline, master, seen.fault_at,
                                        listening[0] if listening else None,
                                        f"its HAProxy listened on :{names.API_PORT}")
    if early:
        v = measure.Verdict("failed", (early + ": keepalived's check passed on a HAProxy "
                                       "that was not serving yet", *v.reasons), v.figures)
    return v


def master_crash(lab: Lab, master: str | None = None) -> measure.Verdict:
    """A control-plane node dies (power cut) behind the VIP: nothing answers for it, not
    even a reset, so each HAProxy check waits out its timeout before the server is DOWN,
    and meanwhile new connections HAProxy sends there fail (the figures' refused and cut
    probes). Watched until every LB's HAProxy has the node DOWN; the VIP stays where it
    is, and the client's outage is held against ``timing.backend_vanished``.

    ``master``: which one (default: the second, as the master-crash chaos scenario)."""
    masters = [m.name for m in lab.masters]
    master = master or masters[min(1, len(masters) - 1)]
    holder, bound = lab.topo.master_lb.name, timing.backend_vanished(lab.topo)
    missed: list[str] = []

    def crash_and_wait() -> None:
        faults.crash(lab, master)
        try:
            observe.wait_backend(lab, names.server_name(names.API_PROXY, master), up=False,
                                 timeout=bound.with_margin + WATCH_BEYOND_S)
        except HalabError as e:
            missed.append(f"HAProxy never had {master} DOWN on every LB: {e}")

    v = judged(lab, f"{master}: crash", crash_and_wait, holder, bound)
    if missed:
        return measure.Verdict("failed", (*missed, *v.reasons), v.figures)
    return v


def split_brain_heal(lab: Lab, hold_s: float = 2.0) -> measure.Verdict:
    """The MASTER LB and the best backup stop hearing each other: the backup's master-down
    timer runs out and both hold the VIP. Held ``hold_s`` more, then healed: the client's
    outage after the heal is what is measured. The LB that stayed MASTER never changed
    state and sends no gratuitous ARP, so a client whose ARP entry points at the other LB
    waits for garp_master_refresh or its entry's expiry (``timing.arp_after_heal``); the
    VIP itself must be on the MASTER alone within ``timing.vrrp_heal``."""
    master, backup = lab.topo.master_lb.name, lab.topo.best_backup_lb.name
    faults.partition(lab, master, backup)
    both = [lb.name for lb in lab.load_balancers if lb.name in (master, backup)]
    observe.wait_vip(lab, both, timing.node_crash(lab.topo).with_margin + WATCH_BEYOND_S)
    time.sleep(hold_s)
    bound, move = timing.arp_after_heal(lab.topo), timing.vrrp_heal(lab.topo)
    seen = watch(lab, f"heal the partition {master} | {backup}",
                 lambda: faults.heal(lab, master, backup), master, bound)
    return verdict(lab, seen, master, bound, move=move)
