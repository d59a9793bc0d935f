"""Roles: what each kind of node gets (files, a validation, daemons), applied over Fabric.

Applying is idempotent: a file is written only when its content differs, a config is
validated on the node before its daemon is (re)started, and a daemon is restarted only
when one of its files changed. A second provision changes nothing and restarts nothing.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from lab.errors import HalabError
from lab.node import Node
from lab.services import Unit
from lab.timings import span
from lab.topology import Role, Topology
from lab.wait import until
from provision import names, render
from provision.pki import LabPki

# Debian's daemons, run in the foreground so that any service manager can watch them.
HAPROXY = Unit(names.HAPROXY_UNIT, ("/usr/sbin/haproxy", "-db", "-f", render.HAPROXY_CFG),
               "HAProxy load balancer", ("/run/haproxy",))
# TMPDIR: where keepalived writes the state dumps lab.vrrp asks it for.
KEEPALIVED = Unit(names.KEEPALIVED_UNIT, (
    "/usr/bin/env", f"TMPDIR={names.KEEPALIVED_DUMP_DIR}",
    "/usr/sbin/keepalived", "--dont-fork", "--log-console", "--log-detail",
    "-f", render.KEEPALIVED_CONF, "-p", names.KEEPALIVED_PIDFILE, "-r", "/run/vrrp.pid",
    "-c", "/run/checkers.pid"), "keepalived VRRP daemon", (names.KEEPALIVED_DUMP_DIR,))
APISERVER = Unit(names.APISERVER_UNIT, ("/usr/sbin/nginx", "-c", render.APISERVER_CONF,
                                    "-g", "daemon off;"),
                 "kube-apiserver stand-in (nginx)")
INGRESS = Unit(names.INGRESS_UNIT, ("/usr/sbin/nginx", "-c", render.INGRESS_CONF,
                                   "-g", "daemon off;"),
               "ingress controller stand-in (nginx)")
# HAProxy's exit pushed to keepalived (keepalived.track_file): HAProxy run with the watcher's
# FIFO as fd 3, which it keeps until it dies. A shell opens it and execs HAProxy, so the
# unit's main process is HAProxy on every service manager (a fault's signal reaches it).
# `&&`: HAProxy never starts on a FIFO that could not be made (the watcher would be blind).
_FIFO = names.HAPROXY_ALIVE_FIFO
HAPROXY_WATCHED = replace(HAPROXY, argv=(
    "/bin/sh", "-c", f"[ -p {_FIFO} ] || mkfifo {_FIFO} 2>/dev/null || [ -p {_FIFO} ] && "
    f"exec {shlex.join(HAPROXY.argv)} 3<>{_FIFO}"))
# keepalived.vip_on_loopback: the VIP on lo and ARP answered per NIC, set up each time
# keepalived starts (on a VM's boot too), then keepalived itself: still the main process.
# /proc rather than sysctl(8): nothing beyond the shell needed on a minimal VM.
_LOOPBACK_VIP = ("echo 1 > /proc/sys/net/ipv4/conf/all/arp_ignore && "
                 "echo 2 > /proc/sys/net/ipv4/conf/all/arp_announce && "
                 "ip addr replace {vip}/32 dev lo scope host && exec {argv}")


def haproxy_unit(topo: Topology) -> Unit:
    """HAProxy's unit for this lab: with the watcher's FIFO where keepalived follows it."""
    return HAPROXY_WATCHED if topo.keepalived.track_file is not None else HAPROXY


def keepalived_unit(topo: Topology) -> Unit:
    """keepalived's unit for this lab: Debian's daemon, behind the loopback VIP's set-up
    where the lab asks for it."""
    if not topo.keepalived.vip_on_loopback:
        return KEEPALIVED
    return replace(KEEPALIVED, argv=("/bin/sh", "-c", _LOOPBACK_VIP.format(
        vip=topo.vip, argv=shlex.join(KEEPALIVED.argv))))


HAPROXY_WATCH = Unit(names.HAPROXY_WATCH_UNIT, ("/bin/sh", names.HAPROXY_WATCH_SH),
                     "tells keepalived when HAProxy exits and when it listens")

@dataclass(frozen=True)
class File:
    path: str
    content: str | bytes
    mode: int = 0o644


@dataclass
class Service:
    """A daemon of a role, with its files, the command that validates them and the TCP
    ports it listens on once it is ready."""

    unit: Unit
    files: list[File]
    validate: str | None = None
    ports: tuple[int, ...] = ()


# How long a daemon that runs may take to listen: nginx and HAProxy bind in milliseconds,
# a loaded machine or an emulated VM makes it a second or two.
LISTEN_TIMEOUT_S = 20.0


@dataclass
class Change:
    node: str
    changed_files: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changed_files or self.restarted or self.started or self.removed)


def loadbalancer(topo: Topology, node: Node, pki: LabPki) -> list[Service]:
    watched = topo.keepalived.track_file is not None
    return [
        # Not `-q`: it silences HAProxy's ALERTs too, which are what a failure must show.
        Service(haproxy_unit(topo),
                [File(render.HAPROXY_CFG, render.haproxy_cfg(topo))],
                f"haproxy -c -f {render.HAPROXY_CFG}", tuple(sorted(names.PORTS.values()))),
        # Before keepalived: its track file says whether HAProxy serves when keepalived starts.
        *([Service(HAPROXY_WATCH, [File(names.HAPROXY_WATCH_SH, render.haproxy_watch_sh(topo),
                                        0o755)], f"sh -n {names.HAPROXY_WATCH_SH}")]
          if watched else []),
        Service(keepalived_unit(topo), [File(render.KEEPALIVED_CONF,
                                  render.keepalived_conf(topo, node.spec)), *_check_script(topo)],
                f"keepalived -t -f {render.KEEPALIVED_CONF}"),
    ]


def _check_script(topo: Topology) -> list[File]:
    """The kubeadm guide's check script, where keepalived's check runs it (kubeadm-guide)."""
    check = topo.keepalived.check
    if check is None or check.script.split()[0] != names.CHECK_APISERVER_SH:
        return []
    return [File(names.CHECK_APISERVER_SH, render.check_apiserver_sh(topo), 0o755)]


def control_plane(topo: Topology, node: Node, pki: LabPki) -> list[Service]:
    crt, key = pki.apiserver(node.spec)
    return [Service(APISERVER, [
        File(f"{render.PKI_DIR}/ca.crt", pki.ca()),
        File(f"{render.PKI_DIR}/apiserver.crt", crt),
        File(f"{render.PKI_DIR}/apiserver.key", key, 0o600),
        File(render.APISERVER_CONF, render.apiserver_conf(topo, node.spec)),
    ], f"nginx -t -q -c {render.APISERVER_CONF}", (names.API_PORT,))]


def ingress(topo: Topology, node: Node, pki: LabPki) -> list[Service]:
    crt, key = pki.ingress(node.spec)
    return [Service(INGRESS, [
        File(f"{render.PKI_DIR}/ingress.crt", crt),
        File(f"{render.PKI_DIR}/ingress.key", key, 0o600),
        File(render.INGRESS_CONF, render.ingress_conf(topo, node.spec)),
    ], f"nginx -t -q -c {render.INGRESS_CONF}", (names.PORTS[names.HTTP_PROXY],
                                                names.PORTS[names.INGRESS_PROXY]))]


ROLES: dict[Role, Callable[[Topology, Node, LabPki], list[Service]]] = {
    # Order matters: HAProxy must listen before keepalived's check can pass.
    Role.CONTROL_PLANE: control_plane,
    Role.INGRESS: ingress,
    Role.LOADBALANCER: loadbalancer,
}


def services_for(topo: Topology, node: Node, pki: LabPki) -> list[Service]:
    out: list[Service] = []
    for role, make in ROLES.items():
        if role is Role.CONTROL_PLANE and topo.kubernetes.control_plane == "kubeadm":
            continue  # a real control plane: provision.kubeadm, not a stand-in
        if node.has(role):
            out += make(topo, node, pki)
    return out


def keep_copy(rendered: Path, svc: Service) -> None:
    """What was sent to the node, kept in the state folder (keys excepted): a person can
    read and diff the deployed configs without logging in."""
    for f in svc.files:
        if f.mode & 0o077 == 0:
            continue  # private keys stay on the node and in pki/
        dest = rendered / f.path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(f.content.encode() if isinstance(f.content, str) else f.content)


def wait_listening(node: Node, ports: list[tuple[str, int]]) -> None:
    """Until every daemon accepts connections on its ports ((unit, port) pairs). A daemon
    runs (its process exists) before it listens: HAProxy's first check of a master comes
    as soon as HAProxy starts, and one refused check marks a fresh server DOWN for rise x
    inter (4 s with the guide's checks)."""
    if not ports:
        return
    # One round trip for every port: exit 0 only when each has a listening socket.
    test = " && ".join(f'[ -n "$(ss -Hltn "sport = :{p}")" ]' for _, p in ports)
    units = sorted({u for u, _ in ports})
    try:
        until(f"{', '.join(units)} to listen on {node.name}", lambda: node.run(test).ok,
              timeout=LISTEN_TIMEOUT_S, interval=0.05)
    except HalabError as e:
        where = ", ".join(f"{u} :{p}" for u, p in ports)
        raise HalabError(
            f"{node.name}: the daemons run but do not all listen ({where}): {e}. Their logs "
            f"say why: on the embedded lab in .halab/<name>/nodes/{node.name}/logs/, on a "
            "VM `journalctl -u UNIT`.") from None


def apply(topo: Topology, node: Node, pki: LabPki, rendered: Path | None = None,
          before_start: Callable[[], None] = lambda: None) -> Change:
    """Bring one node to its roles' desired state. Files are written and validated first;
    ``before_start`` is called once before the first daemon is started or restarted
    (a load balancer waits there for the masters it will check)."""
    change = Change(node.name)
    todo: list[tuple[Service, bool]] = []  # (service, running) that need a (re)start
    services = services_for(topo, node, pki)
    # A unit of an earlier provisioning that this one's roles no longer have (a node's disk
    # outlives `halab down`: the fast profile's haproxy-watch on a lab brought up again with
    # the seed's) is stopped and removed, or the lab would never be steady.
    wanted = {svc.unit.name for svc in services} | {names.SSH_UNIT}
    for stale in sorted(set(node.services.installed()) - wanted):
        node.services.uninstall(stale)
        change.removed.append(stale)
    with span(f"{node.name}: files written and validated"):
        # Every unit at once: on a VM each batch of units costs a systemd reload.
        new_units = set(node.services.install_many([svc.unit for svc in services]))
        for svc in services:
            if rendered is not None:
                keep_copy(rendered, svc)
            written = node.put_many((f.path, f.content, f.mode) for f in svc.files)
            if svc.unit.name in new_units:
                written.append(f"(unit {svc.unit.name})")
            change.changed_files += written
            running = node.services.status(svc.unit.name).active
            if running and not written:
                continue
            if svc.validate:
                r = node.run(svc.validate)
                if not r.ok:
                    raise HalabError(
                        f"{node.name}: {svc.unit.name}'s configuration is invalid; "
                        f"`{svc.validate}` said:\n{(r.stderr or r.stdout).strip()}\nThe "
                        "daemon was left as it was. Fix the setting in lab.yaml (or the "
                        "template) and provision again.")
            todo.append((svc, running))
    if todo:
        before_start()
    with span(f"{node.name}: {', '.join(svc.unit.name for svc, _ in todo) or 'nothing'} "
              "started and listening"):
        # In the roles' order, each started as soon as the one before runs (as systemd
        # does); then every port they listen on, in one wait.
        for svc, running in todo:
            if not running:
                node.services.start(svc.unit.name)
                change.started.append(svc.unit.name)
            else:
                node.services.restart(svc.unit.name)
                change.restarted.append(svc.unit.name)
        wait_listening(node, [(svc.unit.name, p) for svc, _ in todo for p in svc.ports])
    return change
