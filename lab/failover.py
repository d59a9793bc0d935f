"""The headline failovers, each observed and judged: HAProxy crashes on the MASTER LB,
keepalived stops there, the MASTER LB is lost (cable or power), HAProxy returns and the
VIP is preempted back. The failover tests, the sabotage suite and `halab demo` call these;
each returns the verdict of lab.measure against the bound its config promises.
"""

from __future__ import annotations

import signal

from lab import experiment, faults, measure, observe, timing
from lab.lab import Lab
from lab.timing import Bound
from provision import names

# How long to watch beyond a bound before giving up on a recovery: the verdict, not the
# deadline, decides; the deadline only ends the watching of a lab that never recovers.
WATCH_BEYOND_S = 5.0


def judged(lab: Lab, label: str, inject: experiment.Action, to: str, bound: Bound,
           progress: experiment.Progress | None = None, **allow: int) -> measure.Verdict:
    """Observe ``inject`` and judge: the VIP on ``to`` alone and the client served again,
    both within ``bound``; ``allow``: judge()'s allowances of refused and cut probes."""
    seen = experiment.under_fault(lab, label, inject, to=to,
                                  deadline_s=bound.with_margin + WATCH_BEYOND_S,
                                  progress=progress)
    fig = measure.measure(seen.timeline, seen.fault_at, to=to)
    kept = measure.cadence(seen.adverts, lab.topo.keepalived.advert_int)
    return measure.judge(fig, outage=bound, move=bound, cadence=kept, **allow)


def haproxy_crash(lab: Lab, progress: experiment.Progress | None = None) -> measure.Verdict:
    """SIGKILL HAProxy on the MASTER LB: the VIP must move to the best backup within the
    bound and the client must be served through it."""
    master, backup = lab.topo.master_lb.name, lab.topo.best_backup_lb.name
    return judged(lab, f"SIGKILL haproxy on {master}",
                  lambda: faults.kill(lab, master, names.HAPROXY_UNIT, signal.SIGKILL), backup,
                  timing.haproxy_crash(lab.topo), progress)


def keepalived_stop(lab: Lab) -> measure.Verdict:
    """SIGTERM keepalived on the MASTER LB: the fast path (priority-0 advert, skew time)."""
    master, backup = lab.topo.master_lb.name, lab.topo.best_backup_lb.name
    return judged(lab, f"SIGTERM keepalived on {master}",
                  lambda: faults.kill(lab, master, names.KEEPALIVED_UNIT, signal.SIGTERM),
                  backup, timing.keepalived_stop(lab.topo))


def master_lost(lab: Lab, how: str) -> measure.Verdict:
    """The MASTER LB drops off the network ("link cut") or dies at once ("crash")."""
    master, backup = lab.topo.master_lb.name, lab.topo.best_backup_lb.name
    inject = {"link cut": faults.link_down, "crash": faults.crash}[how]
    return judged(lab, f"{master}: {how}", lambda: inject(lab, master), backup,
                  timing.node_crash(lab.topo))


def preempt_back(lab: Lab) -> measure.Verdict:
    """HAProxy killed on the MASTER, then back: it takes the VIP back. New connections must
    never fail, and no exchange may be cut beyond what the provider is known to cost."""
    master, backup = lab.topo.master_lb.name, lab.topo.best_backup_lb.name
    faults.kill(lab, master, names.HAPROXY_UNIT)
    observe.wait_vip(lab, [backup], timing.haproxy_crash(lab.topo).with_margin + WATCH_BEYOND_S)
    return judged(lab, f"haproxy back on {master}",
                  lambda: faults.start(lab, master, names.HAPROXY_UNIT), master,
                  timing.preempt_back(lab.topo), max_refused=0,
                  max_cut=lab.provider.preempt_cuts)
