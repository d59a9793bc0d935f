"""Failover bounds derived from the deployed keepalived and HAProxy settings.

Tests never hard-code a number of seconds: they ask this module what the lab's own
configuration promises (RFC 3768 / RFC 5798 timers, keepalived's tracking, HAProxy's
check counters) and add ``MARGIN_S`` for scheduling noise on a loaded machine.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.topology import Node, Topology

# Scheduling, gratuitous ARP and probe granularity on a 2-core machine running the whole
# lab: measured outages sit 0.0-0.5 s above the protocol's figure.
MARGIN_S = 1.5


def skew_time(priority: int, advert_int: float, vrrp_version: int) -> float:
    """VRRPv2: (256 - prio) / 256 s; VRRPv3 scales it by the advertisement interval."""
    skew = (256 - priority) / 256
    return skew * advert_int if vrrp_version == 3 else skew


def master_down_interval(priority: int, advert_int: float, vrrp_version: int) -> float:
    """How long a backup waits without adverts before it takes the VIP."""
    return 3 * advert_int + skew_time(priority, advert_int, vrrp_version)


@dataclass(frozen=True)
class Bound:
    """A promise the configuration makes: ``seconds`` is the protocol's figure, ``margin``
    the room for scheduling noise (smaller where a wider one would admit another, slower
    path through the protocol)."""

    seconds: float
    why: str
    margin: float = MARGIN_S

    @property
    def with_margin(self) -> float:
        return self.seconds + self.margin

    def __str__(self) -> str:
        return (f"{self.with_margin:.2f} s ({self.why} = {self.seconds:.2f} s, "
                f"+ {self.margin:g} s)")


def _effective_priority(lb: Node, topo: Topology, check_ok: bool) -> int:
    assert lb.vrrp is not None
    w = topo.keepalived.check.weight
    p = lb.vrrp.priority
    if w > 0 and check_ok:
        return min(p + w, 254)
    if w < 0 and not check_ok:
        return max(p + w, 1)
    return p


def haproxy_crash_fails_over(topo: Topology) -> bool:
    """Does the master's vrrp_script failure hand the VIP to the best backup?"""
    k = topo.keepalived
    if k.check.weight == 0:
        return True  # weight 0: a failed check puts the instance in FAULT
    master = _effective_priority(topo.master_lb, topo, check_ok=False)
    return any(_effective_priority(b, topo, check_ok=True) > master for b in topo.backup_lbs)


def haproxy_crash(topo: Topology) -> Bound:
    """HAProxy dies on the master: the check notices, then the backup takes over."""
    k = topo.keepalived
    detect = k.check.interval * k.check.fall
    backup = topo.best_backup_lb
    prio = _effective_priority(backup, topo, check_ok=True)
    if k.check.weight == 0:
        # FAULT sends a priority-0 advert: the backup waits only its skew time.
        takeover = skew_time(prio, k.advert_int, k.vrrp_version)
        how = "skew after priority-0 advert"
    else:
        # The master goes on advertising a lower priority; a preempting backup ignores those
        # adverts and takes over when its master-down timer runs out.
        takeover = master_down_interval(prio, k.advert_int, k.vrrp_version)
        how = "master-down interval"
    return Bound(detect + takeover, f"check interval {k.check.interval} s x fall {k.check.fall}"
                 f" + {how} {takeover:.2f} s")


def keepalived_stop(topo: Topology) -> Bound:
    """keepalived stopped gracefully on the master: it sends a priority-0 advert as it
    shuts down, and the backup takes over after its skew time alone.

    The slow path (no priority-0 advert arrives) ends with the backup's master-down timer,
    at the earliest one advert_int less than that after the stop (the last advert having
    gone out just before). The margin stays below half the gap between the two paths, so
    that a pass tells the fast path from the slow one."""
    k = topo.keepalived
    backup = topo.best_backup_lb
    prio = _effective_priority(backup, topo, check_ok=True)
    fast = skew_time(prio, k.advert_int, k.vrrp_version)
    slow = master_down_interval(prio, k.advert_int, k.vrrp_version) - k.advert_int
    return Bound(fast, f"skew time after the priority-0 advert {fast:.2f} s",
                 margin=round(min(MARGIN_S, (slow - fast) / 2), 3))


