"""`halab bench`: the failovers measured many times per profile, on a lab of the bench's own.

Per profile (lab.profiles) the lab file's lab is brought up under a name of its own
(``bench_name``: the user's lab, if up, is never touched), each scenario is run ``reps``
times through lab.failover (the failover tests' and `halab demo`'s own observing and
judging: lab.experiment + lab.measure), the lab made steady again between runs
(faults.restore + steady.wait), and the lab taken down at the end whatever happens.

A scenario's fault is set off after a random wait, uniform over one advert interval or
one check interval (whichever is longer): a run that starts right after the lab became
steady would otherwise meet keepalived's timers at nearly the same phase every time, and
the spread of the outages would be the harness's, not the protocol's.

Figures per scenario: the client's outage and the VIP's move (min, median, p95, max over
the runs that have one), failed new connections (lab.measure's refused + cut probes: a
connection refused or timed out before it was made, or made and then broken or timed out
mid-exchange; those excused in a preemption's handover gap are not counted, as in the
verdict), and how many runs failed (failed or unknown verdicts, and runs that raised) or
were inconclusive (the lab did not keep its own timers).
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab import experiment, failover, faults, measure, observe, profiles, steady, topology, vrrp
from lab.errors import HalabError, LabStateError, UsageError
from lab.lab import Lab
from lab.measure import Verdict
from lab.topology import Topology
from lab.wait import until
from lab.wire import master_starts

Note = Callable[[str], None]
# How long a split brain is held once both LBs hold the VIP, before the random wait: the
# split-brain chaos scenario's pause.
SPLIT_HOLD_S = 2.0
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")


# -- scenarios -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    # (lab, random wait in s) -> the verdict; where the wait goes is the scenario's to say:
    # before the fault, or before the step that would otherwise follow a timer.
    run: Callable[[Lab, float], Verdict]
    moves: bool = True  # the VIP moves (False: it stays, and there is no move time)


def _after(wait: float, fn: Callable[[], Verdict]) -> Verdict:
    time.sleep(wait)
    return fn()


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("haproxy-crash", "SIGKILL haproxy on the MASTER LB",
             lambda lab, w: _after(w, lambda: failover.haproxy_crash(lab))),
    Scenario("lb-crash", "the MASTER LB crashes (power cut)",
             lambda lab, w: _after(w, lambda: failover.master_lost(lab, "crash"))),
    Scenario("keepalived-stop", "SIGTERM keepalived on the MASTER LB",
             lambda lab, w: _after(w, lambda: failover.keepalived_stop(lab))),
    Scenario("master-crash", "a control-plane node crashes behind the VIP",
             lambda lab, w: _after(w, lambda: failover.master_crash(lab)), moves=False),
    Scenario("lb-return", "HAProxy returns on the MASTER LB, the VIP is preempted back",
             lambda lab, w: failover.preempt_back(lab, settle_s=w)),
    Scenario("split-brain-heal", "the LBs partitioned, then healed (outage after the heal)",
             lambda lab, w: failover.split_brain_heal(lab, hold_s=SPLIT_HOLD_S + w)),
]}


# -- options -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    profiles: tuple[str, ...]
    scenarios: tuple[str, ...]
    reps: int
    soak_min: float = 0.0


def _names(value: str | None, known: list[str], what: str, option: str) -> tuple[str, ...]:
    if value is None:
        return tuple(known)
    asked = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in asked if v not in known]
    if unknown:
        raise UsageError(f"unknown {what} {', '.join(repr(u) for u in unknown)} in {option}; "
                         f"the {what}s are: {', '.join(known)} (comma-separated, e.g. "
                         f"`{option} {','.join(known[:2])}`).")
    if not asked:
        raise UsageError(f"{option} names no {what}; give one or more of: {', '.join(known)}.")
    return tuple(dict.fromkeys(asked))


def plan(profiles_opt: str | None, scenarios_opt: str | None, reps: int,
         soak_min: float | None = None) -> Plan:
    """Check the options before anything is touched; a UsageError (exit 2) names the fix.

    ``--soak`` alone runs the soak only; with ``--scenarios`` it runs those too."""
    if reps < 1:
        raise UsageError(f"--reps must be at least 1 (got {reps}): each scenario is run that "
                         "many times per profile.")
    if soak_min is not None and not (soak_min > 0 and math.isfinite(soak_min)):
        raise UsageError(f"--soak takes a number of minutes above 0 (got {soak_min}).")
    profs = _names(profiles_opt, profiles.names(), "profile", "--profiles")
    if soak_min is not None and scenarios_opt is None:
        scens: tuple[str, ...] = ()
    else:
        scens = _names(scenarios_opt, list(SCENARIOS), "scenario", "--scenarios")
    return Plan(profs, scens, reps, soak_min or 0.0)


def check_plot_path(path: Path | None) -> None:
    if path is not None and path.suffix.lower() != ".svg":
        raise UsageError(f"--plot writes SVG: name a file ending in .svg, not {path.name!r}.")


def bench_name(name: str) -> str:
    """The bench's lab name from the lab file's: `halab` -> `halabb`, within the topology's
    12 characters, never the file's own name."""
    out = (name + "b")[:12]
    if out == name:
        out = name[:11] + ("c" if name[11:] == "b" else "b")
    if not NAME_RE.match(out):
        raise UsageError(f"cannot make a bench lab name from {name!r}")  # the model forbids it
    return out


