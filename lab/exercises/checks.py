"""`halab exercise check`: is the lab healthy, and does it fail over within its bound?

The verdicts are the lab's own, whatever the exercise: every daemon's configuration as
its own validator judges it on the node (the command provisioning validates with), the
steady state of lab/steady.py, HAProxy's health checks passing, no other host holding the
VIP, then the headline failover of lab/failover.py (the same function the failover test
and `halab demo` run) and the lab's return to steady once HAProxy is back. The deployed
files are never compared with the rendered ones: a learner may repair a lab differently
from the way halab wrote it, and a repair is judged by how the lab behaves.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from lab import failover, faults, observe, steady, timing
from lab.errors import HalabError
from lab.lab import Lab
from lab.topology import Role
from lab.wait import WaitTimeout, until
from provision import names, roles
from provision.pki import LabPki

Note = Callable[[str], None]

# HAProxy's words for a health check that passed (layer 4, 6 or 7); anything else, INI
# (not run yet) included, is not a pass.
CHECK_PASSED = ("L4OK", "L6OK", "L7OK")


@dataclass
class CheckResult:
    ok: bool
    problems: list[str]  # what is still wrong, in words a learner reads
    passed: list[str] = field(default_factory=list)  # what was checked and held
    exercise: str | None = None  # the exercise checked (None: none, or a mystery one)
    failover: str | None = None  # the failover verdict, when the scenario ran
    solved: bool = False  # this check solved the active exercise
    # The failover could not be judged (a hole in the observation, or the lab did not keep
    # its own timers: an overloaded machine), and nothing else was wrong: check again.
    inconclusive: bool = False

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def settle_timeout(lab: Lab) -> float:
    """How long a check gives a lab that was just repaired to settle: a keepalived
    restarted on the MASTER takes the VIP back after its check's rise and its master-down
    interval, a restarted HAProxy needs its servers' rise checks. Not steady's own
    settle_timeout, which also waits out the client's ARP entry after a split brain heals
    (~50 s): a check that waited that long on every broken lab would be unusable; that
    case is reported in words instead."""
    topo = lab.topo
    return timing.preempt_back(topo).with_margin + timing.backend_up(topo).with_margin


# -- configurations ---------------------------------------------------------------------
def config_problems(lab: Lab) -> list[str]:
    """Each daemon's configuration, as its own validator judges it on the node (haproxy
    -c, keepalived -t, nginx -t: provisioning's validation commands)."""
    pki = LabPki(lab.state.pki, lab.topo)
    running = [n for n, node in lab.nodes.items()
               if node.managed and lab.provider.node_state(n) == "running"]

    def validate(name: str) -> list[str]:
        # One node's validations one after the other: they share its SSH connection.
        node, found = lab.node(name), []
        for svc in roles.services_for(lab.topo, node, pki):
            if not svc.validate:
                continue
            try:
                r = node.run(svc.validate)
            except HalabError as e:
                found.append(f"unknown: cannot validate {svc.unit.name}'s configuration on "
                             f"{name}: {e}")
                continue
            if not r.ok:
                said = _what_is_wrong(r.stderr or r.stdout) or f"exit code {r.rc}, no output"
                found.append(f"{name}: {svc.unit.name}'s configuration is invalid; "
                             f"`{svc.validate}` says: {said}")
        return found

    with ThreadPoolExecutor(max(1, len(running))) as pool:
        return [p for found in pool.map(validate, running) for p in found]


def _what_is_wrong(output: str, most: int = 3) -> str:
    """A validator's complaint without its banner: HAProxy's ALERTs (its NOTICEs and
    WARNINGs say nothing about why it refuses), or the last lines of anyone else's."""
    lines = [" ".join(line.split()) for line in output.strip().splitlines() if line.strip()]
    alerts = [line for line in lines if "[ALERT]" in line and "errors found" not in line.lower()
              and "error(s) found" not in line.lower()]
    return " / ".join(alerts[:most] if alerts else lines[-most:])


# -- the lab's health ---------------------------------------------------------------------
def health_checks(lab: Lab) -> list[str]:
    """Servers whose last HAProxy health check did not pass. A server starts UP before its
    first check has run, so a backend address nobody answers at looks UP for a while;
    its last check does not."""
    found = []
    for lb in lab.load_balancers:
        if (lab.provider.node_state(lb.name) != "running"
                or not lb.services.status(names.HAPROXY_UNIT).active):
            continue  # steady.problems says so
        try:
            servers = observe.backends(lab, lb.name)
        except HalabError:
            continue  # steady.problems reports the backends it could not read
        for b in servers:
            if b.check in ("", "INI"):
                found.append(f"{lb.name}: HAProxy has not checked {b.proxy}/{b.server} yet")
            elif not b.check.startswith(CHECK_PASSED):
                found.append(f"{lb.name}: HAProxy's last health check of {b.proxy}/{b.server} "
                             f"failed ({b.check_desc or b.check})")
    return found


def vip_elsewhere(lab: Lab) -> list[str]:
    """Hosts other than the LBs that carry the VIP: an address conflict that steady (which
    asks the LBs) cannot see."""
    others = [n.name for n in lab.topo.nodes
              if Role.LOADBALANCER not in n.roles and lab.node(n.name).managed]

    def holds(name: str) -> str | None:
        try:
            return (f"{name}, which is no load balancer, holds the VIP {lab.vip}"
                    if observe.holds_vip(lab, name) else None)
        except HalabError as e:
            return f"unknown: {e}"

    with ThreadPoolExecutor(max(1, len(others))) as pool:
        return [p for p in pool.map(holds, others) if p]


