"""A learner's progress on one lab: the active exercise, hints taken, exercises solved.

Kept in `.halab/<name>/exercise.json`, beside the lab's own state record and owned by this
module alone. The record names the lab's incarnation (`since` in state.json, written when
the lab came up): an exercise started on a lab that has since gone down and come up again
is no longer active, since the rebuilt lab carries none of its breakage.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab.state import LabState

FILE = "exercise.json"


@dataclass
class Active:
    name: str
    mystery: bool  # started with --random: the name is not shown
    started_at: float  # wall clock, for a person (and a classroom view) to read
    lab_since: float | None  # the lab incarnation it was started on


@dataclass
class Solved:
    name: str
    at: float  # wall clock
    seconds: float | None  # from start to the passing check, when it was started here
    hints: int  # hints taken before it was solved


@dataclass
class Progress:
    active: Active | None = None
    hints: dict[str, int] = field(default_factory=dict)  # exercise -> hints shown so far
    solved: list[Solved] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _path(state: LabState) -> Path:
    return state.dir / FILE


def read(state: LabState) -> Progress:
    """The record, with an exercise of an earlier incarnation of the lab dropped."""
    try:
        d = json.loads(_path(state).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return Progress()
    active = Active(**d["active"]) if d.get("active") else None
    if active is not None and active.lab_since != state.read().get("since"):
        active = None
    return Progress(active, dict(d.get("hints", {})),
                    [Solved(**s) for s in d.get("solved", [])])


def write(state: LabState, p: Progress) -> None:
    state.dir.mkdir(parents=True, exist_ok=True)
    path = _path(state)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(p.as_dict(), indent=2, sort_keys=True))
    os.replace(tmp, path)  # atomic, as state.json is


def begin(state: LabState, name: str, mystery: bool) -> Progress:
    p = read(state)
    p.active = Active(name, mystery, time.time(), state.read().get("since"))
    p.hints.pop(name, None)  # a new attempt starts with its hints unread
    write(state, p)
    return p


def took_hint(state: LabState, name: str, count: int) -> None:
    p = read(state)
    p.hints[name] = count
    write(state, p)


def solve(state: LabState, name: str) -> Solved:
    p = read(state)
    started = p.active.started_at if p.active and p.active.name == name else None
    s = Solved(name, time.time(), None if started is None else round(time.time() - started, 1),
               p.hints.get(name, 0))
    p.solved.append(s)
    if p.active and p.active.name == name:
        p.active = None
    write(state, p)
    return s


def clear(state: LabState) -> None:
    p = read(state)
    p.active = None
    write(state, p)
