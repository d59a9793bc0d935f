"""What a client sees: TCP, TLS and HTTP through the VIP, once or every 50 ms.

Sockets are opened inside the lab's client namespace from this process: a worker thread
enters the namespace (setns only moves that one thread) and hands sockets back; a socket
keeps the namespace it was made in, so it can then be used from any thread. No probe
leaves from this host's own namespace.
"""

from __future__ import annotations

import copy
import ctypes
import os
import queue
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsSockets:
    """Makes sockets inside a named network namespace (None: this process's own)."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self._requests: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _serve(self, ready: queue.Queue) -> None:
        try:
            fd = os.open(f"/run/netns/{self.netns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({self.netns}): {os.strerror(err)}")
            finally:
                os.close(fd)
        except OSError as e:
            ready.put(e)
            return
        ready.put(None)
        while True:
            item = self._requests.get()
            if item is None:
                return
            args, reply = item
            try:
                reply.put(socket.socket(*args))
            except OSError as e:
                reply.put(e)

    def socket(self, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
        if self.netns is None:
            return socket.socket(family, kind)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                ready: queue.Queue = queue.Queue()
                self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True,
                                                name=f"netns-{self.netns}")
                self._thread.start()
                err = ready.get()
                if err is not None:
                    self._thread = None
                    raise err
        reply: queue.Queue = queue.Queue()
        self._requests.put(((family, kind), reply))
        s = reply.get()
        if isinstance(s, Exception):
            raise s
        return s

    def close(self) -> None:
        if self._thread is not None:
            self._requests.put(None)
            self._thread = None


@dataclass
class Record:
    """One probe: when, what, how it went, and who served it."""

    t: float  # time.monotonic() when the probe started
    kind: str
    ok: bool
    latency: float
    error: str = ""
    status: int | None = None
    master: str | None = None  # the node that answered
    via: str | None = None  # the address the answering node saw: the forwarding LB
    # Where a failed probe broke: "connect" (no TCP connection: nobody answers for the VIP)
    # or "exchange" (connected, then TLS or HTTP broke: an established connection reset).
    stage: str = ""

    @property
    def refused_new_connection(self) -> bool:
        return not self.ok and self.stage == "connect"


def _http(sock: socket.socket, host: str, path: str) -> tuple[int, dict[str, str], bytes]:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: halab-probe\r\n"
                 "Connection: close\r\n\r\n".encode())
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines or not lines[0].startswith("HTTP/"):
        raise ConnectionError(f"not an HTTP answer: {lines[0] if lines else '(nothing)'!r}")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body


class Prober:
    """Probes through the VIP from the client: api (TLS + GET /healthz on 6443), https
    (TLS on 443), http (GET / on 80), tcp (connect to 6443)."""

    def __init__(self, netns: str | None, vip: str, ca_file: Path, timeout: float = 0.5) -> None:
        self.sockets = NetnsSockets(netns)
        self.vip = vip
        self.timeout = timeout
        self.tls = ssl.create_default_context(cafile=str(ca_file))
        self.tls.check_hostname = True  # the VIP must be in the certificate's SANs

    def _connect(self, port: int, timeout: float) -> socket.socket:
        s = self.sockets.socket()
        s.settimeout(timeout)
        try:
            s.connect((self.vip, port))
        except BaseException:
            s.close()
            raise
        return s

    def probe(self, kind: str = "api", path: str = "/healthz",
              timeout: float | None = None) -> Record:
        timeout = self.timeout if timeout is None else timeout
        t0 = time.monotonic()
        port = {"api": 6443, "tcp": 6443, "https": 443, "http": 80}[kind]
        try:
            raw = self._connect(port, timeout)
        except OSError as e:
            return Record(t0, kind, False, time.monotonic() - t0, f"{type(e).__name__}: {e}",
                          stage="connect")
        if kind == "tcp":
            raw.close()
            return Record(t0, kind, True, time.monotonic() - t0)
        try:
            sock = (self.tls.wrap_socket(raw, server_hostname=self.vip) if port != 80 else raw)
            with sock:
                status, headers, _ = _http(sock, self.vip, path if kind == "api" else "/")
            return Record(t0, kind, 200 <= status < 300, time.monotonic() - t0,
                          "" if status < 300 else f"HTTP {status}", status,
                          headers.get("x-halab-node"), headers.get("x-halab-peer"))
        except (OSError, ssl.SSLError, ConnectionError, ValueError) as e:
            raw.close()
            return Record(t0, kind, False, time.monotonic() - t0, f"{type(e).__name__}: {e}",
                          stage="exchange")

    def with_timeout(self, timeout: float) -> Prober:
        """The same prober with another budget per probe (sharing its client sockets)."""
        other = copy.copy(self)
        other.timeout = timeout
        return other

    def get(self, path: str, port: int = 6443) -> tuple[int, dict[str, str], bytes]:
        """One HTTPS GET through the VIP, raising on any failure (for assertions)."""
        raw = self._connect(port, 5)
        with self.tls.wrap_socket(raw, server_hostname=self.vip) as s:
            return _http(s, self.vip, path)

    def peer_certificate(self, port: int = 6443) -> dict:
        raw = self._connect(port, 5)
        with self.tls.wrap_socket(raw, server_hostname=self.vip) as s:
            return s.getpeercert() or {}

    @contextmanager
    def continuous(self, interval: float = 0.05, kinds: tuple[str, ...] = ("api",),
                   watch: Watcher | None = None) -> Iterator[Timeline]:
        """Probe every ``interval`` s until the block ends; yields the timeline.

        Each kind probes in a thread of its own, so that a kind that hangs until its
        timeout (a VIP nobody answers for) does not thin out the others' records.
        ``watch`` (e.g. observe.VipWatch) runs beside the probes and feeds the timeline."""
        tl = Timeline(interval)
        stop = threading.Event()

        def loop(kind: str) -> None:
            nxt = time.monotonic()
            while not stop.is_set():
                tl.records.append(self.probe(kind))
                nxt += interval
                stop.wait(max(0.0, nxt - time.monotonic()))

        threads = [threading.Thread(target=loop, args=(k,), daemon=True,
                                    name=f"halab-probe-{k}") for k in kinds]
        if watch is not None:
            watch.start(tl, interval)
        for th in threads:
            th.start()
        try:
            yield tl
        finally:
            stop.set()
            for th in threads:
                th.join(timeout=5)
            if watch is not None:
                watch.stop()

    def close(self) -> None:
        self.sockets.close()


@dataclass
class Outage:
    start: float  # first failed probe
    end: float  # first good probe after it
    failed: int

    @property
    def seconds(self) -> float:
        return self.end - self.start


class Watcher(Protocol):
    """Something that samples the lab beside the probes and writes into the timeline."""

    def start(self, timeline: Timeline, interval: float) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Holding:
    """One sample of one load balancer: does its lab NIC carry the VIP at time t?"""

    t: float
    lb: str
    holds: bool


@dataclass
class Timeline:
    interval: float
    records: list[Record] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)
    holdings: list[Holding] = field(default_factory=list)

    def mark(self, label: str) -> float:
        t = time.monotonic()
        self.marks.append((t, label))
        return t

    def of(self, kind: str = "api") -> list[Record]:
        return [r for r in list(self.records) if r.kind == kind]

    def outages(self, kind: str = "api") -> list[Outage]:
        """Windows of consecutive failures, each ended by the next good probe."""
        return compute_outages(self.of(kind))

    def failures(self, kind: str = "api", after: float = 0.0) -> list[Record]:
        return [r for r in self.of(kind) if not r.ok and r.t >= after]

    def outage_after(self, t: float, kind: str = "api", until: float | None = None) -> float:
        """What the client lost after a fault at ``t``: from ``t`` to the first good probe
        after the last failure (0 when no probe failed). ``until``: ignore later probes."""
        recs = [r for r in self.of(kind) if r.t >= t and (until is None or r.t < until)]
        bad = [r for r in recs if not r.ok]
        if not bad:
            return 0.0
        last_bad = bad[-1]
        good_after = [r for r in recs if r.ok and r.t > last_bad.t]
        end = good_after[0].t if good_after else last_bad.t + last_bad.latency
        return end - t


    def held_alone_from(self, lb: str, after: float, stale: float | None = None) -> float | None:
        """When ``lb`` was first seen as the only holder of the VIP after ``after`` (the
        node's own sampling clock, not when a poll happened to ask)."""
        for h in sorted(self.holdings, key=lambda h: h.t):
            if h.t >= after and h.lb == lb and h.holds and self.holders_at(h.t, stale) == [lb]:
                return h.t
        return None

    def sample_gap(self, lb: str) -> float:
        """How often ``lb`` was sampled (median gap): 50 ms on the embedded lab, several
        times that on an emulated VM, where each sample costs a process or two."""
        ts = sorted(h.t for h in self.holdings if h.lb == lb)
        gaps = sorted(b - a for a, b in zip(ts, ts[1:], strict=False))
        return gaps[len(gaps) // 2] if gaps else self.interval

    def holders_at(self, t: float, stale: float | None = None) -> list[str] | None:
        """The LBs seen holding the VIP at ``t`` (None when no LB was sampled recently: a
        frozen or crashed LB says nothing). A sample is recent within ``stale`` s, by
        default four of that LB's sampling gaps (at least 0.5 s)."""
        last: dict[str, Holding] = {}
        for h in self.holdings:
            if h.t > t:
                break
            last[h.lb] = h
        limit = {lb: stale if stale is not None else max(0.5, 4 * self.sample_gap(lb))
                 for lb in last}
        fresh = [h for h in last.values() if t - h.t <= limit[h.lb]]
        if not fresh:
            return None
        return sorted(h.lb for h in fresh if h.holds)

    def to_dict(self, t0: float = 0.0) -> dict:
        """Plain data (times relative to ``t0``) for the chaos journal and report."""
        return {
            "interval": self.interval,
            "records": [{"t": round(r.t - t0, 4), "kind": r.kind, "ok": r.ok,
                         "latency": round(r.latency, 4), "error": r.error, "status": r.status,
                         "master": r.master, "via": r.via} for r in list(self.records)],
            "holdings": [{"t": round(h.t - t0, 4), "lb": h.lb, "holds": h.holds}
                         for h in list(self.holdings)],
            "marks": [{"t": round(t - t0, 4), "label": label} for t, label in self.marks],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Timeline:
        tl = cls(d["interval"])
        tl.records = [Record(r["t"], r["kind"], r["ok"], r["latency"], r.get("error", ""),
                             r.get("status"), r.get("master"), r.get("via"))
                      for r in d.get("records", [])]
        tl.holdings = [Holding(h["t"], h["lb"], h["holds"]) for h in d.get("holdings", [])]
        tl.marks = [(m["t"], m["label"]) for m in d.get("marks", [])]
        return tl


def compute_outages(records: list[Record]) -> list[Outage]:
    out: list[Outage] = []
    start: float | None = None
    failed = 0
    recs = sorted(records, key=lambda r: r.t)
    for r in recs:
        if not r.ok:
            if start is None:
                start, failed = r.t, 0
            failed += 1
        elif start is not None:
            out.append(Outage(start, r.t, failed))
            start = None
    if start is not None:
        last = recs[-1]
        out.append(Outage(start, last.t + last.latency, failed))
    return out