def health(lab: Lab) -> list[str]:
    """Everything wrong with the lab as it stands; empty: healthy. Unknown is not healthy."""
    try:
        return steady.problems(lab) + health_checks(lab) + vip_elsewhere(lab)
    except HalabError as e:
        return [f"unknown: {e}"]


def settle(lab: Lab, timeout: float) -> list[str]:
    """Until the lab is healthy or ``timeout`` has passed; what was still wrong."""
    last: list[str] = []

    def healthy() -> bool:
        last[:] = health(lab)
        return not last

    if timeout <= 0:
        healthy()
        return last
    try:
        until("the lab to be healthy", healthy, timeout=timeout, interval=0.5)
    except WaitTimeout:
        pass
    return last


def refresh_client_arp(lab: Lab) -> None:
    """Make the client ask anew who holds the VIP when its entry names another LB.

    After a split brain heals, the LB that stayed MASTER sends no gratuitous ARP, and the
    client's entry may point at the other LB until it expires (timing.arp_after_heal,
    ~50 s). A check that caused such a split brain with its own failover leaves the lab
    as it found it; this is the client's part of that."""
    master = lab.topo.master_lb.name
    mac = observe.neighbour_mac(lab, lab.vip)
    if mac is not None and mac != observe.lab_mac(lab, master):
        lab.client.run("ip neigh del %s dev %s", lab.vip, lab.topo.network.interface)


def restore(lab: Lab) -> list[str]:
    """Undo what a failover left (HAProxy killed on the MASTER), wait for the VIP to come
    back, and return what is still wrong once the lab had time to settle."""
    master = lab.topo.master_lb.name
    try:
        faults.restore(lab)
        observe.wait_vip(lab, [master], timing.preempt_back(lab.topo).with_margin
                         + failover.WATCH_BEYOND_S)
        refresh_client_arp(lab)
    except HalabError as e:
        return [f"the lab did not come back: {e}"]
    return settle(lab, settle_timeout(lab))


# -- the verdict --------------------------------------------------------------------------
def check(lab: Lab, note: Note = lambda _: None) -> CheckResult:
    """Configurations, health, the failover within its bound, and the way back; the lab
    is left as it was found (a failover's damage undone)."""
    topo = lab.topo
    master, backup = topo.master_lb.name, topo.best_backup_lb.name
    passed: list[str] = []
    note("validating every daemon's configuration on its node")
    problems = config_problems(lab)
    if not problems:
        passed.append("every daemon's configuration is valid on its node (haproxy -c, "
                      "keepalived -t, nginx -t)")
    # An invalid configuration will not heal by waiting: say what is wrong now.
    note("waiting for the lab to be healthy")
    unhealthy = settle(lab, 0 if problems else settle_timeout(lab))
    problems += unhealthy
    if not unhealthy:
        passed.append(f"the lab is steady: every daemon runs, the VIP is on {master} alone "
                      "and serves the client, every backend is UP and passes its health "
                      "checks, no other host claims the VIP")
    if problems:
        return CheckResult(False, problems, passed)
    if not timing.haproxy_crash_fails_over(topo):
        return CheckResult(False, [
            f"lab.yaml's check weights never let {backup} outrank {master} when HAProxy "
            "dies (keepalived.check.weight, track_file.weight): there is no failover to "
            "check"], passed)
    bound = timing.haproxy_crash(topo)
    note(f"failover: HAProxy SIGKILLed on {master}; the configuration promises {bound}")
    try:
        verdict = failover.haproxy_crash(lab)
        status = verdict.status
    except HalabError as e:
        # The failover could not be observed at all (a node that stopped answering): unknown,
        # never a pass; the lab is restored all the same.
        verdict, status = None, "unknown"
        problems.append(f"the failover could not be observed ({e}); check again")
    except BaseException:
        restore(lab)  # interrupted: never leave HAProxy dead on the MASTER behind
        raise
    if verdict is None:
        pass
    elif verdict.passed:
        passed.append(f"HAProxy killed on {master}: the VIP moved to {backup} and the client "
                      f"was served again within {bound} ({verdict.figures.summary()})")
    elif status in ("unknown", "inconclusive"):
        problems.append(f"the failover could not be judged ({status}: the observation has "
                        "a hole, or the lab did not keep its own timers; is the machine very "
                        "busy?); check again: " + "; ".join(verdict.reasons)
                        + f" [{verdict.figures.summary()}]")
    else:
        problems.append(f"when HAProxy died on {master}, the lab did not fail over to "
                        f"{backup} within {bound}: " + "; ".join(verdict.reasons)
                        + f" [{verdict.figures.summary()}]")
    note(f"restoring HAProxy on {master}")
    after = restore(lab)
    if after:
        problems += [f"after the failover, with HAProxy back on {master}: {p}" for p in after]
    else:
        passed.append(f"with HAProxy back on {master}, the VIP returned to it and the lab "
                      "is steady again")
    return CheckResult(not problems, problems, passed,
                       failover=None if verdict is None else str(verdict),
                       inconclusive=status in ("unknown", "inconclusive")
                       and len(problems) == 1 and not after)
