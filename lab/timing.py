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
    """The priority ``lb`` advertises with HAProxy serving (``check_ok``) or gone, from
    the weights of its vrrp_script and its track file (a weight 0 puts it in FAULT
    instead: see haproxy_crash)."""
    assert lb.vrrp is not None
    k = topo.keepalived
    p = lb.vrrp.priority
    w = k.check.weight if k.check is not None else 0
    if w > 0 and check_ok:
        p = min(p + w, 254)
    if w < 0 and not check_ok:
        p = max(p + w, 1)
    if k.track_file is not None and not check_ok:
        p = max(p + k.track_file.weight, 1)  # the watcher writes 1: 1 x weight (<= 0)
    return p


def _faults(topo: Topology) -> bool:
    """Does HAProxy's exit put the MASTER in FAULT (a weight 0 on its check or track)?"""
    k = topo.keepalived
    return ((k.track_file is not None and k.track_file.weight == 0)
            or (k.check is not None and k.check.weight == 0))


def haproxy_crash_fails_over(topo: Topology) -> bool:
    """Does HAProxy's exit on the master hand the VIP to the best backup?"""
    if _faults(topo):
        return True  # FAULT: the instance gives the VIP up whatever the priorities
    master = _effective_priority(topo.master_lb, topo, check_ok=False)
    return any(_effective_priority(b, topo, check_ok=True) > master for b in topo.backup_lbs)


def _fast_path_margin(fast: float, topo: Topology, prio: int) -> float:
    """The margin of a failover promised through a priority-0 advert: below half the gap
    to the slow path (the advert lost, the backup's master-down timer, at the earliest one
    advert_int less than that after the fault), so that a pass tells the two apart."""
    k = topo.keepalived
    slow = master_down_interval(prio, k.advert_int, k.vrrp_version) - k.advert_int
    return round(min(MARGIN_S, (slow - fast) / 2), 3)


def haproxy_crash(topo: Topology) -> Bound:
    """HAProxy dies on the master: the watcher (track_file) tells keepalived at once, or
    the vrrp_script notices at its next run; then the backup takes over."""
    k = topo.keepalived
    backup = topo.best_backup_lb
    prio = _effective_priority(backup, topo, check_ok=True)
    if k.track_file is not None:
        # No polling between HAProxy's exit and keepalived: the kernel closes the watcher's
        # FIFO, the watcher writes the track file, keepalived reads it through inotify.
        detect, told = 0.0, "the watcher's track file at once"
        faults = k.track_file.weight == 0
    else:
        assert k.check is not None
        detect = float(k.check.interval * k.check.fall)
        told = f"check interval {k.check.interval} s x fall {k.check.fall}"
        faults = k.check.weight == 0
    if faults:
        # FAULT sends a priority-0 advert: the backup waits only its skew time.
        takeover = skew_time(prio, k.advert_int, k.vrrp_version)
        how = "skew after priority-0 advert"
    else:
        # The master goes on advertising a lower priority; a preempting backup ignores those
        # adverts and takes over when its master-down timer runs out.
        takeover = master_down_interval(prio, k.advert_int, k.vrrp_version)
        how = "master-down interval"
    why = f"{told} + {how} {takeover:.2f} s"
    if k.track_file is not None and faults:
        # The whole promise is the fast path: a margin that admits the slow one says nothing.
        return Bound(takeover, why, margin=_fast_path_margin(takeover, topo, prio))
    return Bound(detect + takeover, why)


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
    return Bound(fast, f"skew time after the priority-0 advert {fast:.2f} s",
                 margin=_fast_path_margin(fast, topo, prio))


def node_crash(topo: Topology) -> Bound:
    """The master vanishes (power or link): the backup's master-down timer runs out."""
    k = topo.keepalived
    backup = topo.best_backup_lb
    prio = _effective_priority(backup, topo, check_ok=True)
    m = master_down_interval(prio, k.advert_int, k.vrrp_version)
    return Bound(m, f"master-down interval 3 x {k.advert_int} s + skew")


