"""`halab soak`: the harness itself under hours of failovers.

Random failovers (chaos scenarios, seeded) one after the other until the time is up, each
played by the chaos runner (lab.chaos.runner.run_scenario: probes every 50 ms through the
VIP, the LBs' VIP samples, the fault, its undo, the lab steady again). The soak judges the
harness, not the lab:

- **records**: the journal (journal.json, rewritten whole after every record) is read back
  from disk at the end; it must hold every scenario played, numbered 1..N without a gap,
  every fault injected must have its undo recorded as done, and every scenario's probes
  must have kept recording (no dead probe thread, no silence longer than STALL_S);
- **memory and open files** of the harness process (VmRSS, /proc/self/fd): sampled every
  SAMPLE_S (start and max), and after each scenario once Python's cycle collector has run
  (journalled with the record). Flat means that from the end of the first scenario (the
  warm-up: imports, SSH connections, TLS contexts made once) to the end of the last, RSS grew
  by at most RSS_SLACK_KIB and open files by at most FD_SLACK. After the collector, because
  ~6 pipes per failover are held by garbage until it runs (paramiko's ProxyCommand `nc`
  pipes, closed only when their objects are collected): the raw count climbs between
  collections (the max shows it) and falls back; a leak survives the collector.

A scenario's own verdict (an outage over its bound on a loaded machine) is the chaos run's
business: it is in the journal and the summary, and makes the exit code 1, but the checks
above are what a soak is for.
"""

from __future__ import annotations

import gc
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.chaos import journal, runner
from lab.chaos.scenario import Scenario
from lab.errors import HalabError
from lab.lab import Lab

# Failovers of the load balancers, each undone: the soak's default mix.
DEFAULT_SCENARIOS = ("haproxy-kill", "keepalived-stop", "keepalived-kill", "lb-crash",
                     "lb-link-down")
SAMPLE_S = 2.0
FD_SLACK = 8  # a stream's SSH connection or a probe socket in flight at the sampling moment
RSS_SLACK_KIB = 20 * 1024  # the allocator keeps freed arenas; a leak per failover does not fit
STALL_S = 5.0  # no probe of a kind for this long: the probe loop stopped recording

Progress = Callable[[str], None]


@dataclass
class Sample:
    t: float  # seconds since the soak began
    rss_kib: int
    fds: int
    threads: int


def sample(t0: float) -> Sample:
    """This process now: resident memory, open file descriptors, threads."""
    rss = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return Sample(round(time.monotonic() - t0, 2), rss, len(os.listdir("/proc/self/fd")),
                  threading.active_count())


class Sampler:
    """Samples in a thread of its own, so that a scenario that hangs is sampled too."""

    def __init__(self, t0: float, every: float = SAMPLE_S) -> None:
        self.t0, self.every = t0, every
        self.samples: list[Sample] = [sample(t0)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="halab-soak-rss")

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(sample(self.t0))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every + 1)
        self.samples.append(sample(self.t0))


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Verdict:
    checks: list[Check] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # the numbers, for a person

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def record(run: runner.Run, seq: int, scenario: Scenario, lab: Lab, s: Sample) -> dict[str, Any]:
    """One scenario as the soak journals it: compact (no timeline: the journal is rewritten
    whole after every record, and a soak's would grow without bound)."""
    fault_labels = {st.describe(lab.topo) for st in scenario.method if st.fault}
    records = run.timeline.get("records", [])
    by_kind: dict[str, list[float]] = {}
    for r in records:
        by_kind.setdefault(r["kind"], []).append(r["t"])
    gaps = {k: round(max((b - a for a, b in zip(ts, ts[1:], strict=False)), default=0.0), 3)
            for k, ts in by_kind.items()}
    return {
        "seq": seq, "scenario": run.scenario, "status": run.status,
        "problems": run.problems, "skip_reason": run.skip_reason,
        "duration": run.duration, "outages": run.outages,
        "faults": [st.label for st in run.steps if st.phase == "method"
                   and st.label in fault_labels],
        "undone": [st.label.removeprefix("undo ") for st in run.steps
                   if st.label.startswith("undo ") and st.ok],
        "restored": run.restored,
        "probes": {k: len(v) for k, v in by_kind.items()}, "max_gap_s": gaps,
        "probe_errors": run.timeline.get("errors", []),
        "rss_kib": s.rss_kib, "fds": s.fds, "threads": s.threads,
    }


