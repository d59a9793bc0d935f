"""Exercises that break keepalived: who holds the VIP, and who takes it over.

Each breaks the deployed keepalived.conf of one or both load balancers (or adds a router
the LBs did not know of) and restarts keepalived there, as a person at the node would.
Values come from the lab's topology (lb01 is the MASTER LB of lab.yaml, lb02 its best
backup), so the exercises follow a lab.yaml that names or numbers things differently.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from lab import observe, timing
from lab.errors import HalabError
from lab.exercises.exercise import Exercise, edit, restart
from lab.lab import Lab
from lab.topology import Role, Topology
from lab.wait import until
from provision import names

CONF = names.KEEPALIVED_CONF
KEEPALIVED = names.KEEPALIVED_UNIT


def _lbs(lab: Lab) -> tuple[str, str]:
    return lab.topo.master_lb.name, lab.topo.best_backup_lb.name


def _restart_keepalived(lab: Lab, node: str) -> None:
    restart(lab, node, KEEPALIVED)


# -- equal priorities -------------------------------------------------------------------------
def _set_priority(lab: Lab, node: str, priority: int) -> None:
    edit(lab, node, CONF, r"^([ \t]*priority[ \t]+)\d+[ \t]*$", rf"\g<1>{priority}")
    _restart_keepalived(lab, node)


def _equal_break(lab: Lab) -> None:
    master, backup = _lbs(lab)
    _set_priority(lab, master, lab.topo.node(backup).vrrp.priority)


def _equal_fix(lab: Lab) -> None:
    master, _ = _lbs(lab)
    _set_priority(lab, master, lab.topo.node(master).vrrp.priority)


EQUAL_PRIORITIES = Exercise(
    name="equal-priorities",
    title="Equal VRRP priorities",
    summary="keepalived was restarted on lb01 after maintenance; since then the VIP sits on "
            "lb02 and does not come back, although both load balancers are healthy.",
    breaks=_equal_break,
    reference_fix=_equal_fix,
    level="beginner",
    hints=(
        "Where is the VIP, and where should it be? `halab status` shows the holder; "
        "lab.yaml says which LB is meant to be MASTER.",
        "VRRP hands the VIP to the router with the highest priority. Compare the "
        "`priority` lines of both LBs: `halab exec lb01 -- cat /etc/keepalived/keepalived.conf`, "
        "then the same on lb02.",
        "On equal priorities VRRP breaks the tie by the higher IP address, and lb02 "
        "(192.168.0.102) beats lb01. A BACKUP that hears an equal priority does not preempt "
        "either, so nothing ever moves the VIP back.",
        "Give lb01 its priority back (`priority 100`, higher than lb02's 99) and restart "
        "keepalived there: `halab fault restart lb01 -p service=keepalived`.",
    ),
)


# -- no track_script -------------------------------------------------------------------------
TRACK_BLOCK = r"^[ \t]*track_script \{\s*\n[ \t]*chk_haproxy\s*\n[ \t]*\}[ \t]*\n"


def _untrack_break(lab: Lab) -> None:
    master, backup = _lbs(lab)
    for lb in (backup, master):  # the backup first: the VIP stays put meanwhile
        edit(lab, lb, CONF, TRACK_BLOCK, "")
        _restart_keepalived(lab, lb)


def _untrack_fix(lab: Lab) -> None:
    master, backup = _lbs(lab)
    for lb in (backup, master):
        # vrrp_instance is the file's last block: the tracking goes before its closing brace.
        edit(lab, lb, CONF, r"^\}\s*\Z", "  track_script {\n    chk_haproxy\n  }\n}\n")
        _restart_keepalived(lab, lb)


NO_TRACK_SCRIPT = Exercise(
    name="no-track-script",
    title="A health check nobody tracks",
    summary="The lab looks healthy, but `halab exercise check` says the VIP does not move "
            "when HAProxy dies on lb01.",
    breaks=_untrack_break,
    reference_fix=_untrack_fix,
    level="intermediate",
    hints=(
        "See it happen: `halab fault kill lb01 -p service=haproxy`, then `halab status` a few "
        "times (who holds the VIP? does the API answer?), then `halab fault --undo kill lb01 "
        "-p service=haproxy`.",
        "keepalived knows nothing about HAProxy by itself: it learns of HAProxy's death "
        "through a `vrrp_script`. Read both LBs' keepalived.conf: the script is defined, but "
        "does any `vrrp_instance` use it?",
        "A `vrrp_script` counts only where a `track_script { chk_haproxy }` block inside the "
        "`vrrp_instance` names it. With `weight 2`, the tracked check adds 2 to the priority "
        "of each LB whose HAProxy runs: lb01 102, lb02 101; lb01 without HAProxy 100.",
        "Add a `track_script { chk_haproxy }` block inside `vrrp_instance VI_1` on both LBs "
        "and restart keepalived on each (`halab fault restart lbNN -p service=keepalived`). "
        "Both, because the backup's bonus is what lifts it above a master that lost its own.",
    ),
)


# -- auth_pass mismatch: split brain -----------------------------------------------------------
def _other_password(current: str) -> str:
    return "2222" if current != "2222" else "3333"


def _set_password(lab: Lab, node: str, password: str) -> None:
    edit(lab, node, CONF, r"^([ \t]*auth_pass[ \t]+)\S+[ \t]*$", rf"\g<1>{password}")
    _restart_keepalived(lab, node)


def _auth_break(lab: Lab) -> None:
    master, _ = _lbs(lab)
    _set_password(lab, master, _other_password(lab.topo.keepalived.auth_pass or ""))


def _auth_fix(lab: Lab) -> None:
    master, _ = _lbs(lab)
    _set_password(lab, master, lab.topo.keepalived.auth_pass or "")


def _has_auth(topo: Topology) -> str | None:
    return None if topo.keepalived.auth_pass is not None else (
        "this lab's keepalived uses no password (keepalived.auth_pass is null in lab.yaml, "
        "as VRRPv3 requires)")


AUTH_MISMATCH = Exercise(
    name="auth-mismatch",
    title="Split brain: the VRRP passwords differ",
    summary="Someone rotated the VRRP password on one load balancer only. Now both of them "
            "hold the VIP.",
    breaks=_auth_break,
    reference_fix=_auth_fix,
    available=_has_auth,
    level="intermediate",
    hints=(
        "`halab status`: two LBs hold the VIP at once (a split brain). Each became MASTER "
        "because it hears no adverts from the other. Yet the network between them works "
        "(`halab exec lb01 -- ping -c1 192.168.0.102`).",
        "An advert that arrives can still be thrown away. keepalived says why in its log: "
        "on the embedded lab `.halab/<lab name>/nodes/lb01/logs/keepalived.log` on this "
        "machine (on VMs `journalctl -u keepalived` inside the node).",
        "Compare the `authentication` blocks of both LBs' keepalived.conf.",
        "Make `auth_pass` the same on both (the lab's is 1111) and restart keepalived on the "
        "LB you changed (`halab fault restart lb01 -p service=keepalived`).",
    ),
)


# -- a check script that cannot run ---------------------------------------------------------
def _wrong_path(script: str) -> tuple[str, str]:
    """The check script's program, and the same program where it is not: /usr/bin/x ->
    /usr/sbin/x, a path copied from a machine laid out differently."""
    program = script.split()[0]
    path = PurePosixPath(program)
    wrong = ("/usr/sbin" if path.parent.name == "bin" else "/usr/bin") + f"/{path.name}"
    if wrong == program:
        wrong = f"/usr/local/sbin/{path.name}"
    return program, wrong


def _set_program(lab: Lab, node: str, old: str, new: str) -> None:
    edit(lab, node, CONF, rf'^([ \t]*script\s+"){re.escape(old)}', rf"\g<1>{new}")
    _restart_keepalived(lab, node)


def _check_script(lab: Lab) -> str:
    check = lab.topo.keepalived.check
    assert check is not None, "the exercise applies only to a lab with a check script"
    return check.script


def _check_break(lab: Lab) -> None:
    master, _ = _lbs(lab)
    _set_program(lab, master, *_wrong_path(_check_script(lab)))


def _check_fix(lab: Lab) -> None:
    master, _ = _lbs(lab)
    right, wrong = _wrong_path(_check_script(lab))
    _set_program(lab, master, wrong, right)


def _check_is_absolute(topo: Topology) -> str | None:
    if topo.keepalived.check is None:
        return "this lab has no check script (keepalived.check: null)"
    if not topo.keepalived.check.script.startswith("/"):
        return "this lab's check script is not an absolute path (keepalived.check.script)"
    if topo.keepalived.check.weight <= 0:
        return "this lab's check has no positive weight (keepalived.check.weight)"
    return None


FAILING_HEALTH_CHECK = Exercise(
    name="failing-health-check",
    title="The MASTER's health check cannot run",
    summary="HAProxy and keepalived run on both load balancers, yet the VIP has moved to "
            "lb02.",
    breaks=_check_break,
    reference_fix=_check_fix,
    available=_check_is_absolute,
    level="intermediate",
    hints=(
        "lb01 is configured as MASTER and its HAProxy runs: why would it give the VIP away? "
        "keepalived logs its effective priority ('Changing effective priority') and its "
        "check script's results.",
        "Ask keepalived what it thinks of its configuration, on the node: `halab exec lb01 -- "
        "keepalived -t -f /etc/keepalived/keepalived.conf; echo $?`.",
        "With `enable_script_security`, keepalived disables a check script it cannot find "
        "or may not run, and a disabled script earns no weight: lb01 stays at 100 while "
        "lb02's working check lifts it to 101. Does the script's program exist on lb01?",
        "Point `script` in `vrrp_script chk_haproxy` at the real program (`halab exec lb01 "
        "-- sh -c 'command -v killall'`) and restart keepalived on lb01.",
    ),
)


# -- the backup's unicast peer is wrong ---------------------------------------------------------
def _set_peer(lab: Lab, node: str, old: str, new: str) -> None:
    edit(lab, node, CONF, rf"(unicast_peer \{{[^}}]*?^\s*){re.escape(old)}[ \t]*$", rf"\g<1>{new}")
    _restart_keepalived(lab, node)


def _peer_break(lab: Lab) -> None:
    master, backup = _lbs(lab)
    # lb01's file copied to lb02: unicast_src_ip was updated, the peer line was not.
    _set_peer(lab, backup, lab.node(master).address, lab.node(backup).address)


def _peer_fix(lab: Lab) -> None:
    master, backup = _lbs(lab)
    _set_peer(lab, backup, lab.node(backup).address, lab.node(master).address)


def _two_lbs(topo: Topology) -> str | None:
    return None if len(topo.load_balancers) == 2 else (
        "this exercise is written for two load balancers")


WRONG_UNICAST_PEER = Exercise(
    name="wrong-unicast-peer",
    title="The backup talks to itself",
    summary="The lab looks healthy. `halab exercise check` says it does not survive the "
            "failover.",
    breaks=_peer_break,
    reference_fix=_peer_fix,
    available=_two_lbs,
    level="advanced",
    hints=(
        "Watch the failover: `halab fault kill lb01 -p service=haproxy`, then `halab status` "
        "a few times. Who holds the VIP after ten seconds? Then `halab fault --undo kill "
        "lb01 -p service=haproxy`.",
        "Both LBs hold the VIP after the failover: lb02 took over, and lb01 never heard of "
        "it. In unicast VRRP a keepalived sends its adverts only to the addresses in its "
        "`unicast_peer` block.",
        "Compare `unicast_src_ip` and `unicast_peer` in both LBs' keepalived.conf. lb02 hears "
        "lb01 (so all looks well until lb02 must speak), but whom does lb02 talk to?",
        "lb02's `unicast_peer` must list lb01's address (192.168.0.101), not its own. Fix it "
        "and restart keepalived on lb02.",
    ),
)


# -- a rogue router with the same virtual_router_id ------------------------------------------
# Where the forgotten keepalived runs: Debian's default paths, as `keepalived` alone uses.
ROGUE_CONF = "/etc/keepalived/keepalived.conf"
ROGUE_PRIORITY = 150


def _rogue_host(topo: Topology) -> str:
    hosts = [n.name for n in topo.nodes
             if n.roles and Role.LOADBALANCER not in n.roles and Role.CLIENT not in n.roles]
    if not hosts:
        raise HalabError("this lab has no host besides its load balancers for a rogue router")
    return hosts[-1]


def _rogue_conf(lab: Lab, host: str) -> str:
    """The keepalived.conf a load balancer once had, left on a host that is a master now:
    the lab's VRID and VIP, a higher priority, adverts to the LBs."""
    topo, k = lab.topo, lab.topo.keepalived
    iface = topo.network.interface
    peers = "".join(f"    {lb.address}\n" for lb in topo.load_balancers)
    auth = ("  authentication {\n     auth_type PASS\n     auth_pass "
            f"{k.auth_pass}\n  }}\n") if k.auth_pass is not None else ""
    version = f"  vrrp_version {k.vrrp_version}\n" if k.vrrp_version != 2 else ""
    return (f"# lb00, the first load balancer of this LAN (decommissioned)\n"
            f"global_defs {{\n  router_id lb00\n{version}}}\n"
            f"vrrp_instance VI_1 {{\n  virtual_router_id {k.virtual_router_id}\n"
            f"  advert_int {k.advert_int:g}\n  priority {ROGUE_PRIORITY}\n  state MASTER\n"
            f"  interface {iface}\n  unicast_src_ip {topo.node(host).address}\n"
            f"  unicast_peer {{\n{peers}  }}\n"
            f"  virtual_ipaddress {{\n    {topo.vip} dev {iface}\n  }}\n{auth}}}\n")


