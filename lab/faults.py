"""What breaks a lab on purpose, each fault with its undo, and the way back to steady state.

Faults act through the provider (machines, links) and each node's service manager and
transport (daemons, packet filters); they never signal anything but the lab's own
processes. ``CATALOGUE`` names every fault for the CLI (`halab fault`) and the chaos
scenarios; the plain functions below it are what tests call directly.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lab import inputs
from lab.errors import HalabError, TransportError
from lab.lab import Lab
from lab.topology import Role, Topology
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


# -- what a fault accepts -----------------------------------------------------------------
Params = Mapping[str, object]
Action = Callable[[Lab, list[str], Params], None]


@dataclass(frozen=True)
class Number:
    """A numeric parameter: finite, within [lo, hi] (lo excluded when ``lo_open``), whole
    when ``integer``; ``why`` says where the bounds come from."""

    lo: float
    hi: float
    why: str
    integer: bool = False
    lo_open: bool = False

    def check(self, fault: str, key: str, raw: object) -> float | int:
        shown = inputs.quote(raw)
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise HalabError(f"fault '{fault}': {key} must be a number, got {shown}")
        try:
            x = float(raw) if not isinstance(raw, int) else raw
        except (ValueError, OverflowError):
            raise HalabError(f"fault '{fault}': {key} must be a number, got {shown}") from None
        if isinstance(x, float) and not math.isfinite(x):
            raise HalabError(f"fault '{fault}': {key} must be a finite number, got {shown}")
        below = x <= self.lo if self.lo_open else x < self.lo
        if below or x > self.hi or (self.integer and x != int(x)):
            span = f"{'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}]"
            kind = "a whole number in " if self.integer else ""
            raise HalabError(f"fault '{fault}': {key} must be {kind}{span}, got {shown}: "
                             f"{self.why}")
        return int(x) if self.integer else float(x)


@dataclass(frozen=True)
class OneOf:
    """A parameter that names one of a few things (a daemon): anything else could become
    a path or a command on the node."""

    values: tuple[str, ...]
    why: str

    def check(self, fault: str, key: str, raw: object) -> str:
        if not isinstance(raw, str) or raw not in self.values:
            raise HalabError(f"fault '{fault}': {key} must be one of {', '.join(self.values)}, "
                             f"got {inputs.quote(raw)}: {self.why}")
        return raw


Rule = Number | OneOf
# The daemons a lab runs, by unit name (`nginx`: every nginx stand-in of a master), and the
# embedded lab's sshd, which halab starts from the host (nsenter), so that restore() and an
# undo bring it back without SSH. On VMs sshd is the system's: nothing could start it again.
SERVICES = (names.HAPROXY_UNIT, names.KEEPALIVED_UNIT, names.APISERVER_UNIT,
            names.INGRESS_UNIT, "nginx", names.SSH_UNIT)
SERVICE_RULE = OneOf(SERVICES, "the daemons the lab runs")
# tc netem drops and delays the node's SSH replies too (only the nftables loss rule exempts
# them), and SSH is how an undo, restore() and status reach a VM's daemons and every node's
# packet filters: beyond these bounds the way back is no longer dependable. A total cut is
# `link-down` (or crash, freeze, partition), which does not depend on the node's SSH to undo.
LOSS_RULE = Number(0.01, 50, "at most half (netem drops SSH's replies too; for a total cut "
                   "use link-down, undone without SSH), at least 0.01 (1 packet in 10000, "
                   "what the nftables rule can express)")
DELAY_RULE = Number(0, 1000, "at most a second (netem delays SSH's replies too, and a "
                    "connection must open within 10 s)", lo_open=True)
JITTER_RULE = Number(0, 1000, "at most a second, as the delay")
COUNT_RULE = Number(1, 1000, "how many API servers, at least one (at most the lab's "
                    "masters)", integer=True)
PARAM_KEY = inputs.TOKEN


def parse_params(items: list[str]) -> dict[str, str]:
    """`-p KEY=VALUE` options as a mapping; every malformed item a ``HalabError``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not PARAM_KEY.fullmatch(key):
            raise HalabError(f"a fault parameter is KEY=VALUE (e.g. `-p service=haproxy`), "
                             f"got {inputs.quote(item)}")
        if key in out:
            raise HalabError(f"fault parameter {key} is given twice; give it once")
        out[key] = value
    return out


def check_params(name: str, params: Params, topo: Topology | None = None) -> dict[str, object]:
    """The parameters of fault ``name``, checked and with defaults filled in, needing no lab
    (chaos scenarios are checked this way when loaded); with ``topo``, also against it."""
    f = fault(name)
    unknown = sorted(str(k) for k in params if k not in f.params)
    if unknown:
        accepted = ", ".join(f"{k}={v}" for k, v in f.params.items()) or "none"
        raise HalabError(f"fault '{f.name}' takes no parameter "
                         f"{', '.join(inputs.quote(k, 30).strip(chr(39)) for k in unknown[:5])};"
                         f" it accepts: {accepted}")
    merged = {**f.params, **params}
    missing = [k for k, v in merged.items() if v is None]
    if missing:
        raise HalabError(f"fault '{f.name}' needs {', '.join(missing)}: e.g. "
                         f"`halab fault {f.name} NODE -p {missing[0]}=...`")
    out = {k: f.rules[k].check(f.name, k, v) for k, v in merged.items()}
    if topo is not None and "count" in out and int(out["count"]) > len(topo.control_planes):
        raise HalabError(f"fault '{f.name}': count={out['count']} but the lab has "
                         f"{len(topo.control_planes)} API servers")
    return out


