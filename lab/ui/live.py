"""The lab, asked continuously for the page: the client's probes through the VIP and each
LB's hold on the VIP (the Prober with observe.VipWatch: the path the failover verdicts take),
and the whole status (`lab.status.gather`) in rounds.

The status rounds have a ``Lab`` of their own, so their SSH connections are their own. After
a fault or an exercise step they drop their connections to the nodes it touched and look
afresh (``reconnect``): a connection opened before the fault would still answer after the
node's sshd was killed, and the page would show what a fresh look can no longer see (the
VIP view lets such a round's "cannot be asked" win over the streamed samples).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from lab import observe, status
from lab.errors import HalabError
from lab.lab import Lab
from lab.probes import Holding, Timeline
from lab.ui import view


def _why(e: BaseException) -> str:
    text = str(e).strip() or "no message"
    return text if isinstance(e, HalabError) else f"{type(e).__name__}: {text}"


class Live:
    def __init__(self, lab_file: Path, provider: str | None = None,
                 probe_interval: float = view.PROBE_S) -> None:
        self._status_lab = Lab.open(lab_file, provider)
        self._vip_lab = Lab.open(lab_file, provider)
        self.topo = self._status_lab.topo
        self.provider = self._status_lab.provider.name
        self.probe_interval = probe_interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stack = ExitStack()
        self._timeline: Timeline | None = None
        self._status: status.LabStatus | None = None
        self._status_at: float | None = None
        self._status_took: float | None = None
        self._status_error: str | None = None
        self._daemons: dict[str, list[str]] = {}  # every daemon each node ever reported
        self._exercise_active: Any = None
        self._exercise_error: str | None = None
        self._reconnect: set[str] = set()  # nodes the next status round looks at afresh
        self.exercises: Any = None  # lab.exercises, when this build has it (actions sets it)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        _ = self._vip_lab.nodes  # every Node made here: the watch's threads only read them
        self._timeline = self._stack.enter_context(self._vip_lab.prober.continuous(
            interval=self.probe_interval, kinds=("api",),
            watch=observe.VipWatch(self._vip_lab)))
        self._spawn("halab-ui-status", self._status_loop)

    def _spawn(self, name: str, target: Any, *args: object) -> None:
        th = threading.Thread(target=target, args=args, name=name, daemon=True)
        th.start()
        self._threads.append(th)

    def stop(self) -> None:
        self._stop.set()
        for th in self._threads:
            # A round stuck on a node (an SSH connect times out after 10 s) is not waited
            # for: closing its Lab below ends its commands, and the thread is a daemon.
            th.join(timeout=2)
        self._threads.clear()
        self._stack.close()  # the probes' and the VIP watch's threads end
        self._vip_lab.prober.close()
        self._status_lab.close()
        self._vip_lab.close()

    def reconnect(self, nodes: Iterable[str] | None = None) -> None:
        """The next status round drops its connections to ``nodes`` (all when None) first."""
        names = set(nodes) if nodes is not None else {n.name for n in self.topo.nodes}
        with self._lock:
            self._reconnect |= names

    # -- the askers ------------------------------------------------------------------------
    def _gather(self, lab: Lab) -> tuple[status.LabStatus | None, str | None]:
        """One status round, given up when a node went down while it was being asked: a
        command in flight to a node that froze or crashed never returns (no RST comes; the
        round would wait for its 60 s timeout, the page saying "no status" meanwhile). Its
        connections are closed, and the next round asks on a Lab object of its own (as
        `halab watch` does), while the stuck one ends on its closed connections."""
        result: list[tuple[status.LabStatus | None, str | None]] = []

        def ask() -> None:
            try:
                result.append((status.gather(lab), None))
            except Exception as e:  # noqa: BLE001 - gather reports per node; a bug's net
                result.append((None, f"lab.status.gather failed: {_why(e)}"))

        before = status.provider_states(lab)
        asker = threading.Thread(target=ask, name="halab-ui-ask", daemon=True)
        asker.start()
        while asker.is_alive():
            asker.join(0.25)
            if not asker.is_alive():
                break
            gone = [n for n, st in status.provider_states(lab).items()
                    if st in observe.DOWN_STATES and before.get(n) not in observe.DOWN_STATES]
            if gone:
                for node in lab.nodes.values():
                    node.transport.close()
                self._status_lab = Lab(lab.topo, lab.state.dir.parent.parent, self.provider)
                return None, (f"{', '.join(gone)} went down while the lab was being asked; "
                              "asking again on new connections")
        return result[0] if result else (None, "the status round ended with no answer")

    def _status_loop(self) -> None:
        while not self._stop.is_set():
            lab = self._status_lab
            with self._lock:
                fresh, self._reconnect = self._reconnect, set()
            for name in fresh:
                lab.node(name).close()
            t0 = time.monotonic()
            st, error = self._gather(lab)
            took = time.monotonic() - t0
            active, ex_error = self._exercise_state()
            with self._lock:
                self._status_error = error
                if st is not None:
                    self._status, self._status_at, self._status_took = st, t0, took
                    for n in st.nodes:
                        if n.daemons:
                            known = self._daemons.setdefault(n.name, [])
                            known += [d for d in n.daemons if d not in known]
                self._exercise_active, self._exercise_error = active, ex_error
            self._stop.wait(view.STATUS_PAUSE_S)

    def _exercise_state(self) -> tuple[Any, str | None]:
        if self.exercises is None:
            return None, None
        try:
            return self.exercises.active(self._status_lab), None
        except Exception as e:  # noqa: BLE001 - the panel says "unknown", with the reason
            return None, _why(e)

    # -- what the page needs ---------------------------------------------------------------
    def _trim(self, now: float) -> None:
        """Drop what the page no longer shows from the timeline, so that a page left open
        all day does not grow without end. Each list is appended by its own threads roughly
        in time order: the leading run of old items goes."""
        tl = self._timeline
        if tl is None:
            return
        cutoff = now - view.STRIP_S - 5
        for items in (tl.records, tl.holdings):
            old = 0
            for item in list(items):
                if item.t >= cutoff:
                    break
                old += 1
            if old:
                del items[:old]

    def vip_samples(self) -> dict[str, view.VipSample]:
        """Each LB's latest VIP sample (by the node's clock, not by arrival)."""
        tl = self._timeline
        last: dict[str, Holding] = {}
        for h in list(tl.holdings) if tl is not None else []:
            if h.lb not in last or h.t >= last[h.lb].t:
                last[h.lb] = h
        return {lb: view.VipSample(lb, h.t, h.holds, h.why) for lb, h in last.items()}

    def snapshot(self, now: float) -> dict[str, Any]:
        """The parts of a view.Snapshot this asks for."""
        tl = self._timeline
        self._trim(now)
        records = [r for r in list(tl.records)] if tl is not None else []
        with self._lock:
            return {
                "status": self._status, "status_at": self._status_at,
                "status_took": self._status_took, "status_error": self._status_error,
                "vip": self.vip_samples(),
                "records": records,
                "probing_since": tl.started if tl is not None else None,
                "probe_errors": list(tl.errors) if tl is not None else [],
                "exercise_active": self._exercise_active,
                "exercise_error": self._exercise_error,
            }

    def daemons(self) -> dict[str, list[str]]:
        with self._lock:
            return {k: list(v) for k, v in self._daemons.items()}