# How often halab's watcher asks whether a returning HAProxy listens (haproxy-watch.sh.j2).
WATCH_LISTEN_POLL_S = 0.02


def preempt_back(topo: Topology) -> Bound:
    """HAProxy returns on the master: once keepalived is told it serves (the vrrp_script's
    `rise` runs, or the watcher's poll of the listener) the master outranks the holder;
    being a backup, it ignores the holder's lower-priority adverts until its master-down
    timer ends. HAProxy's own start-up (parsing its config) is in the margin."""
    k = topo.keepalived
    told: list[tuple[float, str]] = []
    if k.check is not None:
        told.append((float(k.check.interval * k.check.rise),
                     f"check interval {k.check.interval} s x rise {k.check.rise}"))
    if k.track_file is not None:
        told.append((WATCH_LISTEN_POLL_S, f"the watcher's listen poll {WATCH_LISTEN_POLL_S:g} s"))
    detect, what = max(told)  # every mechanism present must say "serves"
    prio = _effective_priority(topo.master_lb, topo, check_ok=True)
    m = master_down_interval(prio, k.advert_int, k.vrrp_version)
    return Bound(detect + m, f"{what} + master-down interval {m:.2f} s")


def backend_down(topo: Topology) -> Bound:
    """A master's listener dies: the next check fails (within `inter`), then `fall` - 1
    more `fastinter` apart, and the check in flight."""
    c = topo.haproxy.check
    return Bound((c.inter_ms + c.transition_ms * c.fall) / 1000,
                 f"inter {c.inter_ms} ms + {c.transition_ms} ms x (fall {c.fall} - 1 + the "
                 "check in flight)")


def backend_up(topo: Topology) -> Bound:
    """A master's listener returns: the next check of the DOWN server (within `downinter`)
    passes, then `rise` - 1 more `fastinter` apart, and the check in flight."""
    c = topo.haproxy.check
    return Bound((c.down_ms + c.transition_ms * c.rise) / 1000,
                 f"{c.down_ms} ms + {c.transition_ms} ms x (rise {c.rise} - 1 + the check "
                 "in flight)")


def vrrp_heal(topo: Topology) -> Bound:
    """A partition heals: the lower-priority holder yields to the first higher-priority
    advert it receives, and the winner's next advert (with gratuitous ARP) follows."""
    k = topo.keepalived
    return Bound(2 * k.advert_int, f"two advert_int of {k.advert_int:g} s")


def backend_vanished(topo: Topology) -> Bound:
    """A master vanishes (crash, cable): no RST, every check waits out its timeout. With no
    `timeout check` in the config HAProxy times a check out after `inter` and starts the
    next one `fastinter` (else `inter`) later: fall x (timeout + that interval)."""
    c = topo.haproxy.check
    return Bound(c.fall * (c.inter_ms + c.transition_ms) / 1000,
                 f"fall {c.fall} x (inter {c.inter_ms} ms + {c.transition_ms} ms) (checks "
                 "time out, not refused)")


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
    k = topo.keepalived
    if k.higher_prio_send_advert:
        # The loser's parting advert reaches the winner with the winner's next advert at
        # the latest; the winner answers a lower priority with gratuitous ARP at once.
        return Bound(k.advert_int, f"one advert_int of {k.advert_int:g} s "
                     "(higher_prio_send_advert: the winner answers with gratuitous ARP)")
    refresh = k.garp_master_refresh
    if refresh is not None:
        return Bound(float(refresh), f"garp_master_refresh {refresh} s")
    worst = (1.5 * NEIGH_BASE_REACHABLE_S + NEIGH_DELAY_FIRST_PROBE_S
             + NEIGH_UCAST_PROBES * NEIGH_RETRANS_S)
    return Bound(worst, "no garp_master_refresh: the client's ARP entry expires (1.5 x 30 s "
                 "reachable + 5 s delay + 3 x 1 s probes)")
