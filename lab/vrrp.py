"""What keepalived itself says of its VRRP instance: state and effective priority.

Not computed from lab.yaml: keepalived is asked. Debian's keepalived 2.2.7 is built with
``--enable-json``, so its JSON dump (SIGJSON, ``keepalived --signum=JSON``) gives the
instance's ``state``, ``effective_priority`` (base priority plus the weight of a passing
check), ``last_transition`` and counters, in a form read without guessing; the text dump
(SIGUSR1, ``keepalived.data``) says the same in prose meant for people. keepalived writes
the dump into ``$TMPDIR`` (default /tmp); the lab's keepalived unit points that at its own
runtime folder (``names.KEEPALIVED_DUMP_DIR``): on the embedded lab /tmp is the host's, and
every LB of every lab would write the same file.

A running LB whose keepalived cannot be asked (not running, no answer, a dump that never
comes) raises ``VrrpUnknown`` with the reason: unknown, never a state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from lab.errors import HalabError
from lab.lab import Lab
from provision import names

# keepalived's include/vrrp.h: the states of an instance.
STATES = {0: "INIT", 1: "BACKUP", 2: "MASTER", 3: "FAULT", 97: "DELETED", 98: "STOP"}
# Exit codes of the asking script, and what they mean.
_WHY = {3: "keepalived on {lb} has no JSON dump (`keepalived --signum=JSON` failed: built "
           "without --enable-json?)",
        4: "keepalived is not running on {lb} (no pid in {pidfile})",
        5: "keepalived on {lb} could not be signalled (its pid file names no process)",
        6: "keepalived on {lb} wrote no dump into {dump} within 2 s"}


class VrrpUnknown(HalabError):
    """keepalived could not be asked: its VRRP state is unknown (the message says why)."""


@dataclass(frozen=True)
class VrrpState:
    """One VRRP instance as keepalived reports it."""

    instance: str
    state: str  # MASTER, BACKUP, FAULT, INIT, STOP
    effective_priority: int
    base_priority: int
    master_priority: int  # the priority of the MASTER it last heard (0: none)
    last_transition: float  # the node's epoch seconds
    become_master: int  # how many times it became MASTER since it started
    release_master: int

    def __str__(self) -> str:
        return f"{self.state} {self.effective_priority}"


def parse(text: str) -> list[VrrpState]:
    """keepalived's JSON dump (a list of instances, each {"data": {...}, "stats": {...}})."""
    try:
        dump = json.loads(text)
        if not isinstance(dump, list):
            raise TypeError(f"a list of instances, not {type(dump).__name__}")
        out = []
        for inst in dump:
            d, s = inst["data"], inst.get("stats", {})
            out.append(VrrpState(
                d["iname"], STATES.get(int(d["state"]), f"state {d['state']}"),
                int(d["effective_priority"]), int(d["base_priority"]),
                int(d.get("master_priority", 0)), float(d.get("last_transition", 0.0)),
                int(s.get("become_master", 0)), int(s.get("release_master", 0))))
        return out
    except (ValueError, KeyError, TypeError) as e:
        raise VrrpUnknown(f"keepalived's JSON dump does not read as one: "
                          f"{type(e).__name__}: {e}") from None


def script() -> str:
    """The command run on the LB: signal keepalived's main process (its pid file) to dump
    its state, wait for the dump, print it. The old dump is removed first, so that what is
    printed was written after the signal."""
    dump = f"{names.KEEPALIVED_DUMP_DIR}/keepalived.json"
    return (f"s=$(keepalived --signum=JSON 2>/dev/null) || exit 3; "
            f"p=$(cat {names.KEEPALIVED_PIDFILE} 2>/dev/null) && [ -n \"$p\" ] || exit 4; "
            f"rm -f {dump}; kill -\"$s\" \"$p\" 2>/dev/null || exit 5; "
            f"i=0; while [ ! -s {dump} ]; do i=$((i+1)); [ $i -gt 100 ] && exit 6; "
            "sleep 0.02; done; "
            # keepalived renames the file into place before it writes: let it finish.
            f"sleep 0.05; cat {dump}")


def ask(lab: Lab, lb: str, attempts: int = 3) -> VrrpState:
    """The (first) VRRP instance of ``lb`` as its keepalived reports it now."""
    node = lab.node(lb)
    last = ""
    for _ in range(attempts):
        try:
            r = node.run(script(), timeout=15)
        except HalabError as e:
            raise VrrpUnknown(f"cannot ask keepalived on {lb}: {e}") from None
        if r.rc in _WHY:
            raise VrrpUnknown(_WHY[r.rc].format(lb=lb, pidfile=names.KEEPALIVED_PIDFILE,
                                                dump=names.KEEPALIVED_DUMP_DIR))
        if not r.ok:
            raise VrrpUnknown(f"cannot ask keepalived on {lb}: `{r.command}` exited {r.rc}: "
                              f"{r.stderr.strip()}")
        try:
            states = parse(r.stdout)
        except VrrpUnknown as e:
            last = str(e)  # caught mid-write (another asker, a slow disk): ask again
            continue
        if not states:
            raise VrrpUnknown(f"keepalived on {lb} reports no VRRP instance")
        return states[0]
    raise VrrpUnknown(f"keepalived on {lb}: {last}")