def bench_topology(file: Path, profile: str) -> Topology:
    topo = topology.load(file, profile=profile)
    return topo.model_copy(update={"name": bench_name(topo.name)})


# -- statistics ----------------------------------------------------------------------------
def p95(values: list[float]) -> float:
    """The nearest-rank 95th percentile: the smallest value with at least 95 % of the
    values at or below it (the ceil(0.95 n)-th smallest). No interpolation: with fewer
    than 20 values it is the maximum, which is what a handful of runs can honestly say."""
    if not values:
        raise ValueError("p95 of no values")
    ordered = sorted(values)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


def spread(values: list[float]) -> dict[str, float | None]:
    """min, median (the mean of the middle two for an even count), p95, max; None for each
    when there is no value."""
    if not values:
        return {"min": None, "median": None, "p95": None, "max": None}
    return {"min": round(min(values), 4), "median": round(statistics.median(values), 4),
            "p95": round(p95(values), 4), "max": round(max(values), 4)}


@dataclass
class RunResult:
    """One run of a scenario: its verdict's status and figures, or why it has none."""

    status: str  # passed | failed | unknown | inconclusive | error
    outage_s: float | None = None
    move_s: float | None = None
    failed_new_connections: int = 0
    reasons: tuple[str, ...] = ()
    wait_s: float = 0.0

    @classmethod
    def of(cls, v: Verdict, wait_s: float = 0.0) -> RunResult:
        f = v.figures
        return cls(v.status, f.outage_s, f.moved_s, f.refused + f.cut, v.reasons, wait_s)


def summarise(runs: list[RunResult], moves: bool = True) -> dict[str, Any]:
    """One scenario's figures over its runs, shaped as the bench's JSON has them."""
    return {
        "outage_s": spread([r.outage_s for r in runs if r.outage_s is not None]),
        "move_s": spread([r.move_s for r in runs if moves and r.move_s is not None]),
        "failed_new_connections": sum(r.failed_new_connections for r in runs),
        "runs": len(runs),
        # Unknown and errors are failures here: an observation with a hole is never fine.
        "failed_runs": sum(r.status in ("failed", "unknown", "error") for r in runs),
        "inconclusive_runs": sum(r.status == "inconclusive" for r in runs),
    }


# -- the machine ---------------------------------------------------------------------------
def _commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], text=True,
                              capture_output=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain",
                                "--untracked-files=no"], text=True, capture_output=True,
                               timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _mem_total_mib() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def machine(provider: str) -> dict[str, Any]:
    """What the figures were measured on (the load is asked again at the end)."""
    return {"cores": os.cpu_count(), "memory_mib": _mem_total_mib(),
            "kernel": platform.release(), "python": platform.python_version(),
            "load": {"before": [round(x, 2) for x in os.getloadavg()], "after": None},
            "provider": provider, "halab_commit": _commit(),
            "started": datetime.now(UTC).isoformat(timespec="seconds")}


# -- busy loops ----------------------------------------------------------------------------
@contextlib.contextmanager
def saturate(n: int) -> Iterator[list[int]]:
    """``n`` busy loops (one per core), each ended by its own PID when the block ends."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"],
                                          stdin=subprocess.DEVNULL))
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


# -- one profile ---------------------------------------------------------------------------
def settle(lab: Lab) -> None:
    faults.restore(lab)
    steady.wait(lab)


def bring_up(lab: Lab, note: Note) -> dict[str, float]:
    """Nodes, then provisioning, then the first good probe through the VIP; then steady.
    ``up_s``: from the start to the VIP serving; ``provision_s``: provisioning alone."""
    lab.provider.check()
    t0 = time.monotonic()
    lab.provider.up(note)
    t1 = time.monotonic()
    lab.provision(note)
    t2 = time.monotonic()
    until(f"the VIP {lab.vip} serving the client", lambda: lab.prober.probe("api").ok,
          timeout=steady.settle_timeout(lab), interval=0.05)
    t3 = time.monotonic()
    steady.wait(lab)
    return {"up_s": round(t3 - t0, 3), "provision_s": round(t2 - t1, 3)}


def wait_span(topo: Topology) -> float:
    """The random wait's range: one advert interval or one check interval, the longer (a
    lab told of HAProxy's exit by the watcher has no check interval to be in step with)."""
    check = topo.keepalived.check
    return float(max(topo.keepalived.advert_int, check.interval if check else 0))


