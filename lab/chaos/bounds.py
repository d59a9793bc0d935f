"""The outage and wait bounds a scenario may name, all derived from the deployed config.

Every one is lab.timing's, by name, so that a scenario file never holds a number of
seconds for a failover.
"""

from __future__ import annotations

from collections.abc import Callable

from lab import timing
from lab.errors import HalabError
from lab.timing import Bound
from lab.topology import Topology

BOUNDS: dict[str, Callable[[Topology], Bound]] = {
    "haproxy_crash": timing.haproxy_crash,
    "keepalived_stop": timing.keepalived_stop,
    "node_crash": timing.node_crash,
    "preempt_back": timing.preempt_back,
    "backend_down": timing.backend_down,
    "backend_up": timing.backend_up,
    "backend_vanished": timing.backend_vanished,
    "vrrp_heal": timing.vrrp_heal,
    "arp_after_heal": timing.arp_after_heal,
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
