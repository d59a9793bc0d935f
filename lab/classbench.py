"""What a classroom costs and whether it holds: the measurements behind `halab class bench`.

Memory is PSS (each shared page split between the processes that map it) summed over
every process of a lab's namespaces, from /proc/PID/smaps_rollup; the machine's
MemAvailable before and after says what the kernel's side (namespaces, bridges, sockets)
adds. CPU at idle is what the labs' own processes (and the children they reaped, e.g.
keepalived's `killall -0` checks) used over the window. A VRRP transition is a line
keepalived logs when it enters a state; an idle class must log none.
"""

from __future__ import annotations

import os
import re
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.lab import Lab
from lab.system import mem_available_kb

STATE_LINE = re.compile(r"Entering (MASTER|BACKUP|FAULT) STATE")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the labs' processes --------------------------------------------------------------------
def processes_by_lab(names: list[str]) -> dict[str, list[int]]:
    """Every process in the network namespaces of each lab, in one pass over /proc (a
    class has thousands of processes; `ip netns pids` per namespace would scan it for
    each of its namespaces)."""
    owner: dict[int, str] = {}
    for entry in os.scandir("/run/netns"):
        for name in names:
            if entry.name.startswith(f"halab-{name}-"):
                try:
                    owner[os.stat(entry.path).st_ino] = name
                except OSError:
                    pass
                break
    found: dict[str, list[int]] = defaultdict(list)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ino = os.stat(f"/proc/{entry.name}/ns/net").st_ino
        except OSError:
            continue
        if ino in owner:
            found[owner[ino]].append(int(entry.name))
    return dict(found)


def pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0  # gone since it was listed


def cpu_ticks(pid: int) -> int:
    """utime + stime + the reaped children's (cutime + cstime)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return sum(int(fields[i]) for i in (11, 12, 13, 14))


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, every worker included."""
    v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


# -- VRRP transitions ----------------------------------------------------------------------
def vrrp_marks(lab: Lab) -> dict[str, object]:
    """Where each LB's logs stand now (the provider's own log mark)."""
    return {lb.name: lb.services.log_mark() for lb in lab.load_balancers}


def vrrp_transitions(lab: Lab, marks: dict[str, object]) -> dict[str, list[str]]:
    """The state changes each LB's keepalived logged since ``marks``."""
    out = {}
    for lb in lab.load_balancers:
        logs = lb.services.logs_since(marks[lb.name], lines=100_000)
        out[lb.name] = [ln for text in logs.values() for ln in text.splitlines()
                        if STATE_LINE.search(ln)]
    return out


