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
    # Where a failed probe broke: "connect" (no TCP connection: nobody answers for the VIP),
    # "exchange" (connected, then TLS or HTTP broke: an established connection reset) or
    # "answer" (a complete answer, but not a good one: HTTP 5xx from a master).
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
            # One budget for the whole probe, not one per socket operation: a probe that
            # takes longer than its budget would leave the next one late.
            raw.settimeout(max(0.001, t0 + timeout - time.monotonic()))
            sock = (self.tls.wrap_socket(raw, server_hostname=self.vip) if port != 80 else raw)
            with sock:
                sock.settimeout(max(0.001, t0 + timeout - time.monotonic()))
                status, headers, _ = _http(sock, self.vip, path if kind == "api" else "/")
            good = 200 <= status < 300
            return Record(t0, kind, good, time.monotonic() - t0,
                          "" if good else f"HTTP {status}", status,
                          headers.get("x-halab-node"), headers.get("x-halab-peer"),
                          stage="" if good else "answer")
        except (OSError, ssl.SSLError, ConnectionError, ValueError) as e:
            raw.close()
            return Record(t0, kind, False, time.monotonic() - t0, f"{type(e).__name__}: {e}",
                          stage="exchange")

    def listening(self, address: str, port: int, timeout: float | None = None) -> bool:
        """Does ``address`` (a node's own, not the VIP) accept a TCP connection on
        ``port``, from the client?"""
        s = self.sockets.socket()
        s.settimeout(self.timeout if timeout is None else timeout)
        try:
            s.connect((address, port))
            return True
        except OSError:
            return False
        finally:
            s.close()

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
        tl = Timeline(interval, timeout=self.timeout, kinds=tuple(kinds))
        stop = threading.Event()

        def loop(kind: str) -> None:
            nxt = time.monotonic()
            try:
                while not stop.is_set():
                    tl.records.append(self.probe(kind))
                    nxt += interval
                    stop.wait(max(0.0, nxt - time.monotonic()))
            except BaseException as e:  # noqa: BLE001 - a dead prober must be seen, not hidden
                tl.errors.append(f"the {kind} probe thread died at "
                                 f"{time.monotonic():.3f}: {type(e).__name__}: {e}")

        threads = [threading.Thread(target=loop, args=(k,), daemon=True,
                                    name=f"halab-probe-{k}") for k in kinds]
        if watch is not None:
            watch.start(tl, interval)
        tl.started = time.monotonic()
        for th in threads:
            th.start()
        try:
            yield tl
        finally:
            tl.ended = time.monotonic()
            stop.set()
            for th in threads:
                th.join(timeout=self.timeout + 5)
                if th.is_alive():
                    tl.errors.append(f"{th.name} did not end within {self.timeout + 5:g} s")
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
    """One sample of one load balancer: does its lab NIC carry the VIP at time t?

    ``holds`` is None when a running LB could not be asked (an SSH error, a failing `ip`):
    unknown, never "does not hold". An LB that is down (crashed, cut off, frozen) holds
    nothing the network can see: False, with ``why`` saying so."""

    t: float
    lb: str
    holds: bool | None
    why: str = ""


