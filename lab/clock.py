"""A node's clock mapped onto this host's monotonic clock.

A fault sent over SSH to an emulated VM takes effect a round trip or more after the
harness asked for it (hundreds of milliseconds under TCG, seconds when the guest is
starved). Timing the outage from the request would charge that delay to the lab. The node
says when it acted, by its own clock; this maps that moment onto the harness's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from lab.errors import HalabError

Run = Callable[[str], str]  # runs a command on the node, returns its stdout


class NodeClock:
    """``node wall clock - host wall clock``, estimated from the round trip with the
    smallest delay (its half is the error bound)."""

    def __init__(self, run: Run, samples: int = 3) -> None:
        self._run, self._samples = run, samples
        self.offset: float | None = None
        self.error: float = float("inf")

    def calibrate(self) -> None:
        for _ in range(self._samples):
            h0 = time.time()
            out = self._run("date +%s.%N")
            h1 = time.time()
            try:
                node = float(out.split()[0])
            except (ValueError, IndexError):
                raise HalabError(f"cannot read the node's clock: `date` said {out!r}") from None
            if (h1 - h0) / 2 < self.error:
                self.offset, self.error = node - (h0 + h1) / 2, (h1 - h0) / 2

    def to_host_monotonic(self, node_epoch: float) -> float:
        """When ``node_epoch`` (the node's wall clock) happened, on this host's monotonic
        clock."""
        if self.offset is None:
            self.calibrate()
        assert self.offset is not None
        host_wall = node_epoch - self.offset
        return host_wall - (time.time() - time.monotonic())
