"""A fault under observation: probes and the VIP watch running, the fault injected, the
lab watched until the VIP has moved and the client is served again (or a deadline).

The demo, the failover tests and the exercises' checks all break the lab through here and
then judge with ``lab.measure``: one way to observe, one way to measure.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lab import observe
from lab.errors import HalabError
from lab.lab import Lab
from lab.probes import Prober, Timeline
from lab.wire import Advert, Arp, VrrpCapture

Progress = Callable[[Timeline, float], None]
Action = Callable[[], object]


@dataclass
class Observed:
    timeline: Timeline
    fault_at: float  # monotonic s, when the fault took effect (or was set off)
    adverts: list[Advert] = field(default_factory=list)  # VRRP on the lab's switch
    arps: list[Arp] = field(default_factory=list)  # ARP on the lab's switch
    wire_error: str = ""  # why the wire could not be watched, if it could not


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
    with contextlib.ExitStack() as stack:
        capture, wire_error = listen(lab, stack)
        tl = stack.enter_context(prober.continuous(watch=observe.VipWatch(lab)))
        time.sleep(3 * tl.interval)  # a few probes before the fault: what normal looks like
        # At a random moment between two probes: in step with the probe schedule, the fault
        # always met a probe just begun, one that started before the fault and is not counted,
        # however long the fault made it hang (a sub-second failover's only failed probe).
        time.sleep(random.uniform(0, tl.interval))
        t = tl.mark(label)
        took_effect = inject()
        if isinstance(took_effect, float) and took_effect >= t:
            # The node acted later than the harness asked (an SSH round trip, a starved
            # VM): the failover is timed from when the fault took effect.
            t = took_effect
            tl.marks.append((t, f"{label}: took effect"))
        while time.monotonic() - t < deadline_s:
            if progress is not None:
                progress(tl, t)
            if _recovered(tl, t, to):
                break
            time.sleep(0.05)
        time.sleep(after_s)
    adverts = list(capture.adverts) if capture is not None else []
    arps = list(capture.arps) if capture is not None else []
    if capture is not None and capture.error is not None:
        wire_error = f"the VRRP capture died: {capture.error!r}"
    return Observed(tl, t, adverts, arps, wire_error)


def listen(lab: Lab, stack: contextlib.ExitStack) -> tuple[VrrpCapture | None, str]:
    """VRRP adverts on the lab's switch beside the probes: the lab's own cadence. A lab
    whose switch cannot be listened to is judged without it (and says why)."""
    try:
        netns, iface = lab.provider.wire()
        return stack.enter_context(VrrpCapture(netns, iface)), ""
    except (HalabError, OSError, NotImplementedError) as e:
        return None, f"the lab's switch cannot be listened to: {e}"
