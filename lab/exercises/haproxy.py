"""Exercises that break HAProxy: what the load balancers forward, and to whom.

Each edits the deployed haproxy.cfg of one load balancer and restarts (or stops) HAProxy
there. Names and addresses come from the lab's topology and provision/names.py.
"""

from __future__ import annotations

import ipaddress
import re

from lab import faults
from lab.exercises.exercise import Exercise, edit, restart
from lab.lab import Lab
from lab.topology import Topology
from provision import names

CFG = names.HAPROXY_CFG
HAPROXY = names.HAPROXY_UNIT


def _lbs(lab: Lab) -> tuple[str, str]:
    return lab.topo.master_lb.name, lab.topo.best_backup_lb.name


# -- a wrong backend address ------------------------------------------------------------------
def _victim(topo: Topology) -> str:
    """The API server whose address gets the typo: the second one (k8s-master-02)."""
    masters = topo.control_planes
    return masters[1 if len(masters) > 1 else 0].name


def _typo(topo: Topology, address: str) -> str:
    """The address with the last two digits swapped (.112 -> .121), as fingers do; any
    free address of the subnet where that gives no other, unused one."""
    used = {str(n.address) for n in topo.nodes} | {str(topo.vip)}
    head, _, last = address.rpartition(".")
    if len(last) >= 2:
        swapped = f"{head}.{last[:-2]}{last[-1]}{last[-2]}"
        if (swapped not in used and ipaddress.IPv4Address(swapped) in topo.network.subnet
                and int(swapped.rpartition(".")[2]) < 255):
            return swapped
    for host in reversed(list(topo.network.subnet.hosts())):
        if str(host) not in used:
            return str(host)
    raise AssertionError("a /30 lab subnet has no free address")  # the topology forbids it


def _set_server(lab: Lab, node: str, server: str, old: str, new: str) -> None:
    # The API proxy's server carries the node's own name (names.server_name).
    edit(lab, node, CFG, rf"^([ \t]*server\s+{re.escape(server)}[ \t]+){re.escape(old)}:",
         rf"\g<1>{new}:")
    restart(lab, node, HAPROXY)


def _backend_break(lab: Lab) -> None:
    master, _ = _lbs(lab)
    victim = _victim(lab.topo)
    addr = lab.node(victim).address
    _set_server(lab, master, names.server_name(names.API_PROXY, victim), addr,
                _typo(lab.topo, addr))


def _backend_fix(lab: Lab) -> None:
    master, _ = _lbs(lab)
    victim = _victim(lab.topo)
    addr = lab.node(victim).address
    _set_server(lab, master, names.server_name(names.API_PROXY, victim),
                _typo(lab.topo, addr), addr)


WRONG_BACKEND = Exercise(
    name="wrong-backend",
    title="A typo in a backend address",
    summary="lb01's HAProxy reports one API server DOWN, while that master runs and lb02 "
            "reaches it.",
    breaks=_backend_break,
    reference_fix=_backend_fix,
    level="beginner",
    hints=(
        "Is the master really down? `halab status` shows the backends as each LB sees them; "
        "`halab exec k8s-master-02 -- ss -tlnp` shows what listens there.",
        "Ask HAProxy on lb01 what it checks, and where: `halab exec lb01 -- sh -c \"echo "
        "'show servers state' | nc -U /run/haproxy/admin.sock\"` (the address) and `show "
        "stat` (the last check's result: L4TOUT means nobody answered).",
        "Compare the `server` lines of `listen k8s-api-server` in lb01's "
        "/etc/haproxy/haproxy.cfg with the masters' addresses in `halab status`.",
        "Correct the address, validate the file on the node (`haproxy -c -f "
        "/etc/haproxy/haproxy.cfg`) and restart HAProxy on lb01 (`halab fault restart lb01 "
        "-p service=haproxy`).",
    ),
)


# -- the backup's HAProxy does not start ------------------------------------------------------
def _down_break(lab: Lab) -> None:
    _, backup = _lbs(lab)
    edit(lab, backup, CFG, r"^([ \t]*balance[ \t]+)roundrobin[ \t]*$", r"\g<1>round-robin")
    # Stopped, and every start from now on fails on the config: a backup nobody looked at
    # since its last edit.
    faults.stop(lab, backup, HAPROXY)


def _down_fix(lab: Lab) -> None:
    _, backup = _lbs(lab)
    edit(lab, backup, CFG, r"^([ \t]*balance[ \t]+)round-robin[ \t]*$", r"\g<1>roundrobin")
    faults.start(lab, backup, HAPROXY)


BACKUP_HAPROXY_DOWN = Exercise(
    name="backup-haproxy-down",
    title="The backup's HAProxy does not start",
    summary="HAProxy is not running on lb02, and it does not start again.",
    breaks=_down_break,
    reference_fix=_down_fix,
    level="beginner",
    hints=(
        "Try to start it: `halab fault restart lb02 -p service=haproxy` (on VMs `systemctl "
        "start haproxy` inside the node). What does the error say?",
        "Validate the configuration on the node: `halab exec lb02 -- haproxy -c -f "
        "/etc/haproxy/haproxy.cfg`. HAProxy names the file, the line and the word it does "
        "not understand.",
        "`balance` takes an algorithm's exact name: roundrobin, static-rr, leastconn, "
        "source, ...",
        "Write `balance roundrobin` on every line that has the misspelt name, check with "
        "`haproxy -c`, and start HAProxy on lb02. Then ask why nobody noticed: a backup's "
        "HAProxy serves nothing until the failover that needs it.",
    ),
)


# -- the backup binds its own address ------------------------------------------------------
def _set_bind(lab: Lab, node: str, old: str, new: str) -> None:
    edit(lab, node, CFG, rf"^([ \t]*bind[ \t]+){re.escape(old)}:6443[ \t]*$", rf"\g<1>{new}:6443")
    restart(lab, node, HAPROXY)


def _bind_break(lab: Lab) -> None:
    _, backup = _lbs(lab)
    _set_bind(lab, backup, "*", lab.node(backup).address)


def _bind_fix(lab: Lab) -> None:
    _, backup = _lbs(lab)
    _set_bind(lab, backup, lab.node(backup).address, "*")


BACKUP_BINDS_OWN_ADDRESS = Exercise(
    name="backup-binds-own-address",
    title="The backup listens on the wrong address",
    summary="The lab looks healthy. `halab exercise check` says the API does not answer "
            "after the failover.",
    breaks=_bind_break,
    reference_fix=_bind_fix,
    level="intermediate",
    hints=(
        "Fail over and ask the API: `halab fault kill lb01 -p service=haproxy`, wait until "
        "`halab status` shows lb02 holding the VIP, then `halab exec client -- curl -sk "
        "https://192.168.0.203:6443/version`. Undo with `halab fault --undo kill lb01 -p "
        "service=haproxy`.",
        "lb02 holds the VIP and HAProxy runs there, yet port 6443 refuses. On which "
        "addresses does it listen? `halab exec lb02 -- ss -tlnp`, and compare with lb01.",
        "A `bind` on the node's own address accepts nothing sent to the VIP. Compare the "
        "`bind` lines of `listen k8s-api-server` on both LBs.",
        "`bind *:6443` on lb02, then restart HAProxy there. (Binding the VIP itself also "
        "needs `net.ipv4.ip_nonlocal_bind=1`: a backup does not hold the VIP when HAProxy "
        "starts.)",
    ),
)