def run_scenario(lab: Lab, sc: Scenario, reps: int, rng: random.Random,
                 note: Note) -> list[RunResult]:
    runs: list[RunResult] = []
    for i in range(reps):
        try:
            settle(lab)
        except HalabError as e:
            runs.append(RunResult("error", reasons=(f"the lab was not steady before the "
                                                    f"run: {e}",)))
            note(f"  {sc.name} {i + 1}/{reps}: ERROR: {e}")
            continue
        wait = rng.uniform(0, wait_span(lab.topo))
        try:
            r = RunResult.of(sc.run(lab, wait), wait)
        except HalabError as e:
            r = RunResult("error", reasons=(str(e),), wait_s=wait)
        runs.append(r)
        figs = ("" if r.outage_s is None else f"outage {r.outage_s:.2f} s"
                + ("" if r.move_s is None or not sc.moves else f", move {r.move_s:.2f} s")
                + f", {r.failed_new_connections} failed new connections")
        note(f"  {sc.name} {i + 1}/{reps} (after {wait:.2f} s): {r.status} {figs}"
             + "".join(f"\n    - {x}" for x in r.reasons))
    return runs


def _counters(lab: Lab) -> tuple[dict[str, tuple[int, int]] | None, str]:
    try:
        return {lb.name: (s.become_master, s.release_master) for lb in lab.load_balancers
                for s in [vrrp.ask(lab, lb.name)]}, ""
    except HalabError as e:
        return None, str(e)


def vip_changes(tl: Any, master: str, since: float) -> tuple[int, int]:
    """(samples showing the VIP anywhere but on ``master`` alone, samples that could not
    be taken) after ``since``."""
    wrong = unknown = 0
    for h in tl.holdings:
        if h.t < since:
            continue
        if h.holds is None:
            unknown += 1
        elif h.holds != (h.lb == master):
            wrong += 1
    return wrong, unknown


def soak(lab: Lab, minutes: float, note: Note) -> dict[str, Any]:
    """No fault: probes, the LBs' VIP samples, the wire and keepalived's own counters,
    ``minutes`` idle and then ``minutes`` with every core busy. Any VRRP transition is
    spurious; a source that could not be read makes the verdict unknown, never fine."""
    settle(lab)
    span = minutes * 60
    master = lab.topo.master_lb.name
    errors: list[str] = []
    before, why = _counters(lab)
    if why:
        errors.append(f"keepalived's counters before: {why}")
    cores = os.cpu_count() or 1
    with contextlib.ExitStack() as stack:
        capture, wire_error = experiment.listen(lab, stack)
        tl = stack.enter_context(lab.prober.continuous(watch=observe.VipWatch(lab)))
        t0 = tl.mark("soak: idle")
        note(f"  soak: {minutes:g} min idle")
        time.sleep(span)
        tl.mark(f"soak: {cores} busy loops")
        note(f"  soak: {minutes:g} min with {cores} busy loops")
        with saturate(cores):
            time.sleep(span)
        t2 = tl.mark("soak: end")
    after, why = _counters(lab)
    if why:
        errors.append(f"keepalived's counters after: {why}")
    keepalived_n = None
    if before is not None and after is not None:
        deltas = [a - b for lb in before for a, b in zip(after[lb], before[lb], strict=True)]
        if any(d < 0 for d in deltas):
            errors.append("keepalived's counters went back (it restarted during the soak)")
        else:
            keepalived_n = sum(deltas)
    wire_n = None
    if capture is not None and capture.error is not None:
        wire_error = f"the VRRP capture died: {capture.error!r}"
    if wire_error:
        errors.append(wire_error)
    else:
        assert capture is not None
        wire_n = max(0, len(master_starts(list(capture.adverts))) - 1)
    wrong, unknown = vip_changes(tl, master, t0)
    if unknown:
        errors.append(f"{unknown} VIP samples could not be taken")
    fig = measure.measure(tl, t0, until=t2)
    errors.extend(fig.coverage)
    known = [n for n in (keepalived_n, wire_n) if n is not None]
    spurious = max(known) if known else None
    if spurious or wrong or fig.failed:
        verdict = "failed"
    elif errors:
        verdict = "unknown"
    else:
        verdict = "passed"
    return {"idle_s": round(span, 1), "busy_s": round(span, 1), "busy_loops": cores,
            "spurious_transitions": spurious,
            "transitions": {"keepalived": keepalived_n, "wire": wire_n},
            "vip_samples_off_master": wrong, "probes": fig.probes,
            "failed_probes": fig.failed, "verdict": verdict, "errors": errors}


