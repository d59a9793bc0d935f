"""A classroom on one machine: N independent embedded labs made from one lab file.

Every learner gets a lab of their own, named STEM01...STEMNN (``learner01``...): the base
lab file with ``name:`` replaced, and nothing else. All of them use the same addresses,
each inside namespaces of its own (``halab-learner07-lb01``...), which is safe because
nothing of a lab lives in the machine's own network namespace: every interface the
embedded provider makes is created directly inside a lab namespace (the nodes' ``eth1``,
the switch's bridge and ports), so no interface name carries the lab's name or could clash.

The class folder is ``.halab/_class/`` beside the base lab file (``_`` cannot start a lab
name, so no lab's own state folder can be it). It holds ``class.json`` (what was asked and
what came of it) and one ordinary lab file per learner, ``learner07.yaml``, whose state
lands beside it in ``.halab/_class/.halab/learner07/`` as for any lab file. So every
command works on a learner's lab unchanged: ``halab ssh lb02 -f .halab/_class/learner07.yaml``,
``halab status -f ...``, ``halab clean -f ...`` (by prefix, also after a crash).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from lab import topology
from lab.errors import HalabError, LabStateError, PrerequisiteError
from lab.lab import Lab
from lab.state import STATE_ROOT
from lab.topology import Topology

STEM = "learner"
MAX_LEARNERS = 999
CLASS_DIR = "_class"
RECORD = "class.json"
# A lab name is at most 12 characters (lab.topology.Topology.name): the stem leaves room
# for three digits.
STEM_PATTERN = re.compile(r"^[a-z]{1,9}$")
# What one idle lab of the default topology costs the machine, measured with classes of 20
# and 100 (`halab class bench`): 29-30 MB PSS of its processes plus what the kernel keeps
# for its namespaces, bridge and sockets (MemAvailable fell by 34-35 MB per lab). Rounded
# up: a class is refused when it would not fit, rather than met by the OOM killer.
MEMORY_PER_LAB_MB = 64
# Bring-up is mostly waiting (sshd, VRRP's first election, HAProxy's checks: ~15-20 s per
# lab on this 2-core machine, ~1 s of it CPU), so many more labs than cores come up at
# once: 100 labs took 279 s 8 at a time and 159 s 16 at a time (`halab class bench`).
DEFAULT_PARALLEL = 16


class ClassError(HalabError):
    """A class command asked for something that cannot be (bad N, bad stem)."""

    exit_code = 2


# -- names ----------------------------------------------------------------------------------
def check_count(n: int) -> None:
    if not 1 <= n <= MAX_LEARNERS:
        raise ClassError(f"a class has 1 to {MAX_LEARNERS} learners, not {n}: each learner's "
                         f"lab is named with its number ({STEM}01...). Ask for a number in "
                         "that range, e.g. `halab class up 10`.")


def check_stem(stem: str) -> None:
    if not STEM_PATTERN.match(stem):
        raise ClassError(f"the learners' name stem {stem!r} must be 1-9 lowercase letters "
                         f"(e.g. `{STEM}`): a lab name is at most 12 characters and the "
                         "learner's number follows the stem (a digit in the stem would make "
                         "learner1 + 01 the same lab as learner + 101).")


def learner_names(n: int, stem: str = STEM) -> list[str]:
    """STEM01...STEMNN: two digits, three from 100 learners on, so that they sort."""
    check_count(n)
    check_stem(stem)
    width = max(2, len(str(n)))
    return [f"{stem}{i:0{width}d}" for i in range(1, n + 1)]


def learner_topology(base: Topology, name: str) -> Topology:
    """The base lab with another name, validated as any lab file is."""
    return Topology.model_validate({**base.model_dump(), "name": name})


def learner_text(base_text: str, name: str) -> str:
    """The base lab file as a learner's lab file: the same YAML with ``name:`` replaced
    (comments lost), readable by a person and by `halab -f`."""
    return topology.renamed(base_text, name, f"learner lab {name} of a halab class: the "
                            "base lab file with its name replaced (made by `halab class up`)")


# -- the kernel's shared tables ------------------------------------------------------------
ARP_STAT = Path("/proc/net/stat/arp_cache")
NEIGH_SYSCTL = "net.ipv4.neigh.default.gc_thresh{}"


def arp_entries(stat: Path = ARP_STAT) -> int:
    """How many ARP entries the kernel holds, in every namespace together (each row of
    the file is a CPU's; the entry count is the table's, the same in every row)."""
    lines = stat.read_text().splitlines()
    return int(lines[1].split()[lines[0].split().index("entries")], 16)


def neighbour_needs(base: Topology, labs: int, present: int) -> dict[str, int]:
    """The ARP table's thresholds for ``labs`` more labs. The kernel keeps ONE table for
    every network namespace (its limits are settable only from the machine's own), by
    default gc_thresh2 512 / gc_thresh3 1024 entries; each node of a lab may know every
    other node and the VIP (a lab of 6 nodes: up to 36 entries, ~25 at idle). Above
    gc_thresh2 the kernel evicts entries younger than the labs' traffic needs, at
    gc_thresh3 it refuses new ones: ARP storms, then lost packets."""
    per_lab = len(base.nodes) * len(base.nodes)
    need = present + labs * per_lab
    return {NEIGH_SYSCTL.format(2): need, NEIGH_SYSCTL.format(3): 2 * need}


# -- the class folder -----------------------------------------------------------------------
@dataclass
class Outcome:
    """How one learner's lab came up (or did not)."""

    name: str
    ok: bool
    seconds: float
    error: str | None = None


@dataclass
class LearnerStatus:
    name: str
    lab_file: str
    state: str  # up, failed (at class up), down (not up now), unknown
    vip_holders: list[str] | None  # None: not known (see error)
    problems: list[str] | None  # lab.steady's problems; [] is steady; None: not asked
    exercise: Any = None  # lab.exercises.active(lab), when halab has exercises
    error: str | None = None

    @property
    def healthy(self) -> bool:
        return self.state == "up" and self.problems == []


@dataclass
class ClassStatus:
    base: str
    learners: list[LearnerStatus] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"base": self.base, "learners": [asdict(s) for s in self.learners],
                "healthy": sum(s.healthy for s in self.learners),
                "total": len(self.learners)}


