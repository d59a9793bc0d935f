"""Plays scenarios against a running lab: hypothesis, method under a continuous probe,
rollbacks, hypothesis again; and a seeded random sequence of them (`halab chaos`)."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab import experiment, faults, measure, observe, steady
from lab.chaos import bounds, journal, junit, report
from lab.chaos.scenario import PROBE_KINDS, Observation, Scenario, Step, resolve
from lab.errors import HalabError
from lab.lab import Lab
from lab.probes import Timeline, compute_outages
from lab.topology import Topology
from lab.wait import until
from lab.wire import VrrpCapture
from provision import names

# Probes before the first fault and after the lab is steady again: what "normal" looks like.
LEAD_IN_S = 1.0
TAIL_S = 1.0

Progress = Callable[[str], None]


@dataclass
class Check:
    label: str
    ok: bool
    detail: str = ""


@dataclass
class StepResult:
    label: str
    phase: str  # method | rollback
    ok: bool
    t: float  # start, relative to the run's t0
    took: float
    error: str = ""
    skipped: bool = False


@dataclass
class FaultWindow:
    label: str
    start: float
    end: float | None = None


@dataclass
class Run:
    index: int
    scenario: str
    title: str
    status: str = "running"  # passed | failed | skipped | inconclusive | error
    problems: list[str] = field(default_factory=list)
    skip_reason: str = ""
    # Why a timing verdict says nothing: the lab did not keep its own timers (the advert
    # cadence on the wire, lab.measure.cadence), or the wire could not be heard.
    inconclusive: list[str] = field(default_factory=list)
    cadence_s: float | None = None  # the measured interval between one MASTER's adverts
    wire_error: str = ""
    before: list[Check] = field(default_factory=list)
    after: list[Check] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    windows: list[FaultWindow] = field(default_factory=list)
    outages: dict[str, float] = field(default_factory=dict)
    expected: list[dict[str, Any]] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    t_rollback: float | None = None
    duration: float = 0.0
    timeline: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- observations --------------------------------------------------------------------------
def _seen(lab: Lab, obs: Observation) -> tuple[bool, str]:
    """Is the observation true now? And what was seen, for the record."""
    seen, ok = [], True
    holders = observe.vip_holders(lab)
    if obs.vip is not None:
        want = sorted(resolve(lab.topo, obs.vip))
        ok &= sorted(holders) == want
        seen.append(f"VIP on {' + '.join(holders) or 'no LB'}")
    if obs.arp_follows_vip:
        mac = observe.neighbour_mac(lab, lab.vip)
        if len(holders) != 1:
            ok = False
            seen.append(f"client ARP {mac}, but {len(holders)} holders")
        else:
            want_mac = observe.lab_mac(lab, holders[0])
            ok &= mac == want_mac
            seen.append(f"client ARP {mac} ({holders[0]}'s MAC is {want_mac})")
    for proxy, nodes, label in (
            (names.API_PROXY, obs.backends_down, "API"),
            (names.INGRESS_PROXY, obs.ingress_down, "ingress")):
        if nodes is None:
            continue
        servers = [names.server_name(proxy, s) for s in resolve(lab.topo, nodes)]
        for lb in lab.load_balancers:
            states = observe.server_states(lab, lb.name, proxy)
            ok &= all(states.get(s, "").startswith("DOWN") for s in servers)
            seen.append(f"{lb.name}: " + ", ".join(f"{label} {s} {states.get(s, '?')}"
                                                    for s in servers))
    return bool(ok), "; ".join(seen)


def check_hypothesis(lab: Lab, scenario: Scenario) -> list[Check]:
    out = []
    for p in scenario.hypothesis.probes:
        try:
            if p.name == "lab-steady":
                probs = steady.problems(lab)
                out.append(Check("lab steady", (not probs) == bool(p.tolerance),
                                 "; ".join(probs) or "steady"))
            elif p.name == "vip-holders":
                want = resolve(lab.topo, list(p.tolerance) if isinstance(p.tolerance, list)
                               else [])
                ok, seen = _seen(lab, Observation(vip=want))
                out.append(Check(f"VIP on {' + '.join(want)}", ok, seen))
            elif p.name == "probe":
                # Three in a row: one probe is a coin toss on a busy 2-core machine.
                recs = [lab.prober.probe(p.kind, timeout=2) for _ in range(3)]
                bad = [r.error for r in recs if not r.ok]
                out.append(Check(f"{p.kind} probe through the VIP",
                                 (not bad) == bool(p.tolerance),
                                 "; ".join(bad) or f"3/3 ok via {recs[-1].via}"))
            elif p.name == "arp-follows-vip":
                ok, seen = _seen(lab, Observation(arp_follows_vip=True))
                out.append(Check("client ARP entry = VIP holder", ok == bool(p.tolerance),
                                 seen))
        except HalabError as e:
            out.append(Check(p.name, False, str(e)))
    return out


# -- one scenario ----------------------------------------------------------------------------
class _Player:
    def __init__(self, lab: Lab, scenario: Scenario, run: Run, tl: Timeline, t0: float,
                 note: Progress) -> None:
        self.lab, self.sc, self.run, self.tl, self.t0, self.note = (
            lab, scenario, run, tl, t0, note)

    def rel(self, t: float) -> float:
        return round(t - self.t0, 4)

    def step(self, step: Step, phase: str) -> StepResult:
        label = step.describe(self.lab.topo)
        t = time.monotonic()
        self.tl.mark(label)
        self.note(f"  {phase}: {label}")
        res = StepResult(label, phase, True, self.rel(t), 0.0)
        try:
            self._do(step, resolve(self.lab.topo, step.nodes), t, label)
        except faults.FaultUnavailable as e:
            res.ok, res.skipped, res.error = False, True, str(e)
        except HalabError as e:
            res.ok, res.error = False, str(e)
        res.took = round(time.monotonic() - t, 4)
        if not res.ok:
            self.note(f"    {'skipped' if res.skipped else 'FAILED'}: {res.error}")
        self.run.steps.append(res)
        return res

    def _do(self, step: Step, nodes: list[str], t: float, label: str) -> None:
        lab = self.lab
        if step.fault:
            self.run.windows.append(FaultWindow(label, self.rel(t)))
            faults.inject(lab, step.fault, nodes, dict(step.params))
        elif step.undo:
            try:
                faults.undo(lab, step.undo, nodes, dict(step.params))
            finally:
                key = f"{step.undo} {' '.join(nodes)}".strip()
                for w in self.run.windows:
                    if w.end is None and w.label.startswith(key):
                        w.end = self.rel(time.monotonic())
        elif step.pause is not None:
            time.sleep(step.pause)
        elif step.wait is not None:
            assert step.wait.within is not None
            b = bounds.bound(step.wait.within, lab.topo)
            last: list[str] = []

            def seen() -> bool:
                ok, what = _seen(lab, step.wait)  # type: ignore[arg-type]
                last[:] = [what]
                return ok

            try:
                until(label, seen, timeout=bounds.allowed(b, step.wait.within) or 0.1,
                      interval=0.05)
            except HalabError as e:
                raise HalabError(f"{e}; last seen: {last[0] if last else 'nothing'} "
                                 f"(bound {b})") from None
        elif step.check is not None:
            ok, what = _seen(lab, step.check)
            if not ok:
                raise HalabError(f"{label}: saw {what}")


def run_scenario(lab: Lab, scenario: Scenario, index: int = 0,
                 note: Progress = lambda _: None, interval: float = 0.05) -> Run:
    run = Run(index, scenario.name, scenario.title)
    started = time.monotonic()
    note(f"[{index}] {scenario.name}: {scenario.title}")
    try:
        steady.wait(lab)
    except HalabError:
        pass  # the hypothesis below says what is wrong
    run.before = check_hypothesis(lab, scenario)
    if not all(c.ok for c in run.before):
        run.status = "failed"
        run.problems = [f"steady state before: {c.label}: {c.detail}"
                        for c in run.before if not c.ok]
        _recover(lab, run, note)
        run.duration = round(time.monotonic() - started, 3)
        return run
    try:
        with contextlib.ExitStack() as stack:
            capture, run.wire_error = experiment.listen(lab, stack)
            tl = stack.enter_context(lab.prober.continuous(interval, kinds=PROBE_KINDS,
                                                           watch=observe.VipWatch(lab)))
            t0 = time.monotonic()
            time.sleep(LEAD_IN_S)
            player = _Player(lab, scenario, run, tl, t0, note)
            t_fault: float | None = None
            for step in scenario.method:
                if step.fault and t_fault is None:
                    t_fault = time.monotonic()
                r = player.step(step, "method")
                if not r.ok:
                    break
            t_rb = time.monotonic()
            run.t_rollback = player.rel(t_rb)
            tl.mark("rollbacks")
            for step in scenario.rollback_steps():
                player.step(step, "rollback")
            for w in run.windows:
                w.end = w.end if w.end is not None else player.rel(time.monotonic())
            try:
                steady.wait(lab)
            except HalabError as e:
                run.problems.append(f"the rollbacks did not bring the lab back: {e}")
            time.sleep(TAIL_S)
    except KeyboardInterrupt:
        # Ctrl-C: the run ends, but not with the lab broken (HAProxy dead, a node frozen,
        # a link cut): what the scenario did is undone before the interrupt goes on. A
        # second Ctrl-C stops the undoing too.
        note("  interrupted: undoing the scenario's faults")
        with contextlib.suppress(HalabError):
            done = faults.restore(lab)
            note(f"  restored: {', '.join(done) or 'nothing to undo'}")
        raise
    t_end = time.monotonic()
    run.timeline = tl.to_dict(t0)
    skipped = [s for s in run.steps if s.skipped]
    failed = [s for s in run.steps if not s.ok and not s.skipped]
    run.problems += [f"{s.phase} step `{s.label}`: {s.error}" for s in failed]
    if skipped:
        # A step this lab cannot express: the method's outage says nothing. The run is
        # skipped only when nothing else went wrong: a failed rollback, restore or steady
        # state after a step that could not run is a failure, not a skip.
        run.skip_reason = skipped[0].error
        _recover(lab, run, note)
        run.status = outcome(run.steps, run.problems)
        run.duration = round(time.monotonic() - started, 3)
        return run
    kept = measure.cadence(capture.adverts, lab.topo.keepalived.advert_int) \
        if capture is not None else None
    run.cadence_s = round(kept.measured_s, 3) if kept is not None else None
    judge_outages(run, scenario, lab.topo, tl, t_fault, t_rb, t_end, player.rel, kept,
                  _handover_gap(lab, capture, t_rb),
                  None if t_fault is None else _handover_gap(lab, capture, t_fault))
    run.after = check_hypothesis(lab, scenario)
    run.problems += [f"steady state after: {c.label}: {c.detail}"
                     for c in run.after if not c.ok]
    run.status = outcome(run.steps, run.problems, run.inconclusive)
    if run.problems:
        _recover(lab, run, note)
    run.duration = round(time.monotonic() - started, 3)
    return run


def outcome(steps: list[StepResult], problems: list[str],
            inconclusive: list[str] | None = None) -> str:
    """A run's status: failed when any step failed or anything else went wrong (rollback,
    restore, steady state, outage), skipped when a step could not be expressed on this lab
    and nothing else went wrong, inconclusive when only timing bounds were in question on a
    lab that did not keep its own timers, passed otherwise."""
    if problems or any(not s.ok and not s.skipped for s in steps):
        return "failed"
    if any(s.skipped for s in steps):
        return "skipped"
    return "inconclusive" if inconclusive else "passed"


def _handover_gap(lab: Lab, capture: VrrpCapture | None,
                  since: float) -> tuple[float, float] | None:
    """The MASTER LB's preemption in the rollbacks, as the wire shows it (measure's handover
    gap), or None: no wire, no preemption, or its MAC could not be read."""
    if capture is None:
        return None
    m = lab.topo.master_lb
    try:
        mac = observe.lab_mac(lab, m.name)
    except HalabError:
        return None
    return measure.handover_gap(capture.adverts, capture.arps, src=str(m.address), mac=mac,
                                vip=lab.vip, after=since)


def judge_outages(run: Run, scenario: Scenario, topo: Topology, tl: Timeline,
                  t_fault: float | None, t_rb: float, t_end: float,
                  rel: Callable[[float], float], cadence: measure.Cadence | None = None,
                  gap: tuple[float, float] | None = None,
                  method_gap: tuple[float, float] | None = None) -> None:
    """The outage the client saw, by kind, held against the scenario's expectations
    through lab.measure: during the method, from the first fault to the first good probe
    after the last failure (or the failure windows added up, for a method whose outage
    comes late); during the rollbacks, the windows added up. Whatever the bound, the
    client must have been served again before the rollbacks began (else the method's
    outage is still going on when the rollbacks cut it short) and after them. On a lab that
    did not keep its own timers (``cadence``), a bound exceeded is inconclusive, not a
    failure; a client never served again fails whatever the timers. ``gap``: the
    rollbacks' preemption's handover gap, whose refused or cut probes are excused, as the
    failover test's preemption excuses them; ``method_gap``: likewise for a preemption within
    the method (HAProxy restarted on the MASTER: the VIP goes and comes back)."""
    if t_fault is None:
        return
    method = {kind: measure.measure(tl, t_fault, kind=kind, until=t_rb) for kind in PROBE_KINDS}
    back = {kind: measure.measure(tl, t_rb, kind=kind, until=t_end, excuse=gap)
            for kind in PROBE_KINDS}
    for kind in PROBE_KINDS:
        # A preemption within the method (HAProxy restarted: the VIP goes to the backup and
        # comes back) has its handover gap excused as the rollback's is: a probe in flight
        # as the VIP changes hands is not the fault's outage.
        during = [r for r in tl.of(kind)
                  if t_fault <= r.t < t_rb and not measure.in_gap(r, method_gap)]
        run.outages[kind] = round(measure.outage_since(during, t_fault, t_rb)[0], 3)
        run.outages[f"{kind} (windows)"] = round(
            sum(o.seconds for o in compute_outages(during)), 3)
        after = [r for r in tl.of(kind) if t_rb <= r.t < t_end and not measure.in_gap(r, gap)]
        run.outages[f"{kind} (rollback)"] = round(
            sum(o.seconds for o in compute_outages(after)), 3)
    for phase, expectations, figs, t_from in (
            ("", scenario.expect.outage, method, t_fault),
            (" (rollback)", scenario.expect.rollback_outage, back, t_rb)):
        for e in expectations:
            b = bounds.bound(e.bound, topo)
            limit = bounds.allowed(b, e.bound)
            key = e.kind if phase or e.measure == "since-fault" else f"{e.kind} (windows)"
            measured = run.outages.get(f"{key}{phase}", 0.0)
            fig = figs[e.kind]
            # Recovery, coverage and the lab's timers; the bound is below (a windows sum
            # is not the figures' outage).
            verdict = measure.judge(fig, cadence=cadence)
            late = measured > limit
            ok = not late and verdict.passed
            run.expected.append({"kind": e.kind, "phase": phase.strip(" ()") or "method",
                                 "bound": e.bound, "seconds": round(b.seconds, 3),
                                 "allowed": round(limit, 3), "why": b.why,
                                 "measured": measured, "ok": ok,
                                 "verdict": verdict.status, "reasons": list(verdict.reasons),
                                 "from": rel(t_from)})
            slow = (f"{e.kind} outage{phase} {measured:.2f} s exceeds the bound {limit:.2f} s "
                    f"({e.bound}: {b})")
            if verdict.status == "inconclusive":
                run.inconclusive += [f"{e.kind}{phase}: {r}" for r in verdict.reasons[:1]]
                if late:
                    run.inconclusive.append(slow)
                continue
            if not verdict.passed:
                run.problems.append(f"{e.kind}{phase}: {verdict.status}: "
                                    + "; ".join(verdict.reasons))
            if late:
                run.problems.append(slow)


def _recover(lab: Lab, run: Run, note: Progress) -> None:
    """Whatever the scenario left broken, for the next one's sake (recorded, not hidden)."""
    try:
        run.restored = faults.restore(lab)
        if run.restored:
            note(f"  restored: {', '.join(run.restored)}")
        steady.wait(lab)
    except HalabError as e:
        run.problems.append(f"could not restore the lab afterwards: {e}")


