"""What the lab's nodes say about themselves: who holds the VIP, HAProxy's backend states,
the client's ARP entry. Read over each node's own transport."""

from __future__ import annotations

import csv
import io
import threading
import time
from dataclasses import dataclass

from lab.lab import Lab
from lab.probes import Holding, Timeline
from lab.transport import fabric_connection

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
    from lab.wait import until

    t0 = time.monotonic() if since is None else since
    until(f"the VIP {lab.vip} on {' and '.join(holders) or 'no LB'} (only)",
          lambda: vip_holders(lab) == holders, timeout=timeout, interval=0.02)
    return time.monotonic() - t0


def wait_backend(lab: Lab, server: str, up: bool, timeout: float,
                 proxy: str = "k8s-api-server") -> float:
    """Wait until every LB's HAProxy shows ``server`` UP (or DOWN); return the seconds."""
    from lab.wait import until

    t0 = time.monotonic()
    want = "UP" if up else "DOWN"

    def seen() -> bool:
        return all(server_states(lab, lb.name, proxy).get(server, "").startswith(want)
                   for lb in lab.load_balancers)

    until(f"{proxy}/{server} {want} on every load balancer", seen, timeout=timeout,
          interval=0.1)
    return time.monotonic() - t0


class VipWatch:
    """Samples every LB's hold on the VIP at the probes' rate, into a Timeline.

    A round trip per sample (~0.17 s over Fabric) cannot keep a 50 ms pace, so each LB
    runs a small sampling loop of its own and streams one line per sample over one SSH
    channel. A line carries the node's clock; the stream's smallest (host - node) offset
    maps it onto this host's monotonic clock, so lines held up by a frozen node or a slow
    link are placed when they were taken, not when they arrived. A stream that breaks
    (crashed LB) is reopened until the watch stops; meanwhile that LB has no samples.
    """

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: dict[str, object] = {}
        self._lock = threading.Lock()

    def _script(self, interval: float) -> str:
        iface, vip = self.lab.topo.network.interface, self.lab.vip
        # One process per sample (ip): bash's own clock and pattern match, no date or grep;
        # on an emulated VM every process start costs tens of milliseconds.
        return ("while :; do "
                f"case \"$(ip -o -4 addr show dev {iface})\" in *' {vip}/'*) n=1;; *) n=0;; esac; "
                "echo \"${EPOCHREALTIME:-$(date +%s.%N)} $n\"; "
                f"sleep {interval:g}; done")

    def _connect(self, lb: str):  # noqa: ANN202 - a fabric Connection
        # A connection of its own: the stream holds it for the whole watch.
        conn = fabric_connection(lb, self.lab.state.ssh_config, connect_timeout=2)
        conn.open()
        return conn

    def _follow(self, lb: str, tl: Timeline, interval: float) -> None:
        offset: float | None = None
        while not self._stop.is_set():
            try:
                conn = self._connect(lb)
                with self._lock:
                    self._conns[lb] = conn
                chan = conn.client.get_transport().open_session()
                chan.settimeout(None)
                chan.exec_command(self._script(interval))
                for line in chan.makefile("r"):
                    if self._stop.is_set():
                        break
                    parts = line.split()
                    if len(parts) != 2:
                        continue
                    node_t = float(parts[0])
                    now_mono, now_wall = time.monotonic(), time.time()
                    off = (now_wall - node_t)
                    offset = off if offset is None else min(offset, off)
                    tl.holdings.append(Holding(now_mono - (off - offset), lb, parts[1] != "0"))
            except Exception:  # noqa: BLE001 - an unreachable LB is a gap, not an error
                pass
            finally:
                with self._lock:
                    conn = self._conns.pop(lb, None)
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001
                        pass
            self._stop.wait(interval * 4)

    def start(self, timeline: Timeline, interval: float) -> None:
        self._stop.clear()
        for lb in self.lab.load_balancers:
            th = threading.Thread(target=self._follow, args=(lb.name, timeline, interval),
                                  daemon=True, name=f"halab-vipwatch-{lb.name}")
            th.start()
            self._threads.append(th)
        # The first line of each stream: a timeline with holders from its first record on.
        until_first = time.monotonic() + 5
        while time.monotonic() < until_first and not {h.lb for h in list(timeline.holdings)} >= {
                lb.name for lb in self.lab.load_balancers if
                self.lab.provider.node_state(lb.name) == "running"}:
            time.sleep(interval)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            conns = list(self._conns.values())
        for c in conns:
            try:
                c.close()  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001
                pass
        for th in self._threads:
            th.join(timeout=3)
        self._threads.clear()
