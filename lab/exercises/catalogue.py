"""Every exercise, by name, in the order a course would take them (easy first)."""

from __future__ import annotations

from lab.exercises import haproxy, vrrp
from lab.exercises.exercise import Exercise, ExerciseError

CATALOGUE: dict[str, Exercise] = {e.name: e for e in [
    haproxy.BACKUP_HAPROXY_DOWN,
    haproxy.WRONG_BACKEND,
    vrrp.EQUAL_PRIORITIES,
    vrrp.FAILING_HEALTH_CHECK,
    vrrp.NO_TRACK_SCRIPT,
    vrrp.AUTH_MISMATCH,
    haproxy.BACKUP_BINDS_OWN_ADDRESS,
    vrrp.WRONG_UNICAST_PEER,
    vrrp.ROGUE_ROUTER,
]}


def exercise(name: str) -> Exercise:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise ExerciseError(f"no exercise named '{name}'; `halab exercise list` shows them: "
                            + ", ".join(CATALOGUE)) from None
