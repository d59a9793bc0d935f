"""What breaks a lab on purpose, each fault with its undo, and the way back to steady state.

Faults act through the provider (machines, links) and each node's service manager and
transport (daemons, packet filters); they never signal anything but the lab's own
processes. ``CATALOGUE`` names every fault for the CLI (`halab fault`) and the chaos
scenarios; the plain functions below it are what tests call directly.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lab.errors import HalabError, TransportError
from lab.lab import Lab
from lab.topology import Role
from lab.wait import until
from provision import names

ALL_PROVIDERS = frozenset({"netns", "vagrant", "hosts"})
# Only a provider that owns the machines can cut their power, freeze them or pull a cable.
MACHINE_PROVIDERS = frozenset({"netns", "vagrant"})
# nftables tables the faults add inside a node; their names make them findable by restore().
PARTITION_TABLE = "halab-partition"
LOSS_TABLE = "halab-loss"


class FaultUnavailable(HalabError):
    """The fault cannot be expressed on this lab (provider or kernel lacks what it needs)."""


# -- daemons -----------------------------------------------------------------------------
# Daemons whose children outlive their main process: keepalived's VRRP and checker
# children take ~1 s to shut down after their parent is gone, and a keepalived started
# meanwhile exits at once ("daemon is already running").
LINGERING_CHILDREN = (names.KEEPALIVED_UNIT,)


def _gone(lab: Lab, node: str, service: str) -> None:
    """Until the daemon is gone from the node: its main process, then (for a daemon with
    lingering children) every process of that name in the node's own process table."""
    n = lab.node(node)
    until(f"{service} to exit on {node}", lambda: not n.services.status(service).active,
          timeout=10, interval=0.01)
    if service in LINGERING_CHILDREN:
        until(f"the last {service} process to exit on {node}",
              lambda: n.run("pgrep -x %s", service).rc == 1, timeout=10, interval=0.05)


def kill(lab: Lab, node: str, service: str, sig: signal.Signals = signal.SIGKILL) -> float:
    """Signal a daemon's main process (SIGKILL: it crashes; SIGTERM: it shuts down); for
    these two, return once it is gone. Returns when the signal took effect (this host's
    monotonic clock): the moment a failover is timed from."""
    at = lab.node(node).services.kill(service, sig)
    if sig in (signal.SIGKILL, signal.SIGTERM):
        _gone(lab, node, service)
    return at


def stop(lab: Lab, node: str, service: str) -> None:
    lab.node(node).services.stop(service)
    _gone(lab, node, service)


def start(lab: Lab, node: str, service: str) -> float | None:
    """Start a daemon that is not running (a no-op for one that is). Returns when the start
    took effect on the node (this host's monotonic clock) where the node's clock says so
    (VMs, hosts); None where the harness's own time is as good (namespaces)."""
    n = lab.node(node)
    if n.services.status(service).active:
        return None
    if service in LINGERING_CHILDREN:
        until(f"the last {service} process to exit on {node}",
              lambda: n.run("pgrep -x %s", service).rc == 1, timeout=10, interval=0.1)
    return n.services.start(service)


def restart(lab: Lab, node: str, service: str) -> None:
    lab.node(node).services.restart(service)


# -- machines and links ------------------------------------------------------------------
def crash(lab: Lab, node: str) -> None:
    """Power cut: the node's link drops and every process of it is gone at once."""
    lab.node(node).close()
    lab.provider.crash(node)


def boot(lab: Lab, node: str) -> None:
    lab.provider.boot(node)


def freeze(lab: Lab, node: str) -> None:
    """Every process of the node stopped (SIGSTOP / VM suspend): alive but silent."""
    lab.provider.freeze(node)


def thaw(lab: Lab, node: str) -> None:
    lab.provider.thaw(node)


