"""What a client sees: TCP, TLS and HTTP through the VIP, once or every 50 ms.

Sockets are opened inside the lab's client namespace from this process: a worker thread
enters the namespace (setns only moves that one thread) and hands sockets back; a socket
keeps the namespace it was made in, so it can then be used from any thread. No probe
leaves from this host's own namespace.
"""

from __future__ import annotations

import ctypes
import os
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

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
        try:
            if kind == "tcp":
                self._connect(6443, timeout).close()
                return Record(t0, kind, True, time.monotonic() - t0)
            port = {"api": 6443, "https": 443, "http": 80}[kind]
            raw = self._connect(port, timeout)
            sock = (self.tls.wrap_socket(raw, server_hostname=self.vip) if port != 80 else raw)
            with sock:
                status, headers, _ = _http(sock, self.vip, path if kind == "api" else "/")
            return Record(t0, kind, 200 <= status < 300, time.monotonic() - t0,
                          "" if status < 300 else f"HTTP {status}", status,
                          headers.get("x-halab-node"), headers.get("x-halab-peer"))
        except (OSError, ssl.SSLError, ConnectionError, ValueError) as e:
            return Record(t0, kind, False, time.monotonic() - t0, f"{type(e).__name__}: {e}")

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
                   sample: Callable[[], object] | None = None) -> Iterator[Timeline]:
        """Probe every ``interval`` s in a thread until the block ends; yields the timeline."""
        tl = Timeline(interval)
        stop = threading.Event()

        def loop() -> None:
            nxt = time.monotonic()
            while not stop.is_set():
                for k in kinds:
                    tl.records.append(self.probe(k))
                if sample is not None:
                    tl.samples.append((time.monotonic(), sample()))
                nxt += interval
                stop.wait(max(0.0, nxt - time.monotonic()))

        th = threading.Thread(target=loop, daemon=True, name="halab-probe")
        th.start()
        try:
            yield tl
        finally:
            stop.set()
            th.join(timeout=5)

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


@dataclass
class Timeline:
    interval: float
    records: list[Record] = field(default_factory=list)
    samples: list[tuple[float, object]] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)

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

    def outage_after(self, t: float, kind: str = "api") -> float:
        """What the client lost after a fault at ``t``: from ``t`` to the first good probe
        after the last failure (0 when no probe failed)."""
        recs = [r for r in self.of(kind) if r.t >= t]
        bad = [r for r in recs if not r.ok]
        if not bad:
            return 0.0
        last_bad = bad[-1]
        good_after = [r for r in recs if r.ok and r.t > last_bad.t]
        end = good_after[0].t if good_after else last_bad.t + last_bad.latency
        return end - t


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
