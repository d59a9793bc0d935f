"""`halab watch`: the lab live, as a person at a terminal follows it while breaking it.

Observers run side by side, each at its own pace:

- the client probes the VIP (api, https, http) every ``interval`` from its namespace, and
  each LB streams whether it holds the VIP at the same pace (``Prober.continuous`` with
  ``observe.VipWatch``: the very timeline the failover verdicts are judged from);
- every ``poll`` seconds, a thread asks the lab's status (``lab.status.gather``), whether
  it is steady (``lab.steady.problems``, the one definition) and where the client sends
  the VIP's packets (its ARP entry).

``Watch.frame()`` is what they said at one moment, as plain data (``Frame``), with the
changes seen since the last frame as ``Event``s; ``lab.screen`` draws it. The one word a
frame ends in (``Frame.verdict``) follows the rule of every verdict in halab: what could
not be observed is *unknown*, never fine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from dataclasses import dataclass

from lab import observe, status, steady
from lab.errors import HalabError
from lab.lab import Lab
from lab.probes import Outage, Prober, Record, Timeline, compute_outages
from lab.topology import Topology
from provision import names

KINDS = ("api", "https", "http")
# A probe starts every interval and lasts at most its budget; later than that plus this
# slack (thread scheduling on a busy machine, as lab.measure allows) and the client's view
# is stale: unknown.
PROBE_SLACK_S = 0.3
# How many polls (each as long as the poll period, or as the last ask took) a status may
# age before it says nothing about now.
STALE_POLLS = 3
# An ask of the lab that takes longer than this (or a few times the last one) is stuck.
ASK_DEADLINE_S = 5.0
ASK_DEADLINE_MAX_S = 120.0


@dataclass(frozen=True)
class Event:
    t: float  # monotonic s: when it happened (a probe's or a sample's own time)
    what: str  # "vip", "api", "https", "http", "lab", "node", "arp", "watch"
    text: str


@dataclass(frozen=True)
class KindView:
    """What the client saw of one probe kind."""

    kind: str
    last: Record | None  # the latest finished probe
    served: bool | None  # the latest probe was good; None: no recent probe (unknown)
    failing_since: float | None  # first failed probe of an outage still going on
    last_outage: Outage | None  # the latest outage that ended
    cells: tuple[str, ...] = ()  # the strip, oldest first: "ok", "fail", "" (no probe)
    rate: float | None = None  # the share of good probes in the window; None: no probe
    latency: float | None = None  # the median latency of the good ones, s


@dataclass(frozen=True)
class Polled:
    """What the poll thread learnt at ``at``."""

    at: float  # when the asking began: how old the answer may be
    done: float  # when it came back: when its news is reported
    status: status.LabStatus | None
    status_error: str | None
    problems: tuple[str, ...]  # lab.steady.problems; "unknown: ..." where it could not ask
    arp: str | None  # the LB (or MAC) the client sends the VIP's packets to; "" none; None ?
    arp_error: str | None = None


@dataclass(frozen=True)
class Frame:
    topo: Topology
    t: float
    started: float
    window: float
    interval: float
    vip: str
    load_balancers: tuple[str, ...]
    holders: list[str] | None  # now, from the LBs' own samples; None: unknown
    vip_cells: tuple[list[str] | None, ...]  # the VIP strip, oldest first
    kinds: dict[str, KindView]
    polled: Polled | None  # None: not asked yet
    poll_every: float
    probe_stale_after: float  # a kind whose latest probe is older says nothing about now
    errors: tuple[str, ...]  # dead probe or watch threads
    events: tuple[Event, ...] = ()  # every event so far, oldest first

    @property
    def status_age(self) -> float | None:
        return None if self.polled is None else self.t - self.polled.at

    @property
    def status(self) -> status.LabStatus | None:
        """The polled status with the VIP as the LBs' live samples say it now (the same
        observation, fresher): a picture that agrees with the VIP strip beside it."""
        if self.polled is None or self.polled.status is None:
            return None
        return with_live_vip(self.polled.status, self.holders)

    @property
    def verdict(self) -> tuple[str, list[str]]:
        return verdict(self)


def with_live_vip(st: status.LabStatus, holders: list[str] | None) -> status.LabStatus:
    """``st`` with every LB's hold on the VIP taken from ``holders``. When those are
    unknown, an LB the status found down still holds nothing (observe's rule); every other
    LB is unknown."""
    lbs = {n.name for n in st.nodes if n.name in st.backends}

    def holds(n: status.NodeStatus) -> bool | None:
        if holders is not None:
            return n.name in holders
        return False if n.state in observe.DOWN_STATES else None

    nodes = [dataclasses.replace(n, holds_vip=holds(n)) if n.name in lbs else n
             for n in st.nodes]
    return dataclasses.replace(
        st, nodes=nodes,
        vip_holders=[] if holders is None else [n.name for n in nodes if n.name in holders],
        vip_unknown=[n.name for n in nodes if n.name in lbs and n.holds_vip is None])


# -- the verdict -------------------------------------------------------------------------------
def verdict(f: Frame) -> tuple[str, list[str]]:
    """One word for the lab now, and why:

    - ``outage``: the client's latest probe of some kind failed (a fact, whatever else
      could not be asked);
    - ``unknown``: something could not be observed: a running LB's hold on the VIP, a probe
      kind with no recent probe, a dead probe thread, a node that could not be asked, a
      status that has not come or is stale;
    - ``degraded``: the client is served, but the lab is not as provisioned
      (lab.steady's problems: a daemon down, a backend DOWN, the VIP not on the MASTER...);
    - ``steady``: served, and steady by lab.steady's definition.
    """
    failing = []
    for k in f.kinds.values():
        if k.served is False and k.last is not None:
            since = k.failing_since if k.failing_since is not None else k.last.t
            failing.append(f"{k.kind}: failing for {f.t - since:.1f} s "
                           f"({k.last.stage or 'probe'}: {k.last.error})")
    if failing:
        return "outage", failing
    unknown = list(f.errors)
    if f.holders is None:
        unknown.append("who holds the VIP is unknown (an LB could not be asked, or its "
                       "samples are late)")
    for k in f.kinds.values():
        if k.served is None:
            unknown.append(f"{k.kind}: no probe finished in the last "
                           f"{f.probe_stale_after:.1f} s")
    if f.polled is None:
        unknown.append("the lab's status has not been asked yet")
    else:
        age = f.t - f.polled.at
        if age > stale_status_after(f.polled, f.poll_every):
            unknown.append(f"the lab's status is {age:.0f} s old (the last ask has not "
                           "come back)")
        if f.polled.status_error:
            unknown.append(f"status: {f.polled.status_error}")
        st = f.polled.status
        if st is not None:
            unknown += [f"{where}: could not be asked: {what}" for where, what in st.errors()
                        if _a_hole(st, where)]
        unknown += [p.removeprefix("unknown: ") for p in f.polled.problems
                    if p.startswith("unknown")]
        if f.polled.arp is None:
            unknown.append(f"the client's ARP entry: {f.polled.arp_error or 'not asked'}")
    if unknown:
        return "unknown", unknown
    assert f.polled is not None
    if f.polled.problems:
        return "degraded", list(f.polled.problems)
    return "steady", []


def stale_status_after(polled: Polled, poll_every: float) -> float:
    """How old a status may be before it says nothing about now: a few polls, measured by
    how long the last one took (on a busy machine asking takes seconds; a poll that hangs,
    e.g. on a node that swallows SSH, shows by taking far longer than the one before)."""
    return STALE_POLLS * max(poll_every, polled.done - polled.at)


def _a_hole(st: status.LabStatus, where: str) -> bool:
    """Is this error a hole in the view? Not when it is what a known fault means: a node
    that is down cannot be asked, and an HAProxy that is not running has no backends."""
    name = where.removesuffix(" HAProxy")
    node = next((n for n in st.nodes if n.name == name), None)
    if node is None:
        return True
    if node.state in observe.DOWN_STATES:
        return False
    if where.endswith(" HAProxy") and node.daemons is not None:
        haproxy = node.daemons.get(names.HAPROXY_UNIT)
        return haproxy is None or haproxy.active
    return True


# -- the strips --------------------------------------------------------------------------------
def probe_cells(records: list[Record], start: float, width: float, n: int) -> tuple[str, ...]:
    """``n`` columns of ``width`` s from ``start``: "fail" if any probe started in it
    failed, "ok" if all were good, "" if none started."""
    cells = [""] * n
    for r in records:
        i = int((r.t - start) // width)
        if 0 <= i < n:
            cells[i] = "fail" if (not r.ok or cells[i] == "fail") else "ok"
    return tuple(cells)


def kind_view(kind: str, records: list[Record], now: float, stale_after: float,
              start: float, width: float, n: int) -> KindView:
    """One kind's view from its records (sorted by start): the latest probe, the outage
    still going on (from its first failed probe), the latest that ended."""
    last = records[-1] if records else None
    served = None if last is None or now - last.t > stale_after else last.ok
    failing_since = None
    for r in reversed(records):
        if r.ok:
            break
        failing_since = r.t
    outages = compute_outages(records)
    ended = outages[:-1] if failing_since is not None else outages
    seen = [r for r in records if r.t >= start]
    good = sorted(r.latency for r in seen if r.ok)
    return KindView(kind, last, served, failing_since, ended[-1] if ended else None,
                    probe_cells(records, start, width, n),
                    len(good) / len(seen) if seen else None,
                    good[len(good) // 2] if good else None)


# -- the engine --------------------------------------------------------------------------------
class Watch:
    """Observe a running lab until closed; ``frame()`` whenever a picture is wanted.

    ``lab`` gives the probes and the VIP streams (their own sockets and connections); the
    poll thread asks through a ``Lab`` object of its own, made from ``lab``'s file and
    replaced whenever an ask gets stuck, so that one node that vanished mid-command holds
    nothing else up."""

    def __init__(self, lab: Lab, interval: float = 0.1, poll: float = 1.0,
                 window: float = 30.0, columns: int = 60,
                 kinds: tuple[str, ...] = KINDS, prober: Prober | None = None) -> None:
        if interval <= 0 or poll <= 0 or window <= 0 or columns < 1:
            raise HalabError("halab watch needs --interval, --poll and --window above 0")
        self.lab, self.interval, self.poll_every = lab, interval, poll
        self.window, self.columns, self.kinds = window, columns, kinds
        self.prober = prober or lab.prober
        self.timeline: Timeline | None = None
        self._stack = contextlib.ExitStack()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._polled: Polled | None = None
        self._macs: dict[str, str] = {}  # LB name -> lab MAC, learnt once
        self._events: list[Event] = []
        self._pending: list[Event] = []  # events of the poll thread, not yet framed
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}  # kind -> start of the latest record processed
        self._ok: dict[str, bool] = {}  # kind -> was the latest probe good
        self._fail_start: dict[str, float] = {}
        self._fail_count: dict[str, int] = {}
        self._holders: list[str] | None | str = "-"  # "-": nothing framed yet
        self._frame_t = 0.0
        self._last_polled: Polled | None = None
        self._asking: Lab | None = None
        self._given_up = 0  # asks given up in a row
        self.started = 0.0

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Watch:
        self.started = time.monotonic()
        try:
            self.timeline = self._stack.enter_context(self.prober.continuous(
                interval=self.interval, kinds=self.kinds, watch=observe.VipWatch(self.lab)))
        except BaseException:
            self._stack.close()
            raise
        self._poller = threading.Thread(target=self._poll_loop, daemon=True,
                                        name="halab-watch-poll")
        self._poller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=30)
        self._stack.close()
        if self._asking is not None:
            _close(self._asking)

    @property
    def last_poll_s(self) -> float:
        """How long the latest ask took (the poll period until one came back)."""
        p = self._polled
        return self.poll_every if p is None else p.done - p.at

    def wait_polled(self, timeout: float = 60.0) -> None:
        """Until the first status has come back (for `--once` and tests)."""
        from lab.wait import until

        until("the first status of the lab", lambda: self._polled is not None,
              timeout=timeout, interval=0.1)

    # -- the poll thread ---------------------------------------------------------------------
    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            if self._asking is None:
                self._asking = _sibling(self.lab)
            result: list[Polled] = []
            asker = threading.Thread(target=self._ask, args=(self._asking, t0, result),
                                     daemon=True, name="halab-watch-ask")
            asker.start()
            why = self._wait(asker, self._asking)
            if why:
                self._give_up(self._asking, why)
                self._asking = None
                self._given_up += 1
                continue  # at once, on fresh connections
            self._given_up = 0
            if result:
                self._polled = result[0]
            self._stop.wait(max(0.0, self.poll_every - (time.monotonic() - t0)))

    def _ask(self, lab: Lab, t0: float, result: list[Polled]) -> None:
        try:
            result.append(self.poll_once(lab))
        except Exception as e:  # noqa: BLE001 - a poll that dies must be seen
            result.append(Polled(t0, time.monotonic(), None, f"{type(e).__name__}: {e}",
                                 (f"unknown: the poll failed: {e}",), None, str(e)))

    def ask_deadline(self) -> float:
        """How long one ask may take before it is given up: a few times the last one, at
        least ASK_DEADLINE_S, doubled after each ask given up in a row (a busy machine
        answers slowly, not never, and new connections cost handshakes)."""
        return min(ASK_DEADLINE_MAX_S,
                   max(ASK_DEADLINE_S, 3 * self.last_poll_s) * 2 ** self._given_up)

    def _wait(self, asker: threading.Thread, lab: Lab) -> str:
        """Wait for an ask; why it was given up, or "" when it came back. It is given up
        when a node went down while it was being asked (a command in flight there never
        returns), or when it took far longer than the one before."""
        t0 = time.monotonic()
        before = status.provider_states(lab)
        while asker.is_alive():
            asker.join(0.5)
            if not asker.is_alive():
                break
            now = status.provider_states(lab)
            gone = [n for n, st in now.items() if st in observe.DOWN_STATES
                    and before.get(n) not in observe.DOWN_STATES]
            if gone:
                return f"{', '.join(gone)} went down while the lab was being asked"
            if time.monotonic() - t0 > self.ask_deadline():
                return f"asking the lab took over {time.monotonic() - t0:.0f} s"
        return ""

    def _give_up(self, lab: Lab, why: str) -> None:
        """An ask is stuck: typically on an SSH connection whose node crashed while a
        command was in flight (no RST ever comes, and paramiko waits an hour to open a
        channel). Its connections are closed, which ends it with an error nobody reads;
        the next ask starts on a Lab object of its own. Meanwhile the status ages, and the
        verdict says unknown once it is stale."""
        with self._lock:  # from the poll thread: frame() takes it in with its own
            self._pending.append(Event(time.monotonic(), "watch", f"watch: {why}; asking "
                                       "again on new connections"))
        _close(lab)

    def poll_once(self, lab: Lab | None = None) -> Polled:
        """Ask the lab once: its status, whether it is steady, the client's ARP entry."""
        lab = lab or self.lab
        at = time.monotonic()
        st: status.LabStatus | None
        try:
            st, st_error = status.gather(lab), None
        except HalabError as e:
            st, st_error = None, str(e)
        try:
            problems = tuple(steady.problems(lab))
        except HalabError as e:
            problems = (f"unknown: {e}",)
        arp, arp_error = self._arp(lab)
        return Polled(at, time.monotonic(), st, st_error, problems, arp, arp_error)

    def _arp(self, lab: Lab) -> tuple[str | None, str | None]:
        try:
            mac = observe.neighbour_mac(lab, lab.vip)
        except HalabError as e:
            return None, str(e)
        if mac is None:
            return "", None
        for lb in lab.topo.load_balancers:
            if lb.name not in self._macs:
                with contextlib.suppress(HalabError):
                    self._macs[lb.name] = observe.lab_mac(lab, lb.name)
            if self._macs.get(lb.name) == mac:
                return lb.name, None
        return mac, None

    # -- frames ------------------------------------------------------------------------------
    def frame(self) -> Frame:
        assert self.timeline is not None, "frame() of a Watch that was not entered"
        tl = self.timeline
        now = time.monotonic()
        self._trim(tl, now)
        width = self.window / self.columns
        start = now - self.window
        stale_after = self.interval + self.prober.timeout + PROBE_SLACK_S
        kinds = {k: kind_view(k, tl.of(k), now, stale_after, start, width, self.columns)
                 for k in self.kinds}
        ends = [start + (i + 1) * width for i in range(self.columns)]
        series = tl.holders_series([*ends[:-1], now])
        holders = series[-1]
        polled = self._polled
        self._events_from(tl, now, holders, polled)
        self._frame_t = now
        lbs = tuple(lb.name for lb in self.lab.topo.load_balancers)
        return Frame(self.lab.topo, now, self.started, self.window, self.interval,
                     self.lab.vip, lbs, holders, tuple(series), kinds, polled,
                     self.poll_every, stale_after, tuple(tl.errors), tuple(self._events))

    def _trim(self, tl: Timeline, now: float) -> None:
        """Forget what is older than the window (and a margin for the holders' rule, which
        wants each LB's last sample before a moment): a watch may run for hours."""
        cut = now - self.window - 10.0
        for series in (tl.records, tl.holdings):
            n = 0
            for item in series:
                if item.t >= cut:
                    break
                n += 1
            if n:
                del series[:n]  # appends from the probe threads go to the end meanwhile

    def _event(self, t: float, what: str, text: str) -> None:
        self._events.append(Event(t, what, " ".join(text.split())))  # one line, always

    def _events_from(self, tl: Timeline, now: float, holders: list[str] | None,
                     polled: Polled | None) -> None:
        batch = len(self._events)
        with self._lock:
            self._events += self._pending
            self._pending.clear()
        # The client: each probe kind's records since the last frame, in start order.
        for k in self.kinds:
            for r in tl.of(k):
                if r.t <= self._seen.get(k, -1.0):
                    continue
                self._seen[k] = r.t
                was = self._ok.get(k)
                if not r.ok:
                    self._fail_count[k] = self._fail_count.get(k, 0) + 1
                if was is not False and not r.ok:
                    self._fail_start[k] = r.t
                    self._fail_count[k] = 1
                    self._event(r.t, k, f"{k}: FAILING ({r.stage or 'probe'}: {r.error})")
                elif was is False and r.ok:
                    t0 = self._fail_start.get(k, r.t)
                    self._event(r.t, k, f"{k}: served again via {_via(self.lab, r)} after "
                                f"{r.t - t0:.2f} s ({self._fail_count.get(k, 0)} probes "
                                "failed)")
                elif was is None and r.ok:
                    self._event(r.t, k, f"{k}: served via {_via(self.lab, r)}")
                self._ok[k] = r.ok
        # The VIP: when the LBs' samples first showed the new holders.
        if holders != self._holders:
            self._event(self._changed_at(tl, holders), "vip", "VIP: " + _holders_text(holders))
            self._holders = holders
        # The lab: what the poll said, when it changed.
        if polled is not None and polled is not self._last_polled:
            before = self._last_polled
            self._last_polled = polled
            if before is None or before.problems != polled.problems:
                text = ("steady" if not polled.problems
                        else "not steady: " + "; ".join(polled.problems))
                self._event(polled.done, "lab", f"lab: {text}")
            if before is None or before.arp != polled.arp:
                self._event(polled.done, "arp", "ARP: the client sends the VIP's packets to "
                            + ({None: "? (" + str(polled.arp_error) + ")", "": "nobody (no "
                                "entry)"}.get(polled.arp, polled.arp or "")))
            for what, line in status_changes(before.status if before else None,
                                             polled.status):
                self._event(polled.done, what, line)
        # This frame's events in the order they happened; earlier frames' stay as they were
        # (a pipe has printed them already).
        self._events[batch:] = sorted(self._events[batch:], key=lambda e: e.t)

    def _changed_at(self, tl: Timeline, holders: list[str] | None) -> float:
        """The first sample since the last frame at which the holders became ``holders``."""
        since = self._frame_t - 1.0
        times = sorted(h.t for h in list(tl.holdings) if h.t > since)
        run: float | None = None  # the start of the latest run of samples showing it
        for t, got in zip(times, tl.holders_series(times), strict=True):
            run = (t if run is None else run) if got == holders else None
        return run if run is not None else time.monotonic()

    def events(self) -> list[Event]:
        return list(self._events)


def _sibling(lab: Lab) -> Lab:
    """Another Lab object of the same lab: its own provider handle and connections."""
    return Lab(lab.topo, lab.state.dir.parent.parent, lab.provider.name)


def _close(lab: Lab) -> None:
    # Each node's transport, not Lab.close(): that also forgets the nodes, under the feet
    # of an ask that may still be running on them.
    for node in lab.nodes.values():
        node.transport.close()
    if "prober" in lab.__dict__:  # made (cached) only if steady.problems probed
        lab.prober.close()


def _via(lab: Lab, r: Record) -> str:
    lb = next((n.name for n in lab.topo.load_balancers if str(n.address) == r.via), r.via)
    return f"{lb or '?'} → {r.master or '?'}"


def _holders_text(holders: list[str] | None) -> str:
    if holders is None:
        return "unknown (an LB could not be asked)"
    if not holders:
        return "held by no load balancer"
    if len(holders) > 1:
        return f"on {' and '.join(holders)} (split brain)"
    return f"on {holders[0]}"


def status_changes(before: status.LabStatus | None,
                   after: status.LabStatus | None) -> list[tuple[str, str]]:
    """What changed between two statuses, as (kind, text): node states and daemons
    ("node"), VRRP as keepalived reports it ("vrrp"), HAProxy's servers on each LB
    ("backend"). Only what both statuses know is compared: a status that could not ask
    something says nothing changed there (the verdict says it is unknown)."""
    if before is None or after is None:
        return []
    out: list[tuple[str, str]] = []
    old = {n.name: n for n in before.nodes}
    for n in after.nodes:
        o = old.get(n.name)
        if o is None:
            continue
        if o.state != n.state:
            out.append(("node", f"{n.name}: {o.state} → {n.state}"))
        if o.daemons is not None and n.daemons is not None:
            for d, st in n.daemons.items():
                was = o.daemons.get(d)
                if was is not None and was.active != st.active:
                    out.append(("node", f"{n.name}: {d} {'started' if st.active else 'stopped'}"))
        if o.vrrp is not None and n.vrrp is not None:
            if o.vrrp.state != n.vrrp.state:
                out.append(("vrrp", f"{n.name}: VRRP {o.vrrp} → {n.vrrp}"))
            elif o.vrrp.effective_priority != n.vrrp.effective_priority:
                out.append(("vrrp", f"{n.name}: effective priority "
                            f"{o.vrrp.effective_priority} → {n.vrrp.effective_priority}"))
    for lb, b in after.backends.items():
        a = before.backends.get(lb)
        if a is None or a.servers is None or b.servers is None:
            continue
        was = {(x.proxy, x.server): x for x in a.servers}
        for x in b.servers:
            w = was.get((x.proxy, x.server))
            if w is not None and w.up != x.up:
                out.append(("backend", f"{lb}: {x.proxy}/{x.server} "
                            f"{'UP' if x.up else 'DOWN'} ({x.status})"))
    return out