def node_return(lab: Lab, node: str) -> str:
    """Bring a node back from whatever state a fault left it in; return what was done."""
    st = lab.provider.node_state(node)
    if st == "frozen":
        lab.provider.thaw(node)
        st = lab.provider.node_state(node)
    if st == "crashed":
        lab.node(node).close()
        lab.provider.boot(node)
        return "booted"
    if st == "link-down":
        lab.provider.link_up(node)
        return "link up"
    return "thawed" if st == "running" else st


def link_down(lab: Lab, node: str) -> None:
    lab.provider.link_down(node)


def link_up(lab: Lab, node: str) -> None:
    lab.provider.link_up(node)


# -- the network, from inside the nodes (any provider) -----------------------------------
def partition(lab: Lab, a: str, b: str) -> None:
    """Cut a and b off from each other only; both still reach (and are reached by) the rest.

    nftables rather than blackhole routes: keepalived sends VRRP on a socket bound to its
    interface, and such sends skip a blackhole route (measured: no split brain with routes).
    """
    na, nb = _machine(lab, a), _machine(lab, b)
    for me, peer in ((na, nb), (nb, na)):
        me.check_output(
            "nft -f - <<'EOF'\n"
            f"table inet {PARTITION_TABLE} {{}}\n"
            f"delete table inet {PARTITION_TABLE}\n"
            f"table inet {PARTITION_TABLE} {{\n"
            f"  chain in {{ type filter hook input priority -10;"
            f" ip saddr {peer.address} drop; }}\n"
            f"  chain out {{ type filter hook output priority -10;"
            f" ip daddr {peer.address} drop; }}\n"
            "}\nEOF")


def heal(lab: Lab, *nodes: str) -> None:
    """Remove the partition rules from the nodes (all of them when none is named)."""
    for name in nodes or _impairable(lab):
        _machine(lab, name).run("nft delete table inet %s 2>/dev/null; true", PARTITION_TABLE)


def _netem(lab: Lab, node: str, what: str, args: str) -> None:
    n = _machine(lab, node)
    iface = lab.topo.network.interface
    # `%` in "loss 10%" must survive run()'s %-formatting of the quoted arguments.
    r = n.run("tc qdisc replace dev %s root netem " + args.replace("%", "%%"), iface)
    if r.ok:
        return
    if "unknown" in r.stderr.lower() or "no such file" in r.stderr.lower():
        raise FaultUnavailable(
            f"{what} needs tc netem, and the kernel of {node} has no netem qdisc (`tc qdisc "
            f"replace dev {iface} root netem {args}` says: {r.stderr.strip()}). Load it "
            "(`modprobe sch_netem`, package linux-modules-extra on some distributions) or "
            "run the lab on a kernel that has it.")
    r.expect(node)


def loss(lab: Lab, node: str, percent: float) -> str:
    """Drop ``percent`` % of what the node sends on its lab NIC; return the mechanism used.

    tc netem when the kernel has it; otherwise an nftables rule that drops the same share
    at random (SSH replies exempt, so the harness can still reach the node to undo it)."""
    if not 0 < percent <= 100:
        raise HalabError(f"loss percent must be in (0, 100], got {percent}")
    try:
        _netem(lab, node, "packet loss", f"loss {percent:g}%")
        return "netem"
    except FaultUnavailable:
        pass
    n = _machine(lab, node)
    iface = lab.topo.network.interface
    n.check_output(
        "nft -f - <<'EOF'\n"
        f"table inet {LOSS_TABLE} {{}}\n"
        f"delete table inet {LOSS_TABLE}\n"
        f"table inet {LOSS_TABLE} {{\n"
        "  chain out {\n"
        "    type filter hook output priority -5;\n"
        "    tcp sport 22 accept\n"
        f"    oifname \"{iface}\" numgen random mod 10000 < {round(percent * 100)} drop\n"
        "  }\n"
        "}\nEOF")
    return "nftables"


def delay(lab: Lab, node: str, ms: float, jitter_ms: float = 0) -> None:
    """Delay what the node sends on its lab NIC (tc netem; there is no other way)."""
    if ms <= 0 or jitter_ms < 0:
        raise HalabError(f"delay needs ms > 0 and jitter_ms >= 0, got {ms} and {jitter_ms}")
    jitter = f" {jitter_ms:g}ms distribution normal" if jitter_ms else ""
    _netem(lab, node, "delay and jitter", f"delay {ms:g}ms{jitter}")