def _rogue_gone(lab: Lab, host: str) -> None:
    """Stop the forgotten keepalived (inside the host's own PID namespace: only its
    processes) and remove its configuration, so that nothing brings it back."""
    n = lab.node(host)
    n.run("pkill -x keepalived; rm -f %s; true", ROGUE_CONF)
    until(f"the forgotten keepalived on {host} to exit",
          lambda: n.run("pgrep -x keepalived").rc == 1, timeout=10, interval=0.1)


def _rogue_break(lab: Lab) -> None:
    host = _rogue_host(lab.topo)
    n = lab.node(host)
    if n.run("pgrep -x keepalived").ok:
        raise HalabError(f"{host} already runs a keepalived; `halab exercise reset` first")
    n.put(ROGUE_CONF, _rogue_conf(lab, host))
    # Debian's keepalived with its defaults: it forks into the background, as an init
    # script of the old load balancer would have started it.
    n.check_output("keepalived")
    # Broken when the learner can see it: the forgotten router holds the VIP (it outranks
    # both LBs). A process alone is not yet a symptom: a check run before the rogue won
    # would find a healthy lab (seen on a loaded machine).
    until(f"the forgotten keepalived on {host} to take the VIP {lab.vip}",
          lambda: observe.holds_vip(lab, host),
          timeout=timing.node_crash(lab.topo).with_margin + 10, interval=0.1)