# -- the bench -----------------------------------------------------------------------------
@dataclass
class BenchResult:
    labs_asked: int
    labs_up: int = 0
    parallel: int = 0
    up_seconds: float = 0.0
    failed: dict[str, str] = field(default_factory=dict)
    processes_per_lab: float = 0.0
    pss_mb_per_lab: float = 0.0
    pss_mb_total: float = 0.0
    mem_available_drop_mb_per_lab: float = 0.0
    idle_seconds: float = 0.0
    idle_cpu_pct_of_one_core_per_lab: float = 0.0
    idle_cpu_pct_of_one_core_total: float = 0.0
    machine_busy_pct: float = 0.0  # the whole machine over the window, other work included
    vip_not_on_master: dict[str, Any] = field(default_factory=dict)
    not_serving: dict[str, str] = field(default_factory=dict)
    transitions: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    failover_learner: str = ""
    failover_verdict: str = ""
    failover_passed: bool | None = None
    failover_outage_s: float | None = None
    steady_after: int = 0
    not_steady_after: dict[str, Any] = field(default_factory=dict)
    arp_entries: int = 0
    down_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bench(room: Any, n: int, parallel: int, idle_s: float, keep: bool,
          note: Callable[[str], None]) -> BenchResult:
    """Bring a class of ``n`` up, measure it idle for ``idle_s``, fail one learner over,
    look at every learner again, take the class down (unless ``keep``)."""
    from lab import classroom, failover, faults, observe, steady

    r = BenchResult(labs_asked=n, parallel=parallel)
    mem0 = mem_available_kb()
    t0 = time.monotonic()
    outcomes = room.up(n, parallel, done=lambda o: note(
        f"{o.name} {'up' if o.ok else 'FAILED: ' + str(o.error)} in {o.seconds:.1f} s"),
        notice=note)
    r.up_seconds = round(time.monotonic() - t0, 1)
    r.failed = {o.name: o.error or "" for o in outcomes if not o.ok}
    names = [o.name for o in outcomes if o.ok]
    r.labs_up = len(names)
    note(f"{r.labs_up} of {n} up in {r.up_seconds} s; measuring")
    try:
        if not names:
            return r
        marks = {}
        for name in names:
            lab = room.lab(name)
            marks[name] = vrrp_marks(lab)  # the log files' sizes: no connection made
            classroom.close_lab(lab)
        procs0 = processes_by_lab(names)
        ticks0 = {p: cpu_ticks(p) for ps in procs0.values() for p in ps}
        busy0, all0 = machine_busy()
        w0 = time.monotonic()
        time.sleep(idle_s / 2)
        procs = processes_by_lab(names)
        pss = sum(pss_kb(p) for ps in procs.values() for p in ps)
        r.pss_mb_total = round(pss / 1024, 1)
        r.pss_mb_per_lab = round(pss / 1024 / len(names), 1)
        r.processes_per_lab = round(sum(map(len, procs.values())) / len(names), 1)
        r.mem_available_drop_mb_per_lab = round((mem0 - mem_available_kb()) / 1024
                                                / len(names), 1)
        time.sleep(max(0.0, idle_s - (time.monotonic() - w0)))
        r.idle_seconds = round(time.monotonic() - w0, 1)
        busy1, all1 = machine_busy()
        ticks = sum(cpu_ticks(p) - ticks0.get(p, 0) for p in ticks0)
        core_pct = ticks / CLK_TCK / r.idle_seconds * 100
        r.idle_cpu_pct_of_one_core_total = round(core_pct, 1)
        r.idle_cpu_pct_of_one_core_per_lab = round(core_pct / len(names), 2)
        r.machine_busy_pct = round((busy1 - busy0) / max(1, all1 - all0) * 100, 1)
        note(f"idle {r.idle_seconds} s: {r.pss_mb_per_lab} MB PSS and "
             f"{r.idle_cpu_pct_of_one_core_per_lab} % of a core per lab")

        def look(name: str) -> tuple[str, Any, str | None, dict[str, list[str]]]:
            # A lab at a time holds its SSH connections (each a ProxyCommand with pipes):
            # a hundred labs open at once would push this process's descriptors past
            # 1024, where paramiko's select() fails ("filedescriptor out of range").
            lab = room.lab(name)
            try:
                try:
                    holders: Any = observe.vip_holders(lab)
                except observe.ObservationError as e:
                    holders = f"unknown: {e}"
                rec = lab.prober.probe("api")
                return (name, holders,
                        None if rec.ok else (rec.error or rec.stage or "failed"),
                        vrrp_transitions(lab, marks[name]))
            finally:
                classroom.close_lab(lab)

        master = room.base.master_lb.name
        with ThreadPoolExecutor(classroom.DEFAULT_PARALLEL) as pool:
            for name, holders, bad, moves in pool.map(look, names):
                if holders != [master]:
                    r.vip_not_on_master[name] = holders
                if bad:
                    r.not_serving[name] = bad
                if any(moves.values()):
                    r.transitions[name] = {lb: m for lb, m in moves.items() if m}
        note(f"after idle: VIP elsewhere than {master} in {len(r.vip_not_on_master)}, "
             f"not serving in {len(r.not_serving)}, VRRP transitions in "
             f"{len(r.transitions)} of {len(names)} labs")

        r.failover_learner = names[len(names) // 2]
        lab = room.lab(r.failover_learner)
        note(f"{r.failover_learner}: SIGKILL haproxy on {master}, the whole class idle around")
        v = failover.haproxy_crash(lab)
        r.failover_verdict, r.failover_passed = str(v), v.passed
        r.failover_outage_s = v.figures.outage_s
        note(str(v))
        faults.restore(lab)
        steady.wait(lab)
        classroom.close_lab(lab)
        status = room.status()
        r.steady_after = sum(s.healthy for s in status.learners)
        r.not_steady_after = {s.name: s.problems if s.problems else s.error
                              for s in status.learners if not s.healthy}
        r.arp_entries = classroom.arp_entries()
    finally:
        if not keep:
            t1 = time.monotonic()
            room.down()
            r.down_seconds = round(time.monotonic() - t1, 1)
    return r