def unimpair(lab: Lab, *nodes: str) -> None:
    """Remove netem and the loss rule from the nodes (all of them when none is named)."""
    iface = lab.topo.network.interface
    for name in nodes or _impairable(lab):
        _machine(lab, name).run(
            "tc qdisc show dev %s | grep -q netem && tc qdisc del dev %s root; "
            "nft delete table inet %s 2>/dev/null; true", iface, iface, LOSS_TABLE)


def impairments(lab: Lab, node: str) -> list[str]:
    """The faults of this module still active on a node (netem, loss rule, partition)."""
    n = lab.node(node)
    out = n.run("tc qdisc show dev %s | grep -o netem; nft list tables 2>/dev/null; true",
                lab.topo.network.interface).stdout
    found = []
    if "netem" in out.split():
        found.append("tc netem")
    for table in (LOSS_TABLE, PARTITION_TABLE):
        if table in out:
            found.append(f"nft table {table}")
    return found


def _machine(lab: Lab, name: str):  # noqa: ANN202 - a Node
    node = lab.node(name)
    if not node.managed:
        raise HalabError(f"{name} is the operator's desk (the client), not a lab machine; "
                         "name a load balancer or a master")
    return node


def _impairable(lab: Lab) -> list[str]:
    return [n for n, node in lab.nodes.items()
            if node.managed and lab.provider.node_state(n) == "running"]


# -- the catalogue -----------------------------------------------------------------------
Params = Mapping[str, object]
Action = Callable[[Lab, list[str], Params], None]


@dataclass(frozen=True)
class Fault:
    """A named fault: what it does, to which nodes, how it is undone, where it works."""

    name: str
    summary: str
    inject: Action
    undo: Action
    undo_summary: str
    nodes: str = "one or more lab machines"  # what NODE... means, for help and errors
    min_nodes: int = 1
    max_nodes: int | None = None
    params: dict[str, object] = field(default_factory=dict)  # accepted, with defaults
    providers: frozenset[str] = ALL_PROVIDERS
    role: Role | None = None  # every node named must have it

    def resolve(self, lab: Lab, nodes: list[str], params: Params) -> tuple[list[str], dict]:
        """Validate nodes and params for this lab; fill in defaults."""
        if lab.provider.name not in self.providers:
            raise FaultUnavailable(
                f"fault '{self.name}' cannot be expressed with the {lab.provider.name} "
                f"provider (it works with: {', '.join(sorted(self.providers))})")
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            accepted = ", ".join(f"{k}={v}" for k, v in self.params.items()) or "none"
            raise HalabError(f"fault '{self.name}' takes no parameter {', '.join(unknown)}; "
                             f"it accepts: {accepted}")
        merged = {**self.params, **params}
        missing = [k for k, v in merged.items() if v is None]
        if missing:
            raise HalabError(f"fault '{self.name}' needs {', '.join(missing)}: e.g. "
                             f"`halab fault {self.name} NODE -p {missing[0]}=...`")
        for k, default in self.params.items():
            if isinstance(default, int | float) and not isinstance(merged[k], int | float):
                try:
                    merged[k] = float(str(merged[k]))
                except ValueError:
                    raise HalabError(f"fault '{self.name}': {k} must be a number, got "
                                     f"{merged[k]!r}") from None
        if len(nodes) < self.min_nodes or (self.max_nodes is not None
                                           and len(nodes) > self.max_nodes):
            raise HalabError(f"fault '{self.name}' takes {self.nodes}; got "
                             f"{len(nodes)} node(s): {' '.join(nodes) or '(none)'}")
        for n in nodes:
            node = lab.node(n)  # a clear error for an unknown name
            if self.role is not None and not node.has(self.role):
                raise HalabError(f"fault '{self.name}' takes {self.nodes}; {n} has no "
                                 f"{self.role.value} role")
        return nodes, merged