def profile_bench(lab: Lab, p: Plan, rng: random.Random, note: Note) -> dict[str, Any]:
    """Everything of one profile, on a lab that is not up yet; down again at the end."""
    out: dict[str, Any] = {}
    try:
        note(f"{lab.topo.profile}: bringing lab '{lab.topo.name}' up")
        out["_lab"] = bring_up(lab, lambda m: None)
        note(f"{lab.topo.profile}: up in {out['_lab']['up_s']:.1f} s (provisioning "
             f"{out['_lab']['provision_s']:.1f} s)")
        for name in p.scenarios:
            sc = SCENARIOS[name]
            out[name] = summarise(run_scenario(lab, sc, p.reps, rng, note), sc.moves)
        if p.soak_min:
            out["_soak"] = soak(lab, p.soak_min, note)
    finally:
        with contextlib.suppress(Exception):
            lab.prober.close()
        lab.down()
        note(f"{lab.topo.profile}: lab '{lab.topo.name}' down")
    return out


# -- the bench -----------------------------------------------------------------------------
@dataclass
class Bench:
    file: Path
    plan: Plan
    provider: str | None = None
    seed: int = field(default_factory=lambda: random.SystemRandom().randrange(1, 10**6))

    def open(self, profile: str) -> Lab:
        return Lab(bench_topology(self.file, profile), self.file.resolve().parent,
                   self.provider)

    def refuse_if_up(self, lab: Lab) -> None:
        """The bench's lab must not be up already: another bench runs, or one was killed."""
        if lab.is_up():
            raise LabStateError(
                f"the bench's lab '{lab.topo.name}' is already up: another `halab bench` "
                f"on {self.file} runs, or one was killed before it could take its lab down. "
                f"`halab bench --clean -f {self.file}` removes it (the lab the file names is "
                "never touched).")

    def run(self, note: Note) -> dict[str, Any]:
        lab = self.open(self.plan.profiles[0])
        self.refuse_if_up(lab)
        rng = random.Random(self.seed)
        doc: dict[str, Any] = {"machine": {**machine(lab.provider.name),
                                           "reps": self.plan.reps, "seed": self.seed},
                               "profiles": {}}
        for i, prof in enumerate(self.plan.profiles):
            doc["profiles"][prof] = profile_bench(lab if i == 0 else self.open(prof),
                                                  self.plan, rng, note)
        doc["machine"]["load"]["after"] = [round(x, 2) for x in os.getloadavg()]
        return doc

    def clean(self) -> list[str]:
        from lab.lab import clean_prefix

        lab = self.open(self.plan.profiles[0])
        removed = clean_prefix(lab.topo.prefix)
        if lab.state.dir.exists():
            removed.append(str(lab.state.dir))
            lab.state.remove()
        return removed


# -- output --------------------------------------------------------------------------------
def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def rows(doc: dict[str, Any]) -> list[list[str]]:
    """The terminal table: a header, then one row per profile x scenario."""
    out = [["profile", "scenario", "outage median s", "outage p95 s", "move median s",
            "failed new conns", "runs", "failed", "inconclusive"]]
    for prof, res in doc["profiles"].items():
        lab = res.get("_lab", {})
        out.append([prof, f"(lab up {_s(lab.get('up_s'))} s, provisioning "
                          f"{_s(lab.get('provision_s'))} s)", "", "", "", "", "", "", ""])
        for name, s in res.items():
            if name.startswith("_"):
                continue
            out.append([prof, name, _s(s["outage_s"]["median"]), _s(s["outage_s"]["p95"]),
                        _s(s["move_s"]["median"]), str(s["failed_new_connections"]),
                        str(s["runs"]), str(s["failed_runs"]), str(s["inconclusive_runs"])])
        if "_soak" in res:
            k = res["_soak"]
            out.append([prof, f"(soak: {k['verdict']}, {k['spurious_transitions']} spurious "
                              "VRRP transitions)", "", "", "", str(k["failed_probes"]), "",
                        "", ""])
    return out
