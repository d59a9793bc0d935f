"""What the lab's nodes say about themselves: who holds the VIP, HAProxy's backend states,
the client's ARP entry. Read over each node's own transport."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from lab.lab import Lab

STATS_SOCKET = "/run/haproxy/admin.sock"


def vip_holders(lab: Lab) -> list[str]:
    """The reachable load balancers whose lab NIC carries the VIP, in topology order.

    A crashed, frozen or cut-off LB is not asked (it could not answer, and holds nothing
    that the network can see)."""
    iface = lab.topo.network.interface
    held = []
    for lb in lab.load_balancers:
        if lab.provider.node_state(lb.name) != "running":
            continue
        try:
            if lab.vip in lb.interface_addresses(iface):
                held.append(lb.name)
        except Exception:  # noqa: BLE001 - an unreachable LB holds nothing we can see
            continue
    return held


@dataclass(frozen=True)
class Backend:
    proxy: str
    server: str
    status: str  # UP, DOWN, MAINT, "UP 1/2", ...

    @property
    def up(self) -> bool:
        return self.status.startswith("UP")


def backends(lab: Lab, lb: str) -> list[Backend]:
    """HAProxy's server states on one LB, from its stats socket (`show stat`)."""
    out = lab.node(lb).check_output("echo 'show stat' | nc -U -w 2 %s", STATS_SOCKET)
    rows = csv.DictReader(io.StringIO(out.lstrip("# ")))
    return [Backend(r["pxname"], r["svname"], r["status"]) for r in rows
            if r.get("svname") not in ("FRONTEND", "BACKEND")]


def server_states(lab: Lab, lb: str, proxy: str = "k8s-api-server") -> dict[str, str]:
    return {b.server: b.status for b in backends(lab, lb) if b.proxy == proxy}


def neighbour_mac(lab: Lab, address: str) -> str | None:
    """The MAC the client would send ``address``'s packets to (its ARP entry)."""
    out = lab.client.run("ip neigh show %s", address).stdout.split()
    return out[out.index("lladdr") + 1] if "lladdr" in out else None


def lab_mac(lab: Lab, node: str) -> str:
    return lab.node(node).mac(lab.topo.network.interface)


def wait_vip(lab: Lab, holders: list[str], timeout: float, since: float | None = None) -> float:
    """Wait until exactly ``holders`` carry the VIP; return seconds since ``since``."""
    import time

    from lab.wait import until

    t0 = time.monotonic() if since is None else since
    until(f"the VIP {lab.vip} on {' and '.join(holders) or 'no LB'} (only)",
          lambda: vip_holders(lab) == holders, timeout=timeout, interval=0.02)
    return time.monotonic() - t0


def wait_backend(lab: Lab, server: str, up: bool, timeout: float,
                 proxy: str = "k8s-api-server") -> float:
    """Wait until every LB's HAProxy shows ``server`` UP (or DOWN); return the seconds."""
    import time

    from lab.wait import until

    t0 = time.monotonic()
    want = "UP" if up else "DOWN"

    def seen() -> bool:
        return all(server_states(lab, lb.name, proxy).get(server, "").startswith(want)
                   for lb in lab.load_balancers)

    until(f"{proxy}/{server} {want} on every load balancer", seen, timeout=timeout,
          interval=0.1)
    return time.monotonic() - t0