def _each(fn: Callable[..., object], *keys: str) -> Action:
    def act(lab: Lab, nodes: list[str], p: Params) -> None:
        for n in nodes:
            fn(lab, n, *(p[k] for k in keys))
    return act


def _services(lab: Lab, node: str, service: object) -> list[str]:
    installed = _machine(lab, node).services.installed()
    wanted = ([u for u in names.NGINX_UNITS if u in installed] if service == "nginx"
              else [str(service)])
    for s in wanted:
        if s not in installed:
            raise HalabError(f"{node} has no service '{s}'; it has: {', '.join(installed)} "
                             "(`nginx` names every nginx stand-in of a master)")
    if not wanted:
        raise HalabError(f"{node} runs no nginx; it has: {', '.join(installed)}")
    return wanted


def _service_action(how: Callable[[Lab, str, str], None]) -> Action:
    def act(lab: Lab, nodes: list[str], p: Params) -> None:
        for n in nodes:
            for s in _services(lab, n, p["service"]):
                how(lab, n, s)
    return act


def _start_if_stopped(lab: Lab, node: str, service: str) -> None:
    start(lab, node, service)  # a no-op for a running daemon


def _apiservers(lab: Lab, nodes: list[str], p: Params) -> list[str]:
    names = nodes or [m.name for m in lab.masters][: int(float(str(p["count"])))]
    if not nodes and int(float(str(p["count"]))) > len(lab.masters):
        raise HalabError(f"count={p['count']} but the lab has {len(lab.masters)} API servers")
    return names


def _apiservers_down(lab: Lab, nodes: list[str], p: Params) -> None:
    for n in _apiservers(lab, nodes, p):
        kill(lab, n, names.APISERVER_UNIT)


def _apiservers_up(lab: Lab, nodes: list[str], p: Params) -> None:
    for n in _apiservers(lab, nodes, p):
        start(lab, n, names.APISERVER_UNIT)


def _partition(lab: Lab, nodes: list[str], p: Params) -> None:
    partition(lab, nodes[0], nodes[1])


def _heal(lab: Lab, nodes: list[str], p: Params) -> None:
    heal(lab, *nodes)


def _loss(lab: Lab, nodes: list[str], p: Params) -> None:
    for n in nodes:
        loss(lab, n, float(str(p["percent"])))


def _delay(lab: Lab, nodes: list[str], p: Params) -> None:
    for n in nodes:
        delay(lab, n, float(str(p["ms"])), float(str(p["jitter_ms"])))


def _unimpair(lab: Lab, nodes: list[str], p: Params) -> None:
    unimpair(lab, *nodes)


def _nothing(lab: Lab, nodes: list[str], p: Params) -> None:
    pass


