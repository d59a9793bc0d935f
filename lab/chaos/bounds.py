"""The outage and wait bounds a scenario may name, all derived from the deployed config.

Most are lab.timing's; the few only chaos runs need are composed here from the same
settings, so that a scenario file never holds a number of seconds for a failover.
"""

from __future__ import annotations

from collections.abc import Callable

from lab import timing
from lab.errors import HalabError
from lab.timing import Bound
from lab.topology import Topology


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


BOUNDS: dict[str, Callable[[Topology], Bound]] = {
    "haproxy_crash": timing.haproxy_crash,
    "keepalived_stop": timing.keepalived_stop,
    "node_crash": timing.node_crash,
    "preempt_back": timing.preempt_back,
    "backend_down": timing.backend_down,
    "backend_up": timing.backend_up,
    "backend_vanished": backend_vanished,
    "vrrp_heal": vrrp_heal,
}
# `none`: the configuration promises no failed probe at all.
NONE = "none"


def check_name(name: str) -> None:
    if name != NONE and name not in BOUNDS:
        raise HalabError(f"unknown bound '{name}'; scenarios may name: "
                         f"{', '.join([*BOUNDS, NONE])}")


def bound(name: str, topo: Topology) -> Bound:
    check_name(name)
    return Bound(0.0, "no failed probe") if name == NONE else BOUNDS[name](topo)


def allowed(b: Bound, name: str) -> float:
    """The longest outage the bound allows: the protocol's figure plus the margin, or 0."""
    return 0.0 if name == NONE else b.with_margin
