"""A fault under observation: probes and the VIP watch running, the fault injected, the
lab watched until the VIP has moved and the client is served again (or a deadline).

The demo, the failover tests and the exercises' checks all break the lab through here and
then judge with ``lab.measure``: one way to observe, one way to measure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from lab import observe
from lab.lab import Lab
from lab.probes import Prober, Timeline

Progress = Callable[[Timeline, float], None]
Action = Callable[[], object]


@dataclass
class Observed:
    timeline: Timeline
    fault_at: float  # monotonic s, when the fault was set off


def _recovered(tl: Timeline, since: float, to: str | None) -> bool:
    """The VIP on ``to`` alone (by the LBs' own samples) and a good probe after that."""
    at = since if to is None else tl.held_alone_from(to, since)
    if at is None:
        return False
    recs = [r for r in tl.of() if r.t >= since]
    bad = [r for r in recs if not r.ok]
    after = max(at, bad[-1].t if bad else since)
    return any(r.ok and r.t > after for r in recs)


def under_fault(lab: Lab, label: str, inject: Action, *, to: str | None,
                deadline_s: float, after_s: float = 0.5, prober: Prober | None = None,
                progress: Progress | None = None) -> Observed:
    """Probe, set off ``inject``, and watch until the lab has recovered onto ``to`` (or
    ``deadline_s`` has passed: the verdict then says what did not happen); then go on
    probing ``after_s`` so that the client is seen served by the new holder."""
    prober = prober or lab.prober
    with prober.continuous(watch=observe.VipWatch(lab)) as tl:
        time.sleep(3 * tl.interval)  # a few probes before the fault: what normal looks like
        t = tl.mark(label)
        inject()
        while time.monotonic() - t < deadline_s:
            if progress is not None:
                progress(tl, t)
            if _recovered(tl, t, to):
                break
            time.sleep(0.05)
        time.sleep(after_s)
    return Observed(tl, t)