def verify(data: dict[str, Any], played: int, samples: list[Sample]) -> Verdict:
    """The soak's verdict from its journal as read back from disk, and the samples."""
    v = Verdict()
    runs = data.get("runs", [])
    seqs = [r.get("seq") for r in runs]
    v.checks.append(Check("records", seqs == list(range(1, played + 1)),
                          f"{len(runs)} in the journal, {played} played; seq "
                          + (f"1..{played} contiguous" if seqs == list(range(1, played + 1))
                             else f"{seqs}")))
    unfinished = [r.get("seq") for r in runs if r.get("status") == "running"]
    v.checks.append(Check("finished", not unfinished,
                          f"records never finished: {unfinished}" if unfinished
                          else "every record finished"))
    missing = []
    for r in runs:
        undone = list(r.get("undone", []))
        for f in r.get("faults", []):
            if f in undone:
                undone.remove(f)
            else:
                missing.append(f"#{r.get('seq')} {f}")
    n_faults = sum(len(r.get("faults", [])) for r in runs)
    v.checks.append(Check("undos", not missing, f"{n_faults} faults, " + (
        f"without their undo: {', '.join(missing)}" if missing else "each undone")))
    stalls = [f"#{r.get('seq')} {k} {g:.1f} s" for r in runs
              for k, g in r.get("max_gap_s", {}).items() if g > STALL_S]
    dead = [f"#{r.get('seq')}: {e}" for r in runs for e in r.get("probe_errors", [])]
    silent = [f"#{r.get('seq')}" for r in runs
              if r.get("status") != "skipped" and not r.get("probes")]
    n_probes = sum(sum(r.get("probes", {}).values()) for r in runs)
    worst = max((g for r in runs for g in r.get("max_gap_s", {}).values()), default=0.0)
    v.checks.append(Check("probes", not (stalls or dead or silent),
                          "; ".join(stalls + dead + [f"{s}: no probe records"
                                                     for s in silent])
                          or f"{n_probes} probe records, longest silence {worst:.2f} s"))
    v.checks += flat(runs, samples, v.lines)
    return v


def flat(runs: list[dict[str, Any]], samples: list[Sample], lines: list[str]) -> list[Check]:
    """RSS and open files after each scenario (collected), from the first to the last,
    within their slack; start and max from the samples taken every SAMPLE_S."""
    settled = [r for r in runs if "fds" in r and "rss_kib" in r]
    if not settled or not samples:
        return [Check("samples", False, "no sample of the harness was taken")]
    out = []
    for name, key, slack, unit in (("memory (RSS)", "rss_kib", RSS_SLACK_KIB, "KiB"),
                                   ("open files", "fds", FD_SLACK, "")):
        raw = [getattr(s, key) for s in samples]
        warm, end = settled[0][key], settled[-1][key]
        grew = end - warm
        fmt = (lambda x: f"{x / 1024:.1f} MiB") if unit else str  # noqa: E731
        said = (f"start {fmt(raw[0])}, after warm-up {fmt(warm)}, max {fmt(max(raw))}, "
                f"end {fmt(end)} ({'+' if grew >= 0 else ''}{fmt(grew)} since warm-up; "
                f"bound {fmt(slack)}; {len(samples)} samples)")
        lines.append(f"{name}: {said}")
        out.append(Check(name, grew <= slack, said))
    threads = [s.threads for s in samples]
    lines.append(f"threads: start {threads[0]}, max {max(threads)}, end {threads[-1]}")
    return out


def soak(lab: Lab, scenarios: list[Scenario], minutes: float, seed: int, report_dir: Path,
         note: Progress = lambda _: None) -> tuple[dict[str, Any], Verdict]:
    """Random failovers until ``minutes`` are up (the scenario running then finishes);
    returns the journal as read back from disk and the verdict."""
    if minutes <= 0:
        raise HalabError(f"--minutes must be more than 0, got {minutes:g}")
    rng = random.Random(seed)
    pool = sorted(scenarios, key=lambda s: s.name)
    path = report_dir / "journal.json"
    j = journal.Journal(path, {"kind": "soak", "lab": lab.topo.name, "seed": seed,
                               "minutes": minutes, "scenarios": [s.name for s in pool]})
    t0 = time.monotonic()
    deadline = t0 + minutes * 60
    played = 0
    note(f"soak: seed {seed}, {minutes:g} min, scenarios {', '.join(s.name for s in pool)}")
    sampler = Sampler(t0)
    try:
        with sampler:
            while time.monotonic() < deadline:
                sc = rng.choice(pool)
                played += 1
                idx = j.begin({"seq": played, "scenario": sc.name})
                run = runner.run_scenario(lab, sc, played, note)
                gc.collect()  # what garbage holds is not a leak (see above)
                j.finish(idx, record(run, played, sc, lab, sample(t0)))
                note(f"  -> {run.status.upper()}"
                     + (f": {run.problems[0]}" if run.problems else ""))
    finally:
        runs = j.data["runs"]
        j.close({s: sum(r.get("status") == s for r in runs)
                 for s in ("passed", "failed", "skipped", "inconclusive", "running")}
                | {"samples": [asdict(s) for s in sampler.samples]})
    data = journal.read(path)
    return data, verify(data, played, sampler.samples)
