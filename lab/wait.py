"""Every wait in halab goes through here: one place that names what it waited for."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryError,
    Retrying,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_fixed,
)

from lab.errors import HalabError

T = TypeVar("T")


class WaitTimeout(HalabError):
    """Something the lab should have reached did not happen in time."""


def until(
    what: str,
    probe: Callable[[], T],
    timeout: float,
    interval: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``probe`` until it returns something truthy; return that, or raise WaitTimeout.

    ``probe`` may raise: that counts as 'not yet' and the last error is reported.
    ``sleep`` is injectable so that tests of waiting logic need not sleep.
    """
    __tracebackhide__ = True
    last_error: list[BaseException] = []

    def attempt() -> T | None:
        try:
            return probe()
        except Exception as e:  # noqa: BLE001 - a failing probe is just 'not yet'
            last_error[:] = [e]
            return None

    attempts = max(1, math.ceil(timeout / interval)) + 1
    retrying = Retrying(
        # Elapsed time bounds real waits; the attempt count bounds waits with a fake sleep.
        stop=stop_after_delay(timeout) | stop_after_attempt(attempts),
        wait=wait_fixed(interval),
        retry=retry_if_result(lambda r: not r),
        sleep=sleep,
    )
    try:
        return retrying(attempt)  # type: ignore[return-value]
    except RetryError:
        detail = f"; last error: {last_error[0]}" if last_error else ""
        raise WaitTimeout(f"timed out after {timeout:.1f} s waiting for {what}{detail}") from None