# -- a chaos run -----------------------------------------------------------------------------
def plan(scenarios: list[Scenario], iterations: int, seed: int) -> list[Scenario]:
    """The sequence a seed stands for: the same seed and scenarios, the same sequence."""
    rng = random.Random(seed)
    pool = sorted(scenarios, key=lambda s: s.name)
    return [rng.choice(pool) for _ in range(iterations)]


def chaos(lab: Lab, scenarios: list[Scenario], iterations: int, seed: int, report_dir: Path,
          note: Progress = lambda _: None) -> dict[str, Any]:
    """Run a seeded random sequence; write journal.json as it goes, then junit.xml and
    report.html. Returns the journal's data."""
    if iterations < 1:
        raise HalabError(f"--iterations must be at least 1, got {iterations}")
    sequence = plan(scenarios, iterations, seed)
    j = journal.Journal(report_dir / "journal.json", {
        "lab": lab.topo.name, "provider": lab.provider.name, "seed": seed,
        "iterations": iterations, "scenarios": sorted(s.name for s in scenarios),
        "lb_addresses": {lb.address: lb.name for lb in lab.load_balancers},
        "plan": [s.name for s in sequence]})
    note(f"chaos: seed {seed}, {iterations} iteration(s): {', '.join(s.name for s in sequence)}")
    try:
        for i, sc in enumerate(sequence, 1):
            idx = j.begin({"index": i, "scenario": sc.name, "title": sc.title})
            run = run_scenario(lab, sc, i, note)
            j.finish(idx, run.to_dict())
            verdict = run.status.upper()
            note(f"  -> {verdict}" + (f": {run.problems[0]}" if run.problems else "")
                 + (f" ({run.skip_reason.split('.')[0]})" if run.skip_reason else "")
                 + (f": {run.inconclusive[0]}" if run.inconclusive and not run.problems
                    else ""))
    finally:
        runs = j.data["runs"]
        summary = {s: sum(r.get("status") == s for r in runs)
                   for s in ("passed", "failed", "skipped", "inconclusive", "running")}
        j.close(summary)
        junit.write(report_dir / "junit.xml", j.data)
        report.write(report_dir / "report.html", j.data)
    return j.data


def failed(data: dict[str, Any]) -> bool:
    return any(r.get("status") not in ("passed", "skipped", "inconclusive")
               for r in data.get("runs", []))