SERVICE = {"service": None}
CATALOGUE: dict[str, Fault] = {f.name: f for f in [
    Fault("kill", "SIGKILL a daemon (haproxy, keepalived, kube-apiserver, ingress; nginx = "
          "both stand-ins): it crashes", _service_action(kill), _service_action(start),
          "start it again", params=SERVICE),
    Fault("stop", "stop a daemon gracefully (SIGTERM, SIGKILL after 10 s)",
          _service_action(stop), _service_action(start), "start it again", params=SERVICE),
    Fault("restart", "restart a daemon (stop, then start)", _service_action(restart),
          _service_action(_start_if_stopped), "make sure it runs", params=SERVICE),
    Fault("crash", "power cut: link down and every process of the node killed at once",
          _each(crash), _each(node_return), "boot it (its disk as it was)",
          providers=MACHINE_PROVIDERS),
    Fault("freeze", "freeze the node (SIGSTOP of every process / VM suspend)", _each(freeze),
          _each(thaw), "thaw it", providers=MACHINE_PROVIDERS),
    Fault("return", "node return: bring a crashed, frozen or cut-off node back",
          _each(node_return), _nothing, "nothing (it is itself an undo)",
          providers=MACHINE_PROVIDERS),
    Fault("link-down", "pull the node's lab cable (processes go on, packets go nowhere)",
          _each(link_down), _each(link_up), "plug it back", providers=MACHINE_PROVIDERS),
    Fault("partition", "cut two nodes off from each other only (lb01 <-> lb02: split brain)",
          _partition, _heal, "heal the partition", nodes="exactly two lab machines",
          min_nodes=2, max_nodes=2),
    Fault("loss", "drop a share of the packets the node sends (tc netem; nftables random "
          "drop where the kernel has no netem)", _loss, _unimpair, "remove netem / the rule",
          params={"percent": 10.0}),
    Fault("delay", "delay the packets the node sends, with optional jitter (tc netem)",
          _delay, _unimpair, "remove netem", params={"ms": 100.0, "jitter_ms": 0.0}),
    Fault("jitter", "delay with jitter (tc netem, normal distribution)", _delay, _unimpair,
          "remove netem", params={"ms": 50.0, "jitter_ms": 25.0}),
    Fault("apiservers-down", "SIGKILL the API server on N masters (the first `count`, or "
          "the masters named)", _apiservers_down, _apiservers_up, "start them again",
          nodes="no node (count=N) or masters", min_nodes=0, params={"count": 1},
          role=Role.CONTROL_PLANE),
    Fault("ingress-down", "SIGKILL the ingress on a master", _each(kill, "service"),
          _each(start, "service"), "start it again", nodes="one or more ingress nodes",
          params={"service": names.INGRESS_UNIT}, role=Role.INGRESS),
]}


def fault(name: str) -> Fault:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise HalabError(f"no fault named '{name}'; `halab fault --list` shows the catalogue: "
                         + ", ".join(CATALOGUE)) from None


def inject(lab: Lab, name: str, nodes: list[str], params: Params | None = None) -> None:
    f = fault(name)
    nodes, merged = f.resolve(lab, list(nodes), params or {})
    f.inject(lab, nodes, merged)


def undo(lab: Lab, name: str, nodes: list[str], params: Params | None = None) -> None:
    f = fault(name)
    nodes, merged = f.resolve(lab, list(nodes), params or {})
    f.undo(lab, nodes, merged)


# -- the way back ---------------------------------------------------------------------------
def restore(lab: Lab) -> list[str]:
    """Undo whatever a test or a chaos run left broken; return what was done."""
    done = []
    touched: set[str] = set()  # nodes whose SSH connection may have died under them
    for name in lab.nodes:
        st = lab.provider.node_state(name)
        if st == "frozen":
            lab.provider.thaw(name)
            done.append(f"thawed {name}")
            touched.add(name)
            st = lab.provider.node_state(name)
        if st == "crashed":
            lab.node(name).close()
            lab.provider.boot(name)
            done.append(f"booted {name}")
            touched.add(name)
        elif st == "link-down":
            lab.provider.link_up(name)
            done.append(f"link up on {name}")
            touched.add(name)

    def one(name: str) -> list[str]:
        node, did = lab.node(name), []
        # Daemons first: sshd among them is the way in for what follows.
        for svc in node.services.installed():
            if not node.services.status(svc).active:
                start(lab, name, svc)
                did.append(f"started {svc} on {name}")
        if did or name in touched:
            node.close()  # a connection to an sshd that was killed (or stopped) is dead
        try:
            active = impairments(lab, name)
        except TransportError:
            # A connection that died without a trace here (sshd killed and started again
            # within a test): once more, on a new one. A second failure is real.
            node.close()
            active = impairments(lab, name)
        if active:
            unimpair(lab, name)
            heal(lab, name)
            did.append(f"removed {', '.join(active)} on {name}")
        return did

    # Node by node, side by side: each is a few SSH round trips, mostly waiting.
    managed = [name for name, node in lab.nodes.items() if node.managed]
    with ThreadPoolExecutor(max(1, len(managed)), thread_name_prefix="restore") as pool:
        for did in pool.map(one, managed):
            done += did
    return done