@dataclass
class Timeline:
    """What was seen while probing: the probes' records, the LBs' VIP samples, the marks
    the test or scenario set, and anything that went wrong with the observing itself."""

    interval: float
    records: list[Record] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)
    holdings: list[Holding] = field(default_factory=list)
    timeout: float = 0.5  # each probe's budget: a probe starts at most this late
    kinds: tuple[str, ...] = ("api",)
    started: float | None = None  # when the probe threads started and were told to stop
    ended: float | None = None
    errors: list[str] = field(default_factory=list)  # dead probe or watch threads

    def mark(self, label: str) -> float:
        t = time.monotonic()
        self.marks.append((t, label))
        return t

    def of(self, kind: str = "api") -> list[Record]:
        return sorted((r for r in list(self.records) if r.kind == kind), key=lambda r: r.t)

    def outages(self, kind: str = "api") -> list[Outage]:
        """Windows of consecutive failures, each ended by the next good probe."""
        return compute_outages(self.of(kind))

    def failures(self, kind: str = "api", after: float = 0.0) -> list[Record]:
        return [r for r in self.of(kind) if not r.ok and r.t >= after]

    def outage_after(self, t: float, kind: str = "api", until: float | None = None) -> float:
        """What the client lost after a fault at ``t``: from ``t`` to the first good probe
        after the last failure (0 when no probe failed). ``until``: ignore later probes.
        When no good probe followed the last failure, the outage runs to the end of what
        was observed: it is still going on (lab.measure tells that case apart)."""
        recs = [r for r in self.of(kind) if r.t >= t and (until is None or r.t < until)]
        bad = [r for r in recs if not r.ok]
        if not bad:
            return 0.0
        last_bad = bad[-1]
        good_after = [r for r in recs if r.ok and r.t > last_bad.t]
        if good_after:
            return good_after[0].t - t
        end = until if until is not None else (self.ended or last_bad.t + last_bad.latency)
        return max(end, last_bad.t + last_bad.latency) - t

    def _sorted_holdings(self) -> list[Holding]:
        # Every LB's stream appends from a thread of its own, each with its own delay: the
        # list is in arrival order, not in time order.
        return sorted(list(self.holdings), key=lambda h: h.t)

    def held_alone_from(self, lb: str, after: float, stale: float | None = None) -> float | None:
        """When ``lb`` was first seen as the only holder of the VIP after ``after`` (the
        node's own sampling clock, not when a poll happened to ask)."""
        hs = self._sorted_holdings()
        gaps = self._gaps(hs)
        for h in hs:
            if (h.t >= after and h.lb == lb and h.holds
                    and _holders_at(hs, h.t, stale, gaps) == [lb]):
                return h.t
        return None

    def alone_window(self, lb: str, after: float,
                     stale: float | None = None) -> tuple[float, float] | None:
        """(lo, at): ``at`` is ``held_alone_from``; the samples only say the VIP became
        ``lb``'s alone after ``lo`` (``lb`` last seen without it, or another LB last seen
        with it or unasked; never before ``after``). On the embedded lab the two are a
        sample apart (50 ms); on an emulated VM, whose sampler starts a process per sample,
        tenths of a second: a move between them is not known more closely than that."""
        at = self.held_alone_from(lb, after, stale)
        if at is None:
            return None
        lo = after
        for h in self._sorted_holdings():
            if h.t >= at:
                break
            if (h.holds is not True) if h.lb == lb else (h.holds is not False):
                lo = max(lo, h.t)
        return lo, at

    def sample_gap(self, lb: str) -> float:
        """How often ``lb`` was sampled (median gap): 50 ms on the embedded lab, several
        times that on an emulated VM, where each sample costs a process or two."""
        return self._gaps(self._sorted_holdings()).get(lb, self.interval)

    def _gaps(self, hs: list[Holding]) -> dict[str, float]:
        out = {}
        for lb in {h.lb for h in hs}:
            ts = [h.t for h in hs if h.lb == lb and not h.why]
            gaps = sorted(b - a for a, b in zip(ts, ts[1:], strict=False))
            out[lb] = gaps[len(gaps) // 2] if gaps else self.interval
        return out

    def holders_at(self, t: float, stale: float | None = None) -> list[str] | None:
        """The LBs holding the VIP at ``t``, or None when that is unknown: an LB whose last
        sample is older than ``stale`` s (by default four of its sampling gaps, at least
        0.5 s), or an LB that could not be asked. An LB that is down says False."""
        hs = self._sorted_holdings()
        return _holders_at(hs, t, stale, self._gaps(hs))

    def holders_series(self, times: list[float],
                       stale: float | None = None) -> list[list[str] | None]:
        """``holders_at`` for many moments at once (a live view's columns): the samples are
        sorted and their gaps measured once, not once per moment."""
        hs = self._sorted_holdings()
        gaps = self._gaps(hs)
        return [_holders_at(hs, t, stale, gaps) for t in times]

    def unknown_holdings(self, after: float = 0.0) -> list[Holding]:
        """The samples that say an LB could not be asked."""
        return [h for h in self._sorted_holdings() if h.t >= after and h.holds is None]

    def to_dict(self, t0: float = 0.0) -> dict:
        """Plain data (times relative to ``t0``) for the chaos journal and report."""
        def rel(t: float | None) -> float | None:
            return None if t is None else round(t - t0, 4)

        return {
            "interval": self.interval, "timeout": self.timeout, "kinds": list(self.kinds),
            "started": rel(self.started), "ended": rel(self.ended), "errors": list(self.errors),
            "records": [{"t": round(r.t - t0, 4), "kind": r.kind, "ok": r.ok,
                         "latency": round(r.latency, 4), "error": r.error, "status": r.status,
                         "master": r.master, "via": r.via, "stage": r.stage}
                        for r in self.of_all()],
            "holdings": [{"t": round(h.t - t0, 4), "lb": h.lb, "holds": h.holds, "why": h.why}
                         for h in self._sorted_holdings()],
            "marks": [{"t": round(t - t0, 4), "label": label} for t, label in self.marks],
        }

    def of_all(self) -> list[Record]:
        return sorted(list(self.records), key=lambda r: r.t)

    @classmethod
    def from_dict(cls, d: dict) -> Timeline:
        tl = cls(d["interval"], timeout=d.get("timeout", 0.5),
                 kinds=tuple(d.get("kinds", ("api",))), started=d.get("started"),
                 ended=d.get("ended"), errors=list(d.get("errors", [])))
        tl.records = [Record(r["t"], r["kind"], r["ok"], r["latency"], r.get("error", ""),
                             r.get("status"), r.get("master"), r.get("via"), r.get("stage", ""))
                      for r in d.get("records", [])]
        tl.holdings = [Holding(h["t"], h["lb"], h["holds"], h.get("why", ""))
                       for h in d.get("holdings", [])]
        tl.marks = [(m["t"], m["label"]) for m in d.get("marks", [])]
        return tl


def _holders_at(hs: list[Holding], t: float, stale: float | None,
                gaps: dict[str, float]) -> list[str] | None:
    last: dict[str, Holding] = {}
    for h in hs:
        if h.t > t:
            break
        last[h.lb] = h
    every = {h.lb for h in hs}
    if not last or set(last) != every:
        return None  # an LB not sampled yet at t: unknown
    for h in last.values():
        limit = stale if stale is not None else max(0.5, 4 * gaps.get(h.lb, 0.05))
        if h.holds is None or t - h.t > limit:
            return None
    return sorted(h.lb for h in last.values() if h.holds)


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