def check_nodes(name: str, topo: Topology, nodes: list[str]) -> list[str]:
    """The nodes fault ``name`` is aimed at, checked against the lab: known, distinct, as
    many as the fault takes, of its role, and never the client."""
    f = fault(name)
    if len(nodes) < f.min_nodes or (f.max_nodes is not None and len(nodes) > f.max_nodes):
        named = inputs.clip(" ".join(inputs.quote(n) for n in nodes), 200) or "(none)"
        raise HalabError(f"fault '{f.name}' takes {f.nodes}; got {len(nodes)} node(s): {named}")
    twice = sorted({n for n in nodes if nodes.count(n) > 1})
    if twice:
        raise HalabError(f"fault '{f.name}' names {', '.join(inputs.quote(n) for n in twice)} "
                         "more than once; name each "
                         "node once (a partition is between two different nodes)")
    for n in nodes:
        try:
            spec = topo.node(n)
        except KeyError:
            raise HalabError(f"no node {inputs.quote(n)} in lab '{topo.name}'; nodes: "
                             + ", ".join(x.name for x in topo.nodes)) from None
        if Role.CLIENT in spec.roles:
            raise HalabError(f"{n} is the operator's desk (the client), not a lab machine: "
                             "probes, SSH and every undo start there, so no fault is aimed at "
                             "it; name a load balancer or a master")
        if f.role is not None and f.role not in spec.roles:
            raise HalabError(f"fault '{f.name}' takes {f.nodes}; {n} has no {f.role.value} "
                             "role")
    return nodes


# -- the catalogue -----------------------------------------------------------------------


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
    rules: dict[str, Rule] = field(default_factory=dict)  # what each parameter may be
    providers: frozenset[str] = ALL_PROVIDERS
    role: Role | None = None  # every node named must have it

    def resolve(self, lab: Lab, nodes: list[str], params: Params) -> tuple[list[str], dict]:
        """Validate nodes and params for this lab; fill in defaults."""
        if lab.provider.name not in self.providers:
            raise FaultUnavailable(
                f"fault '{self.name}' cannot be expressed with the {lab.provider.name} "
                f"provider (it works with: {', '.join(sorted(self.providers))})")
        merged = check_params(self.name, params, lab.topo)
        if merged.get("service") == names.SSH_UNIT and lab.provider.name != "netns":
            raise HalabError(f"fault '{self.name}' on ssh works on the embedded lab only: on "
                             f"the {lab.provider.name} provider sshd is the node's only way "
                             "in, and nothing could start it again; to make a node unreachable "
                             "use link-down or freeze")
        return check_nodes(self.name, lab.topo, list(nodes)), merged


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
    count = int(str(p["count"]))  # checked by COUNT_RULE: a whole number >= 1
    if not nodes and count > len(lab.masters):
        raise HalabError(f"count={count} but the lab has {len(lab.masters)} API servers")
    return nodes or [m.name for m in lab.masters][:count]


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
SERVICE_RULES: dict[str, Rule] = {"service": SERVICE_RULE}
CATALOGUE: dict[str, Fault] = {f.name: f for f in [
    Fault("kill", "SIGKILL a daemon (haproxy, keepalived, kube-apiserver, ingress; nginx = "
          "both stand-ins): it crashes", _service_action(kill), _service_action(start),
          "start it again", params=SERVICE, rules=SERVICE_RULES),
    Fault("stop", "stop a daemon gracefully (SIGTERM, SIGKILL after 10 s)",
          _service_action(stop), _service_action(start), "start it again", params=SERVICE,
          rules=SERVICE_RULES),
    Fault("restart", "restart a daemon (stop, then start)", _service_action(restart),
          _service_action(_start_if_stopped), "make sure it runs", params=SERVICE,
          rules=SERVICE_RULES),
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
          params={"percent": 10.0}, rules={"percent": LOSS_RULE}),
    Fault("delay", "delay the packets the node sends, with optional jitter (tc netem)",
          _delay, _unimpair, "remove netem", params={"ms": 100.0, "jitter_ms": 0.0},
          rules={"ms": DELAY_RULE, "jitter_ms": JITTER_RULE}),
    Fault("jitter", "delay with jitter (tc netem, normal distribution)", _delay, _unimpair,
          "remove netem", params={"ms": 50.0, "jitter_ms": 25.0},
          rules={"ms": DELAY_RULE, "jitter_ms": JITTER_RULE}),
    Fault("apiservers-down", "SIGKILL the API server on N masters (the first `count`, or "
          "the masters named)", _apiservers_down, _apiservers_up, "start them again",
          nodes="no node (count=N) or masters", min_nodes=0, params={"count": 1},
          rules={"count": COUNT_RULE}, role=Role.CONTROL_PLANE),
    Fault("ingress-down", "SIGKILL the ingress on a master", _each(kill, "service"),
          _each(start, "service"), "start it again", nodes="one or more ingress nodes",
          params={"service": names.INGRESS_UNIT}, role=Role.INGRESS,
          rules={"service": OneOf((names.INGRESS_UNIT,), "this fault takes the ingress down")}),
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