class Cancelled(HalabError):
    """The class bring-up was interrupted: this learner's lab stops where it is."""


def close_lab(lab: Lab) -> None:
    if "prober" in lab.__dict__:  # made only if a probe ran
        lab.prober.close()
    lab.close()


def exercise_of(lab: Lab) -> Any:
    """What lab.exercises says the learner is working on (made JSON-able), or None where
    this halab has no exercises. Only the module's absence is silent: an error inside it
    reaches the caller, who reports it as unknown."""
    try:
        # Looked up at call time (sys.modules), so a build without exercises still works.
        exercises = importlib.import_module("lab.exercises")
    except ModuleNotFoundError as e:
        if e.name == "lab.exercises":
            return None
        raise  # present, but it imports something missing: a real error
    active = getattr(exercises, "active", None)
    if active is None:
        return None
    found = active(lab)
    if found is None or isinstance(found, str | int | float | bool | list | dict):
        return found
    if hasattr(found, "as_dict"):
        return found.as_dict()
    if is_dataclass(found) and not isinstance(found, type):
        return asdict(found)
    return getattr(found, "name", None) or str(found)


class Classroom:
    """The class made from one base lab file: its folder, its record, its learners."""

    def __init__(self, base_file: str | Path) -> None:
        self.base_file = Path(base_file).resolve()
        self.base = topology.load(self.base_file)
        self.dir = self.base_file.parent / STATE_ROOT / CLASS_DIR

    # -- record ----------------------------------------------------------------------------
    @property
    def record_file(self) -> Path:
        return self.dir / RECORD

    def read(self) -> dict[str, Any]:
        try:
            return json.loads(self.record_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def _write(self, data: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.record_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, self.record_file)  # a crash leaves the old record or the new one

    def _update(self, **changes: Any) -> None:
        data = self.read()
        data.update(changes)
        self._write(data)

    def learners(self) -> list[str]:
        return list(self.read().get("learners", []))

    def lab_file(self, name: str) -> Path:
        return self.dir / f"{name}.yaml"

    def lab(self, name: str) -> Lab:
        return Lab.open(self.lab_file(name), "netns")

    def present(self, names: Iterable[str] | None = None) -> dict[str, list[str]]:
        """The namespaces on this machine of each learner that has any."""
        from lab.providers.netns import netns_list

        spaces = netns_list()
        found = {}
        for name in self.learners() if names is None else names:
            mine = [ns for ns in spaces if ns.startswith(f"halab-{name}-")]
            if mine:
                found[name] = mine
        return found

    # -- up --------------------------------------------------------------------------------
    def check(self, names: list[str]) -> None:
        """Everything that would stop the class, before anything is built."""
        if self.base.provider != "netns":
            raise PrerequisiteError(
                f"{self.base_file.name} says `provider: {self.base.provider}`; a class is "
                "made of embedded labs (namespaces on this machine; a hundred VMs would not "
                "fit). Use a lab file with `provider: netns` (the default).")
        from lab.system import mem_available_kb

        free_mb = mem_available_kb() // 1024
        if len(names) * MEMORY_PER_LAB_MB > free_mb:
            raise PrerequisiteError(
                f"a class of {len(names)} labs needs about {len(names) * MEMORY_PER_LAB_MB} MB "
                f"({MEMORY_PER_LAB_MB} MB per idle lab, measured) and this machine has "
                f"{free_mb} MB available: ask for at most {free_mb // MEMORY_PER_LAB_MB} "
                "learners, or free memory first.")
        # Root, the Debian packages, the control plane: the first learner stands for all.
        Lab(learner_topology(self.base, names[0]), self.dir, "netns").provider.check()
        recorded = self.read()
        if recorded.get("phase") in ("creating", "up") and self.present():
            raise LabStateError(
                f"a class of {len(recorded.get('learners', []))} learners is already up "
                f"from {recorded.get('base', self.base_file)} (one class per folder); `halab "
                "class status` shows it, `halab class down` removes it (then `halab class "
                "up` again).")
        others = self.present(names)
        if others:
            shown = ", ".join(sorted(others)[:5]) + ("..." if len(others) > 5 else "")
            raise LabStateError(
                f"labs named {shown} already run on this machine, not made by a class of "
                f"{self.base_file}: learner names are the machine's namespace prefixes "
                "(halab-learner01-...). Take that class down from its own folder (`halab "
                "class down -f ITS_LAB_FILE`), or name these learners otherwise with "
                "`--stem`.")

    def up(self, n: int, parallel: int = DEFAULT_PARALLEL, stem: str = STEM,
           progress: Callable[[str, str], None] = lambda _n, _m: None,
           done: Callable[[Outcome], None] = lambda _o: None,
           notice: Callable[[str], None] = lambda _m: None) -> list[Outcome]:
        """Bring N learner labs up, ``parallel`` at a time, each until it is steady. A lab
        that fails is reported and cleaned (its logs stay in its state folder); the
        others stay up. Interrupted, the whole class is removed: nothing half built."""
        from lab import steady

        names = learner_names(n, stem)
        if parallel < 1:
            raise ClassError(f"--parallel must be at least 1, not {parallel}")
        self.check(names)
        self._make_room(n, notice)
        base_text = self.base_file.read_text()
        # Recorded before anything exists, so that `class down` finds every learner even
        # if this process dies now.
        self._write({"base": str(self.base_file), "stem": stem, "learners": names,
                     "phase": "creating", "parallel": parallel, "started": time.time(),
                     "results": {}})
        for name in names:
            self.lab_file(name).write_text(learner_text(base_text, name))
        cancel = threading.Event()

        def one(name: str) -> Outcome:
            t0 = time.monotonic()

            def note(msg: str) -> None:
                if cancel.is_set():
                    raise Cancelled(f"{name}: class bring-up interrupted")
                progress(name, msg)

            lab = self.lab(name)
            try:
                lab.up(note)
                note("waiting until steady")
                last: list[str] = []

                def is_steady() -> bool:
                    if cancel.is_set():
                        raise Cancelled(f"{name}: class bring-up interrupted")
                    last[:] = steady.problems(lab)
                    return not last

                from lab.wait import until

                try:
                    # Each look costs ~10 commands over SSH: polled at 1 s, not
                    # steady.wait's 0.25 s, so that labs waiting leave the CPU to labs
                    # being built (a lab takes ~4 s to steady: VRRP's first election).
                    until(steady.WHAT, is_steady, timeout=steady.settle_timeout(lab),
                          interval=1.0)
                except HalabError as e:
                    raise type(e)(f"{e}; still wrong: {'; '.join(last) or 'nothing'}") from None
                return Outcome(name, True, time.monotonic() - t0)
            except BaseException as e:  # noqa: BLE001 - reported, and the lab cleaned
                close_lab(lab)
                try:
                    lab.provider.down()
                except HalabError:
                    pass
                return Outcome(name, False, time.monotonic() - t0, str(e) or type(e).__name__)
            finally:
                close_lab(lab)

        results: dict[str, Outcome] = {}
        t0 = time.monotonic()
        pool = ThreadPoolExecutor(max_workers=min(parallel, n), thread_name_prefix="class")
        try:
            pending: set[Future[Outcome]] = {pool.submit(one, name) for name in names}
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for f in finished:
                    o = f.result()
                    results[o.name] = o
                    self._update(results={k: asdict(v) for k, v in results.items()})
                    done(o)
        except BaseException:
            cancel.set()
            try:
                # The labs in flight stop at their next step and clean themselves up.
                pool.shutdown(wait=True, cancel_futures=True)
            finally:
                self.down()  # even on a second Ctrl-C: nothing half built stays
            raise
        pool.shutdown(wait=True)
        self._update(phase="up", up_seconds=round(time.monotonic() - t0, 1),
                     results={k: asdict(v) for k, v in results.items()})
        return [results[name] for name in names]

    def _make_room(self, n: int, notice: Callable[[str], None]) -> None:
        """The kernel's ARP table, shared by every namespace, sized for the class."""
        from lab.system import raise_sysctls

        wanted = neighbour_needs(self.base, n, arp_entries())
        # gc_thresh3 first: the soft limit never stands above the hard one.
        raised = raise_sysctls(dict(sorted(wanted.items(), reverse=True)))
        if raised:
            notice("raised " + ", ".join(f"{name} from {old} to {new}"
                                         for name, old, new in raised)
                   + f": the kernel keeps one ARP table for every namespace, and {n} labs of "
                   f"{len(self.base.nodes)} nodes may need {wanted[NEIGH_SYSCTL.format(2)]} "
                   "entries (not persistent: `halab class up` sets it each time; a file in "
                   "/etc/sysctl.d/ keeps it)")

    # -- status ----------------------------------------------------------------------------
    def learner_status(self, name: str) -> LearnerStatus:
        from lab import observe, steady

        recorded = self.read().get("results", {}).get(name, {})
        f = str(self.lab_file(name))
        try:
            lab = self.lab(name)
        except HalabError as e:
            return LearnerStatus(name, f, "unknown", None, None, error=str(e))
        try:
            if not lab.is_up():
                # A lab that failed at `class up` and was not brought up by hand since
                # (`halab up -f` its lab file retries it).
                if recorded and not recorded.get("ok"):
                    return LearnerStatus(name, f, "failed", None, None,
                                         error=f"did not come up: {recorded.get('error')}")
                return LearnerStatus(name, f, "down", None, None, error="not up")
            s = LearnerStatus(name, f, "up", None, None)
            errors = []
            try:
                s.vip_holders = observe.vip_holders(lab)
            except HalabError as e:
                errors.append(f"VIP: {e}")
            try:
                s.problems = steady.problems(lab)
            except Exception as e:  # noqa: BLE001 - unknown is reported, never "fine"
                errors.append(f"steady: {type(e).__name__}: {e}")
            try:
                s.exercise = exercise_of(lab)
            except Exception as e:  # noqa: BLE001
                errors.append(f"exercise: {type(e).__name__}: {e}")
            s.error = "; ".join(errors) or None
            return s
        finally:
            close_lab(lab)

    def status(self, parallel: int = DEFAULT_PARALLEL) -> ClassStatus:
        from lab.system import require_root

        self.require_up()
        # Otherwise every learner would read "unknown": their nodes are asked from inside
        # their namespaces.
        require_root("asking a class's labs")
        names = self.learners()
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(names))),
                                thread_name_prefix="class-status") as pool:
            learners = list(pool.map(self.learner_status, names))
        return ClassStatus(str(self.base_file), learners)

    def require_up(self) -> None:
        if not self.learners():
            raise LabStateError(f"no class is up from {self.base_file.name}; bring one up "
                                "with `halab class up N` (e.g. `halab class up 10`)")

    # -- down ------------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Remove every learner's lab and the class folder: by namespace prefix, so also
        after a crash (what `halab clean -f` does for each learner)."""
        import shutil

        from lab.providers.netns import NetnsProvider
        from lab.system import require_root

        require_root("removing a class")
        names = self.learners()
        removed: list[str] = []
        if names:
            with ThreadPoolExecutor(max_workers=min(DEFAULT_PARALLEL, len(names)),
                                    thread_name_prefix="class-down") as pool:
                for gone in pool.map(lambda n: NetnsProvider.clean(f"halab-{n}-"), names):
                    removed += gone
        shutil.rmtree(self.dir, ignore_errors=True)
        return removed
