"""One measuring path for `halab demo`, the failover tests and the chaos scenarios.

``measure(timeline, ...) -> Figures`` reads what was recorded; ``judge(figures, ...) ->
Verdict`` holds it against what the configuration promises. Both are pure: they run on a
recorded journal as well as on a live timeline, and are unit-tested offline.

A verdict is one of:
- ``passed``: every promise held and the observation covered the whole window;
- ``failed``: a promise was broken (the client never recovered, an outage or a VIP move
  took longer than the bound, connections were refused that must not be);
- ``unknown``: the observation itself has a hole (a probe thread died, probes stopped for
  longer than their budget, an LB could not be asked): never a pass;
- ``inconclusive``: the lab did not keep its own timers (e.g. VRRP adverts far slower than
  ``advert_int`` on an overloaded emulated VM), so a timing bound says nothing either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.probes import Record, Timeline
from lab.timing import Bound
from lab.wire import Advert, Arp, announced, became_master

# How late a probe thread may start its next probe beyond its budget and interval before
# the window counts as not covered: thread scheduling on a busy 2-core machine.
COVERAGE_SLACK_S = 0.3


@dataclass(frozen=True)
class Figures:
    """What the client and the LBs showed after a fault at ``fault_at`` (monotonic s)."""

    kind: str
    fault_at: float
    until: float  # the end of the measured span
    outage_s: float  # fault -> first good probe after the last failure (or -> until)
    recovered: bool  # a good probe followed the last failure within the span
    probes: int
    failed: int
    refused: int  # no TCP connection: nobody answered for the VIP
    cut: int  # connected, then TLS or HTTP broke: an exchange in flight was lost
    bad_answers: int  # an answer came, but not a good one (HTTP 5xx from a master)
    excused: int = 0  # failures in flight in the handover gap, not counted above
    first_failure: float | None = None
    last_failure: float | None = None
    served_via: str | None = None  # the LB address that forwarded the last good probe
    moved_to: str | None = None
    moved_s: float | None = None  # fault -> first sample of ``moved_to`` alone holding
    # fault -> the last sample that did not show it: the move came between the two
    moved_after_s: float | None = None
    unknown: tuple[str, ...] = ()  # LB samples that could not be taken, after the fault
    coverage: tuple[str, ...] = ()  # holes in the observation itself
    errors: tuple[str, ...] = field(default=())  # failed probes' errors, first few

    def summary(self) -> str:
        s = (f"{self.kind}: outage {self.outage_s:.2f} s"
             f"{'' if self.recovered else ' (not recovered)'}, {self.failed}/{self.probes} "
             f"probes failed ({self.refused} refused, {self.cut} cut, {self.bad_answers} bad "
             "answers" + (f", {self.excused} in the handover gap" if self.excused else "")
             + ")")
        if self.moved_to:
            s += (f"; VIP on {self.moved_to} alone after {self.moved_s:.2f} s"
                  if self.moved_s is not None else f"; VIP never seen on {self.moved_to} alone")
        return s


def _coverage(tl: Timeline, kind: str, start: float, end: float) -> list[str]:
    """Holes in the probing between ``start`` and ``end``: a dead thread, a late probe."""
    holes = list(tl.errors)
    limit = tl.timeout + tl.interval + COVERAGE_SLACK_S
    starts = [r.t for r in tl.of(kind) if start - limit <= r.t <= end]
    if not starts:
        return [*holes, f"no {kind} probe at all between the fault and the end"]
    edges = [start, *starts, end]
    for a, b in zip(edges, edges[1:], strict=False):
        if b - a > limit:
            holes.append(f"no {kind} probe started for {b - a:.2f} s (from t={a - start:+.2f} "
                         f"s after the fault; a probe's budget is {tl.timeout:g} s every "
                         f"{tl.interval:g} s)")
            break
    return holes


def handover_gap(adverts: list[Advert], arps: list[Arp], *, src: str, mac: str, vip: str,
                 after: float) -> tuple[float, float] | None:
    """When a VIP changes hands by preemption, the window in which a client's new
    connection has nowhere to go, as the wire shows it: from the new MASTER's first advert
    (the old MASTER drops the VIP as it receives it) to the new MASTER's first gratuitous
    ARP for the VIP (the client's neighbour entry then follows). keepalived sends the
    advert first and adds the VIP and its ARP after (vrrp.c, vrrp_state_master_tx);
    measured 39-54 ms on TCG VMs (three runs). ``src``: the new
    MASTER's address, ``mac``: its lab MAC. None when either end was not seen."""
    start = became_master(adverts, src, after)
    if start is None:
        return None
    end = announced(arps, vip, start, mac)
    return None if end is None else (start, end)


def in_gap(r: Record, gap: tuple[float, float] | None) -> bool:
    """A refused or cut probe in flight within a handover gap: excused, wherever a
    preemption is judged (the failover test, a chaos scenario's rollback)."""
    return (gap is not None and not r.ok and r.stage in ("connect", "exchange")
            and r.t <= gap[1] and r.t + r.latency >= gap[0])


def outage_since(recs: list[Record], t0: float, end: float) -> tuple[float, bool]:
    """(outage, recovered) of probes in time order: from ``t0`` to the first good probe
    after the last failure; to ``end`` when none came (not recovered). No failure: 0."""
    bad = [r for r in recs if not r.ok]
    if not bad:
        return 0.0, True
    good_after = [r for r in recs if r.ok and r.t > bad[-1].t]
    return (good_after[0].t if good_after else end) - t0, bool(good_after)


def measure(tl: Timeline, fault_at: float, *, kind: str = "api", until: float | None = None,
            to: str | None = None, excuse: tuple[float, float] | None = None) -> Figures:
    """The figures of the span from ``fault_at`` to ``until`` (default: the end of the
    probing). ``to``: the LB the VIP should move to. ``excuse``: a handover gap (see
    handover_gap): a refused or cut probe in flight within it is counted as ``excused``,
    not as refused or cut; the outage still includes it."""
    end = until if until is not None else (tl.ended if tl.ended is not None else max(
        [r.t + r.latency for r in tl.of(kind)] or [fault_at]))
    recs: list[Record] = [r for r in tl.of(kind) if fault_at <= r.t < end]
    bad = [r for r in recs if not r.ok]
    outage, recovered = outage_since(recs, fault_at, end)
    good = [r for r in recs if r.ok]
    moved_s = moved_after_s = None
    if to is not None:
        window = tl.alone_window(to, fault_at)
        if window is not None and window[1] <= end:
            moved_after_s, moved_s = window[0] - fault_at, window[1] - fault_at
    unknown = tuple(f"{h.lb} at t={h.t - fault_at:+.2f} s: {h.why or 'could not be asked'}"
                    for h in tl.unknown_holdings(fault_at) if h.t <= end)
    errors = tuple(dict.fromkeys(r.error for r in bad))[:5]
    excused = [r for r in bad if in_gap(r, excuse)]
    counted = [r for r in bad if r not in excused]
    return Figures(
        kind=kind, fault_at=fault_at, until=end, outage_s=outage, recovered=recovered,
        probes=len(recs), failed=len(bad),
        refused=sum(r.stage == "connect" for r in counted),
        cut=sum(r.stage == "exchange" for r in counted),
        bad_answers=sum(r.stage == "answer" for r in bad), excused=len(excused),
        first_failure=bad[0].t if bad else None, last_failure=bad[-1].t if bad else None,
        served_via=good[-1].via if good else None, moved_to=to, moved_s=moved_s,
        moved_after_s=moved_after_s,
        unknown=unknown, coverage=tuple(_coverage(tl, kind, fault_at, end)), errors=errors)


def served_before_ready(tl: Timeline, lb: str, since: float, ready: float | None,
                        what: str) -> str | None:
    """Did the VIP reach ``lb`` (alone) before ``lb`` was ready (``ready``: when, None:
    never)? The reason to fail, or None when it did not (or the VIP never came)."""
    took = tl.held_alone_from(lb, since)
    if took is None or (ready is not None and ready <= took):
        return None
    if ready is None:
        return f"the VIP came back to {lb} {took - since:.2f} s after the fault, and never {what}"
    return f"the VIP came back to {lb} {ready - took:.2f} s before {what}"


@dataclass(frozen=True)
class Cadence:
    """How often the lab's VRRP MASTER actually advertised, against its ``advert_int``."""

    expected_s: float
    measured_s: float  # median interval between one sender's adverts

    @property
    def kept(self) -> bool:
        # Half again the configured interval: a guest whose timers run that late no longer
        # keeps the master-down interval the bounds are computed from.
        return self.measured_s <= 1.5 * self.expected_s


def cadence(adverts: list[Advert], advert_int: float) -> Cadence | None:
    """The lab's advert cadence from the wire: the median interval between one sender's
    consecutive adverts (a priority-0 advert and a silence of more than three intervals,
    a change of MASTER, break the sequence). None when too few adverts were seen."""
    gaps: list[float] = []
    last: dict[str, float] = {}
    for a in sorted(adverts, key=lambda a: a.t):
        if a.priority == 0:
            last.pop(a.src, None)
            continue
        if a.src in last and a.t - last[a.src] <= 3 * advert_int + 1.0:
            gaps.append(a.t - last[a.src])
        last[a.src] = a.t
    if len(gaps) < 2:
        return None
    gaps.sort()
    return Cadence(advert_int, gaps[len(gaps) // 2])


@dataclass(frozen=True)
class Verdict:
    status: str  # passed | failed | unknown | inconclusive
    reasons: tuple[str, ...]
    figures: Figures

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __str__(self) -> str:
        head = f"{self.status.upper()}: {self.figures.summary()}"
        return head + "".join(f"\n  - {r}" for r in self.reasons)


def judge(fig: Figures, *, outage: Bound | None = None, move: Bound | None = None,
          max_refused: int | None = None, max_cut: int | None = None,
          max_failed: int | None = None, cadence: Cadence | None = None) -> Verdict:
    """Hold the figures against the bounds the configuration promises.

    ``outage``: the longest client outage allowed (``Bound.with_margin``); ``move``: the
    longest VIP move (needs ``measure(to=...)``); ``max_refused`` / ``max_cut`` /
    ``max_failed``: how many failed probes of each kind are allowed at all. The client
    must have recovered by the end of the span whatever the bounds."""
    failed: list[str] = []  # promises broken whatever the timers
    late: list[str] = []  # timing bounds exceeded
    unknown: list[str] = []  # LBs that could not be asked
    if not fig.recovered:
        failed.append(f"the client saw no good {fig.kind} probe after the failures: "
                      f"{fig.failed} of {fig.probes} failed, the last "
                      f"{(fig.last_failure or fig.fault_at) - fig.fault_at:.2f} s after the "
                      f"fault ({'; '.join(fig.errors) or 'no error text'})")
    elif outage is not None and fig.outage_s > outage.with_margin:
        late.append(f"client outage {fig.outage_s:.2f} s exceeds the bound {outage}")
    if fig.moved_to is not None:
        if fig.moved_s is None:
            if fig.unknown:
                unknown.append(f"the VIP was never seen on {fig.moved_to} alone, and an LB "
                               f"could not be asked: {fig.unknown[0]}")
            else:
                # Watched for a span the config's bound sets: on a lab whose timers ran
                # slow the move may only have come later, so this is a timing verdict.
                late.append(f"the VIP was never seen on {fig.moved_to} alone")
        elif move is not None and fig.moved_s > move.with_margin:
            if fig.moved_after_s is not None and fig.moved_after_s <= move.with_margin:
                # The bound lies between the last sample without the move and the first
                # with it: the samples cannot say whether it was kept.
                unknown.append(
                    f"the VIP reached {fig.moved_to} alone between {fig.moved_after_s:.2f} "
                    f"and {fig.moved_s:.2f} s after the fault: its LBs were sampled too far "
                    f"apart to hold the move to the bound {move}")
            else:
                late.append(f"the VIP took {fig.moved_s:.2f} s to move to {fig.moved_to}, "
                            f"beyond the bound {move}")
    for count, allowed, what in ((fig.refused, max_refused, "refused new connections"),
                                 (fig.cut, max_cut, "cut exchanges"),
                                 (fig.failed, max_failed, "failed probes")):
        if allowed is not None and count > allowed:
            failed.append(f"{count} {what} (allowed: {allowed}): "
                          f"{'; '.join(fig.errors) or 'no error text'}")
    if fig.coverage:
        # The client's figures have a hole: nothing measured from them can be trusted.
        return Verdict("unknown", (*fig.coverage, *failed, *late, *unknown), fig)
    if cadence is not None and not cadence.kept and not failed:
        return Verdict("inconclusive", (
            f"the lab did not keep its own timers: VRRP adverts every "
            f"{cadence.measured_s:.2f} s where advert_int is {cadence.expected_s:g} s, so "
            "the bounds computed from the config do not apply", *late, *unknown), fig)
    if failed or late:
        return Verdict("failed", (*failed, *late, *unknown), fig)
    if unknown:
        return Verdict("unknown", tuple(unknown), fig)
    return Verdict("passed", (), fig)