def node_crash(topo: Topology) -> Bound:
    """The master vanishes (power or link): the backup's master-down timer runs out."""
    k = topo.keepalived
    backup = topo.best_backup_lb
    prio = _effective_priority(backup, topo, check_ok=True)
    m = master_down_interval(prio, k.advert_int, k.vrrp_version)
    return Bound(m, f"master-down interval 3 x {k.advert_int} s + skew")


def preempt_back(topo: Topology) -> Bound:
    """HAProxy returns on the master: once its check passes it outranks the holder; being a
    backup, it ignores the holder's lower-priority adverts until its master-down timer ends."""
    k = topo.keepalived
    detect = k.check.interval * k.check.rise
    prio = _effective_priority(topo.master_lb, topo, check_ok=True)
    m = master_down_interval(prio, k.advert_int, k.vrrp_version)
    return Bound(detect + m, f"check interval {k.check.interval} s x rise {k.check.rise}"
                 f" + master-down interval {m:.2f} s")


def backend_down(topo: Topology) -> Bound:
    """A master's listener dies: HAProxy marks it DOWN after `fall` failed checks."""
    c = topo.haproxy.check
    return Bound(c.inter_ms * (c.fall + 1) / 1000,
                 f"inter {c.inter_ms} ms x (fall {c.fall} + the check in flight)")


def backend_up(topo: Topology) -> Bound:
    """A master's listener returns: HAProxy marks it UP after `rise` good checks."""
    c = topo.haproxy.check
    return Bound(c.inter_ms * (c.rise + 1) / 1000,
                 f"inter {c.inter_ms} ms x (rise {c.rise} + the check in flight)")


def vrrp_heal(topo: Topology) -> Bound:
    """A partition heals: the lower-priority holder yields to the first higher-priority
    advert it receives, and the winner's next advert (with gratuitous ARP) follows."""
    k = topo.keepalived
    return Bound(2 * k.advert_int, f"two advert_int of {k.advert_int:g} s")


def backend_vanished(topo: Topology) -> Bound:
    """A master vanishes (crash, cable): no RST, every check waits out its timeout. With no
    `timeout check` in the config HAProxy times a check out after `inter` and starts the
    next one `inter` later: the phase, then fall x (timeout + inter) minus the last wait."""
    c = topo.haproxy.check
    return Bound(c.inter_ms * 2 * c.fall / 1000,
                 f"inter {c.inter_ms} ms x 2 x fall {c.fall} (checks time out, not refused)")


# Linux's neighbour defaults (net.ipv4.neigh.*): an entry stays REACHABLE for a random
# 0.5-1.5 x base_reachable_time after its last confirmation, waits delay_first_probe_time
# as STALE/DELAY, then sends ucast_solicit probes retrans_time apart before it asks anew.
NEIGH_BASE_REACHABLE_S = 30.0
NEIGH_DELAY_FIRST_PROBE_S = 5.0
NEIGH_UCAST_PROBES = 3
NEIGH_RETRANS_S = 1.0


def arp_after_heal(topo: Topology) -> Bound:
    """A split brain heals: the LB that stayed MASTER does not change state, so it sends no
    gratuitous ARP of its own accord; a client whose entry points at the other LB follows
    at the next refresh (garp_master_refresh) or when its own ARP entry expires."""
    refresh = topo.keepalived.garp_master_refresh
    if refresh is not None:
        return Bound(float(refresh), f"garp_master_refresh {refresh} s")
    worst = (1.5 * NEIGH_BASE_REACHABLE_S + NEIGH_DELAY_FIRST_PROBE_S
             + NEIGH_UCAST_PROBES * NEIGH_RETRANS_S)
    return Bound(worst, "no garp_master_refresh: the client's ARP entry expires (1.5 x 30 s "
                 "reachable + 5 s delay + 3 x 1 s probes)")
