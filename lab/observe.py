"""What the lab's nodes say about themselves: who holds the VIP, HAProxy's backend states,
the client's ARP entry. Read over each node's own transport.

An LB that is running but cannot be asked is *unknown*: ``ObservationError``, never "does
not hold the VIP". Only an LB that is down (crashed, cut off, frozen) is known to hold
nothing the network can see.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from dataclasses import dataclass

from lab.errors import HalabError
from lab.lab import Lab
from lab.probes import Holding, Timeline
from lab.transport import Stream, quote_command
from provision import names

# Provider node states in which a node holds nothing the lab's network can see.
DOWN_STATES = frozenset({"crashed", "link-down", "frozen", "absent"})


class ObservationError(HalabError):
    """A node could not be asked what the harness needed to know: the answer is unknown."""


def holds_vip(lab: Lab, lb: str) -> bool:
    """Does ``lb``'s lab NIC carry the VIP? Raises ObservationError when it cannot tell."""
    state = lab.provider.node_state(lb)
    if state in DOWN_STATES:
        return False
    if state != "running":
        raise ObservationError(f"{lb} is {state}: cannot tell whether it holds the VIP")
    try:
        r = lab.node(lb).run("ip -o -4 addr show dev %s", lab.topo.network.interface)
    except HalabError as e:
        raise ObservationError(f"cannot ask {lb} whether it holds the VIP: {e}") from None
    if not r.ok:
        raise ObservationError(f"cannot ask {lb} whether it holds the VIP: `{r.command}` "
                               f"exited {r.rc}: {r.stderr.strip()}")
    return any(line.split()[3].split("/")[0] == lab.vip
               for line in r.stdout.splitlines() if " inet " in line)


def vip_holders(lab: Lab) -> list[str]:
    """The load balancers whose lab NIC carries the VIP, in topology order. Raises
    ObservationError when a running LB cannot be asked."""
    return [lb.name for lb in lab.load_balancers if holds_vip(lab, lb.name)]


@dataclass(frozen=True)
class Backend:
    proxy: str
    server: str
    status: str  # UP, DOWN, MAINT, "UP 1/2", ...
    # The last health check's result (L4OK, L4TOUT, INI: not checked yet, ...) and its
    # description: a server starts UP before its first check has run.
    check: str = ""
    check_desc: str = ""

    @property
    def up(self) -> bool:
        return self.status.startswith("UP")


def backends(lab: Lab, lb: str) -> list[Backend]:
    """HAProxy's server states on one LB, from its stats socket (`show stat`)."""
    out = lab.node(lb).check_output("echo 'show stat' | nc -U -w 2 %s",
                                    names.HAPROXY_STATS_SOCKET)
    rows = csv.DictReader(io.StringIO(out.lstrip("# ")))
    return [Backend(r["pxname"], r["svname"], r["status"], r.get("check_status") or "",
                    r.get("check_desc") or "") for r in rows
            if r.get("svname") not in ("FRONTEND", "BACKEND")]


def server_states(lab: Lab, lb: str, proxy: str = names.API_PROXY) -> dict[str, str]:
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
                 proxy: str = names.API_PROXY) -> float:
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
    runs a small sampling loop of its own and streams one line per sample through its
    node's transport. A line carries the node's clock; the stream's smallest (host - node)
    offset maps it onto this host's monotonic clock, so lines held up by a frozen node or a
    slow link are placed when they were taken, not when they arrived.

    A stream that goes quiet or breaks is closed and the LB's state asked of the provider:
    a down LB (crashed, cut off, frozen) is sampled as holding nothing, a running LB that
    cannot be asked as *unknown* (``holds=None``), until its stream is back.
    """

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._streams: dict[str, Stream] = {}
        self._lock = threading.Lock()

    def _script(self, interval: float) -> str:
        iface, vip = self.lab.topo.network.interface, self.lab.vip
        # One process per sample (ip): bash's own clock and pattern match, no date or grep;
        # on an emulated VM every process start costs tens of milliseconds. A failing `ip`
        # prints "?": unknown, not "does not hold".
        script = ("while :; do "
                  f"a=\"$(ip -o -4 addr show dev {iface} 2>/dev/null)\" || a=\"?\"; "
                  f"case \"$a\" in \"?\") n=\"?\";; *\" {vip}/\"*) n=1;; *) n=0;; esac; "
                  "echo \"$EPOCHREALTIME $n\"; "
                  f"sleep {interval:g}; done")
        return quote_command("exec bash -c %s", script)

    def _sample(self, tl: Timeline, lb: str, holds: bool | None, why: str) -> None:
        tl.holdings.append(Holding(time.monotonic(), lb, holds, why))

    def _follow(self, lb: str, tl: Timeline, interval: float) -> None:
        offset: float | None = None
        gap = interval
        node = self.lab.node(lb)
        while not self._stop.is_set():
            state = self.lab.provider.node_state(lb)
            if state in DOWN_STATES:
                # Asked of the provider (libvirt, for VMs) four times a second: fresh enough
                # for the samples' staleness limit (0.5 s), light on the hypervisor.
                self._sample(tl, lb, False, state)
                self._stop.wait(max(0.25, 2 * interval))
                continue
            try:
                stream = node.transport.stream(self._script(interval))
            except HalabError as e:
                self._sample(tl, lb, None, f"cannot stream: {e}")
                self._stop.wait(max(0.1, 2 * interval))
                continue
            with self._lock:
                self._streams[lb] = stream
            last_t: float | None = None
            try:
                # Quiet for many sampling gaps: frozen, crashed or cut off; ask the provider.
                for line in stream.lines(idle_timeout=max(1.0, 8 * gap)):
                    if self._stop.is_set():
                        break
                    parts = line.split()
                    if len(parts) != 2:
                        continue
                    node_t = float(parts[0])
                    now_mono, now_wall = time.monotonic(), time.time()
                    off = now_wall - node_t
                    offset = off if offset is None else min(offset, off)
                    t = now_mono - (off - offset)
                    if last_t is not None:
                        gap = 0.9 * gap + 0.1 * (t - last_t)
                    last_t = t
                    holds = None if parts[1] == "?" else parts[1] != "0"
                    tl.holdings.append(Holding(t, lb, holds, "ip failed" if holds is None
                                               else ""))
            except HalabError as e:
                if not self._stop.is_set():
                    state = self.lab.provider.node_state(lb)
                    if state in DOWN_STATES:
                        self._sample(tl, lb, False, state)
                    else:
                        self._sample(tl, lb, None, str(e))
            except Exception as e:  # noqa: BLE001 - a watch that dies must be seen
                tl.errors.append(f"the VIP watch of {lb} failed: {type(e).__name__}: {e}")
                self._sample(tl, lb, None, f"watch failed: {e}")
            finally:
                with self._lock:
                    self._streams.pop(lb, None)
                stream.close()

    def start(self, timeline: Timeline, interval: float) -> None:
        self._stop.clear()
        for lb in self.lab.load_balancers:
            th = threading.Thread(target=self._follow, args=(lb.name, timeline, interval),
                                  daemon=True, name=f"halab-vipwatch-{lb.name}")
            th.start()
            self._threads.append(th)
        # The first sample of each LB: a timeline with holders from its first record on.
        from lab.wait import until

        want = {lb.name for lb in self.lab.load_balancers}
        until("a first VIP sample of every load balancer",
              lambda: {h.lb for h in list(timeline.holdings)} >= want, timeout=15,
              interval=interval)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            streams = list(self._streams.values())
        for s in streams:
            s.close()
        for th in self._threads:
            th.join(timeout=3)
        self._threads.clear()
