"""Exercises: the lab broken the way real HA set-ups break, for a learner to repair on the
nodes themselves, then checked by the lab's own verdicts.

The small API that the CLI (`halab exercise ...`) and any other front end (a web page)
call; everything returns plain data or dataclasses with ``as_dict()``:

    catalogue() -> list[dict]             every exercise: name, title, summary, level, ...
    start(lab, name) / start(lab, random=True) -> Exercise
    check(lab, name=None) -> CheckResult  ok, problems, passed, failover, solved
    hint(lab, name=None, all_=False) -> Hints
    reset(lab) -> list[str]               the lab as halab rendered it; no active exercise
    active(lab) -> dict | None            the active exercise (its name hidden if a mystery)
    progress(lab) -> dict                 active, hints taken, exercises solved
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import asdict, dataclass

from lab import faults, observe, steady, timing
from lab.errors import HalabError, LabStateError
from lab.exercises import checks, record
from lab.exercises.catalogue import CATALOGUE, exercise
from lab.exercises.checks import CheckResult
from lab.exercises.exercise import (
    Exercise,
    ExerciseActive,
    ExerciseError,
    ExerciseUnavailable,
)
from lab.lab import Lab

__all__ = ["CATALOGUE", "CheckResult", "Exercise", "ExerciseActive", "ExerciseError",
           "ExerciseUnavailable", "Hints", "active", "catalogue", "check", "exercise", "hint",
           "progress", "reset", "start"]

Note = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def catalogue() -> list[dict[str, object]]:
    """Every exercise as plain data, in course order."""
    return [e.as_dict() for e in CATALOGUE.values()]


def active(lab: Lab) -> dict[str, object] | None:
    """The exercise running on this lab, or None. A mystery exercise keeps its name,
    title and summary to itself."""
    p = record.read(lab.state)
    if p.active is None:
        return None
    ex, mystery = CATALOGUE.get(p.active.name), p.active.mystery
    return {"name": None if mystery or ex is None else ex.name,
            "title": None if mystery or ex is None else ex.title,
            "summary": None if mystery or ex is None else ex.summary,
            "mystery": mystery, "started_at": p.active.started_at,
            "hints_shown": p.hints.get(p.active.name, 0)}


def progress(lab: Lab) -> dict[str, object]:
    """What a classroom view shows of a learner: the active exercise (as ``active``), and
    the exercises solved so far with their time and hints."""
    p = record.read(lab.state)
    return {"active": active(lab), "solved": [asdict(s) for s in p.solved]}


def _available(lab: Lab, ex: Exercise) -> None:
    why = ex.available(lab.topo)
    if why is not None:
        raise ExerciseUnavailable(f"exercise '{ex.name}' cannot run on lab '{lab.topo.name}': "
                                  f"{why}. `halab exercise list` shows the others.")


def start(lab: Lab, name: str | None = None, *, random: bool = False,
          note: Note = _quiet) -> Exercise:
    """Break a steady lab the exercise's way and record it as active. ``random``: a mystery
    exercise (one not yet solved on this lab, when there is one)."""
    if (name is None) == (not random):
        raise ExerciseError("name one exercise (`halab exercise start NAME`) or ask for a "
                            "mystery one (`halab exercise start --random`), not both or none")
    ex = exercise(name) if name is not None else None
    lab.require_up()
    current = record.read(lab.state).active
    if current is not None:
        what = "a mystery exercise" if current.mystery else f"exercise '{current.name}'"
        raise ExerciseActive(f"{what} is already active on lab '{lab.topo.name}'; solve it "
                             "(`halab exercise check` passes) or give up with `halab exercise "
                             "reset`, then start another")
    if ex is None:
        solved = {s.name for s in record.read(lab.state).solved}
        pool = [e for e in CATALOGUE.values() if e.available(lab.topo) is None]
        ex = _random.SystemRandom().choice([e for e in pool if e.name not in solved] or pool)
    _available(lab, ex)
    note("making sure the lab is steady first")
    try:
        steady.wait(lab, timeout=checks.settle_timeout(lab))
    except HalabError as e:
        raise LabStateError(f"the lab is not steady, so the exercise would start on a lab "
                            f"that is already broken ({e}); `halab exercise reset` restores "
                            "it") from None
    record.begin(lab.state, ex.name, mystery=random)
    note("breaking the lab" if random else f"breaking the lab: {ex.title}")
    try:
        ex.breaks(lab)
    except HalabError as e:
        label = "the mystery exercise" if random else f"exercise '{ex.name}'"
        raise HalabError(f"{label} could not be set up: {e}\n`halab exercise reset` restores "
                         "the lab.") from None
    return ex


def check(lab: Lab, name: str | None = None, note: Note = _quiet) -> CheckResult:
    """The lab's verdicts (lab.exercises.checks), and the active exercise solved when they
    all pass. ``name``: the exercise to check; by default the active one, or none (a plain
    health and failover check)."""
    ex = exercise(name) if name is not None else None
    lab.require_up()
    current = record.read(lab.state).active
    if ex is not None and current is not None and current.name != ex.name:
        what = "a mystery exercise" if current.mystery else f"exercise '{current.name}'"
        raise ExerciseError(f"{what} is active on lab '{lab.topo.name}', not '{ex.name}'; "
                            "`halab exercise check` without a name checks the active one")
    result = checks.check(lab, note)
    target = ex.name if ex is not None else current.name if current is not None else None
    hidden = ex is None and current is not None and current.mystery
    result.exercise = None if hidden else target
    if result.ok and current is not None and current.name == target:
        record.solve(lab.state, current.name)
        result.solved = True
    return result


@dataclass
class Hints:
    exercise: str | None  # None: the mystery exercise
    hints: list[tuple[int, str]]  # (number, text): the hints shown by this call
    total: int

    @property
    def more(self) -> bool:
        return self.hints[-1][0] < self.total

    def as_dict(self) -> dict[str, object]:
        return {"exercise": self.exercise, "total": self.total, "more": self.more,
                "hints": [{"number": n, "text": t} for n, t in self.hints]}


def hint(lab: Lab, name: str | None = None, all_: bool = False) -> Hints:
    """The next hint of the exercise (each call one more, the last one again once all are
    out), or every hint with ``all_``. Without a name: the active exercise's."""
    current = record.read(lab.state).active
    if name is None and current is None:
        raise ExerciseError(f"no exercise is active on lab '{lab.topo.name}'; name one "
                            "(`halab exercise hint NAME`) or start one (`halab exercise "
                            "start NAME`)")
    ex = exercise(name if name is not None else current.name)  # type: ignore[union-attr]
    shown = record.read(lab.state).hints.get(ex.name, 0)
    upto = len(ex.hints) if all_ else min(shown + 1, len(ex.hints))
    record.took_hint(lab.state, ex.name, max(upto, shown))
    hidden = name is None and current is not None and current.mystery
    numbers = range(1, upto + 1) if all_ else [upto]
    return Hints(None if hidden else ex.name, [(n, ex.hints[n - 1]) for n in numbers],
                 len(ex.hints))


def reset(lab: Lab, note: Note = _quiet) -> list[str]:
    """The lab as halab rendered it, through the provisioning `halab provision` runs, and
    no exercise active. Returns what was done."""
    lab.require_up()
    done = []
    for ex in CATALOGUE.values():
        if ex.cleanup is not None:  # what provisioning cannot know of (a rogue daemon)
            ex.cleanup(lab)
    note("bringing nodes and daemons back")
    try:
        done += faults.restore(lab)
    except HalabError:
        pass  # a daemon whose broken config provisioning replaces below cannot start yet
    note("provisioning the lab again")
    for change in lab.provision(note):
        if change.changed:
            done.append(f"{change.node}: rewrote {', '.join(change.changed_files) or '-'}"
                        + (f"; restarted {', '.join(change.restarted)}" if change.restarted
                           else "")
                        + (f"; started {', '.join(change.started)}" if change.started else ""))
    done += faults.restore(lab)
    note("waiting for the lab to be steady")
    master = lab.topo.master_lb.name
    observe.wait_vip(lab, [master], timing.preempt_back(lab.topo).with_margin
                     + timing.backend_up(lab.topo).with_margin)
    checks.refresh_client_arp(lab)
    steady.wait(lab)
    record.clear(lab.state)
    return done
