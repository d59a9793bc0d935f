"""The only part of the page that changes the lab: the catalogue's faults and their undo,
restoring the lab, and the exercises (when this build has lab/exercises).

One job at a time, on a thread of its own with a ``Lab`` of its own: a click while a job
runs is refused, naming the job, rather than two faults (or a fault and an exercise's
check) interleaving on the same nodes.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab import faults
from lab.errors import HalabError
from lab.lab import Lab
from lab.ui.view import Action

try:  # being built on another branch: the panel lights up when it is merged
    from lab import exercises as _exercises
except ImportError:
    _exercises = None

NO_EXERCISES = "no exercises in this build"
EXERCISE_OPS = ("start", "hint", "check", "reset")


class Busy(HalabError):
    """A job is already running; the page shows which."""


def exercises() -> Any:
    """lab.exercises, or None when this build has none."""
    return _exercises


def plain(x: Any) -> Any:
    """An exercise API's answer as JSON-ready data (``as_dict()``, a dataclass, a list)."""
    if hasattr(x, "as_dict"):
        return x.as_dict()
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.asdict(x)
    if isinstance(x, list | tuple):
        return [plain(i) for i in x]
    if x is None or isinstance(x, str | int | float | bool | dict):
        return x
    return str(x)


@dataclasses.dataclass
class Job:
    label: str
    kind: str  # fault, undo, restore, exercise
    started: float
    state: str = "running"  # running, done, failed
    message: str = ""
    ended: float | None = None

    def as_dict(self, now: float) -> dict[str, Any]:
        return {"label": self.label, "kind": self.kind, "state": self.state,
                "message": self.message, "ago": round(now - self.started, 1),
                "took": None if self.ended is None else round(self.ended - self.started, 2)}


Done = Callable[[Job, "list[str] | None"], None]


class Actions:
    def __init__(self, lab_file: Path, provider: str | None, done: Done) -> None:
        self._lab = Lab.open(lab_file, provider)
        self._done = done
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.job: Job | None = None
        self.active: dict[str, Action] = {}  # faults injected from the page, not yet undone
        self.exercise_result: dict[str, Any] | None = None

    def _start(self, label: str, kind: str, touched: list[str] | None,
             work: Callable[[], str]) -> Job:
        with self._lock:
            if self.job is not None and self.job.state == "running":
                raise Busy(f"busy with “{self.job.label}” (started "
                           f"{time.monotonic() - self.job.started:.0f} s ago); try again "
                           "when it has finished")
            job = self.job = Job(label, kind, time.monotonic())

        def body() -> None:
            try:
                job.message = work()
                job.state = "done"
            except Exception as e:  # noqa: BLE001 - shown on the page, the server goes on
                job.state = "failed"
                job.message = str(e) if isinstance(e, HalabError) else \
                    f"{type(e).__name__}: {e}"
            finally:
                job.ended = time.monotonic()
                self._done(job, touched)

        self._thread = threading.Thread(target=body, name="halab-ui-job", daemon=True)
        self._thread.start()
        return job

    # -- faults ----------------------------------------------------------------------------
    def fault(self, action: Action, undo: bool = False) -> Job:
        if undo and not action.has_undo:
            raise HalabError(f"“{action.label}” has no undo: it is itself one")
        label = action.undo_label if undo else action.label
        touched = list(action.nodes) or None  # a count of masters: whichever it picks

        def work() -> str:
            params = dict(action.params)
            if undo:
                faults.undo(self._lab, action.fault, list(action.nodes), params)
                self.active.pop(action.id, None)
                return "undone"
            faults.inject(self._lab, action.fault, list(action.nodes), params)
            if action.has_undo:
                self.active[action.id] = action
            return "injected"

        return self._start(label, "undo" if undo else "fault", touched, work)

    def restore(self) -> Job:
        def work() -> str:
            done = faults.restore(self._lab)
            self.active.clear()
            return "; ".join(done) or "nothing was broken"

        return self._start("restore the lab (undo every fault)", "restore", None, work)

    # -- exercises -------------------------------------------------------------------------
    def exercise(self, op: str, name: str | None) -> Job:
        ex = _exercises
        if ex is None:
            raise HalabError(NO_EXERCISES)
        if op not in EXERCISE_OPS:
            raise HalabError(f"no exercise operation '{op}'; one of {', '.join(EXERCISE_OPS)}")
        if op in ("start", "hint") and not name:
            raise HalabError(f"choose an exercise to {op}")

        def work() -> str:
            if op == "start":
                result = ex.start(self._lab, name)
            elif op == "hint":
                result = ex.hint(self._lab, name)
            elif op == "check":
                result = ex.check(self._lab, name)
            else:
                result = ex.reset(self._lab)
                self.active.clear()
            data = plain(result)
            self.exercise_result = {"op": op, "name": name, "data": data}
            if op == "check" and isinstance(data, dict) and "ok" in data:
                return "passed" if data["ok"] else "not solved yet"
            return "done"

        label = f"exercise {op}" + (f" {name}" if name else "")
        return self._start(label, "exercise", None, work)

    def close(self) -> None:
        th = self._thread
        if th is not None:
            th.join(timeout=5)  # a long exercise step goes on as a daemon thread
        self._lab.close()
