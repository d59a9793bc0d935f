"""Where the time of a bring-up goes: named spans, recorded from any thread.

`halab up --timings` prints them. Code on the way (the provider, provisioning, the steady
wait) marks its phases with ``span("...")`` or ``mark("...")``; both cost nothing unless a
``Recorder`` is active, so they stay in place for every caller.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    name: str
    start: float  # monotonic s
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


class Recorder:
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.spans: list[Span] = []
        self._lock = threading.Lock()

    def add(self, name: str, start: float, end: float) -> None:
        with self._lock:
            self.spans.append(Span(name, start, end))

    def lines(self, t0: float | None = None, width: int = 160) -> list[str]:
        """One line per span by its start: when it began (s after ``t0``, by default the
        recorder's start), how long it took, what it was (cut to ``width``)."""
        t0 = self.t0 if t0 is None else t0
        out = [f"{'start':>7}  {'took':>6}  phase"]
        for s in sorted(self.spans, key=lambda s: (s.start, s.end)):
            took = f"{s.seconds:5.2f}s" if s.end > s.start else "     -"
            name = s.name if len(s.name) <= width else s.name[:width - 1] + "…"
            out.append(f"{s.start - t0:6.2f}s  {took}  {name}")
        return out


_active: Recorder | None = None


@contextmanager
def recording() -> Iterator[Recorder]:
    """Record every span and mark until the block ends (one recorder at a time)."""
    global _active
    rec, before = Recorder(), _active
    _active = rec
    try:
        yield rec
    finally:
        _active = before


@contextmanager
def span(name: str) -> Iterator[None]:
    rec = _active
    start = time.monotonic()
    try:
        yield
    finally:
        if rec is not None:
            rec.add(name, start, time.monotonic())


def mark(name: str) -> None:
    """A moment rather than a span (the VIP first seen on its holder, say)."""
    rec = _active
    if rec is not None:
        now = time.monotonic()
        rec.add(name, now, now)


def process_age_s() -> float | None:
    """How long ago this process started (the kernel's start time, in clock ticks since
    boot): what the interpreter and the imports cost before any code of ours ran."""
    try:
        start = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        uptime = float(open("/proc/uptime").read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - start / os.sysconf("SC_CLK_TCK"))