def _rogue_fix(lab: Lab) -> None:
    _rogue_gone(lab, _rogue_host(lab.topo))


def _rogue_cleanup(lab: Lab) -> None:
    host = _rogue_host(lab.topo)
    if lab.provider.node_state(host) == "running":
        _rogue_gone(lab, host)


def _has_rogue_host(topo: Topology) -> str | None:
    try:
        _rogue_host(topo)
    except HalabError as e:
        return str(e)
    return None


ROGUE_ROUTER = Exercise(
    name="rogue-router",
    title="Another router claims virtual_router_id 51",
    summary="The API still answers through the VIP, but neither load balancer holds it.",
    breaks=_rogue_break,
    reference_fix=_rogue_fix,
    cleanup=_rogue_cleanup,
    available=_has_rogue_host,
    level="advanced",
    hints=(
        "`halab status`: no LB holds the VIP, yet `halab exec client -- curl -sik "
        "https://192.168.0.203:6443/version` answers. Who answers? Read the X-Halab-Node and "
        "X-Halab-Peer headers, and the client's ARP entry (`halab exec client -- ip neigh`).",
        "Both LBs are BACKUP. A BACKUP stays BACKUP while it hears adverts for its "
        "virtual_router_id with a higher priority, from anyone. lb01's keepalived log says "
        "who sends them (on the embedded lab `.halab/<lab name>/nodes/lb01/logs/"
        "keepalived.log` on this machine).",
        "The adverts come from k8s-master-07. Look there: `halab exec k8s-master-07 -- ps ax`, "
        "`cat /etc/keepalived/keepalived.conf`: the config of a load balancer this LAN once "
        "had, with the same VRID, the VIP and priority 150.",
        "Stop that keepalived and remove its configuration (`halab exec k8s-master-07 -- sh "
        "-c 'pkill keepalived; rm /etc/keepalived/keepalived.conf'`; on VMs also "
        "`systemctl disable keepalived`). Every VRRP group on a LAN needs its own "
        "virtual_router_id; `vrrp_check_unicast_src` in global_defs makes the LBs ignore "
        "adverts from outside their unicast_peer list.",
    ),
)
