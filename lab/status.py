"""What `halab status` shows, as plain data: nodes, the VIP holder, HAProxy's backends.

Gathered once and then rendered three ways (a Rich table at a terminal, plain lines in a
pipe, JSON for scripts), so every form says the same thing. A node that could not be asked
keeps its place with the reason in ``error``: a status that silently drops an LB would
read "does not hold the VIP" where the truth is "unknown".
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from lab import observe
from lab import vrrp as lab_vrrp
from lab.errors import HalabError
from lab.lab import Lab
from lab.topology import Role
from lab.vrrp import VrrpState, VrrpUnknown
from provision import names

# Only a running LB is asked about HAProxy: a frozen VM or one cut off would hang the
# query, and its answer would not be what the network sees anyway.
ASKED_STATES = ("running",)
# Daemons are asked wherever the node still exists (a frozen or cut-off netns node still
# answers through its namespace; a VM that does not gets its error recorded).
NO_DAEMONS_STATES = ("crashed", "absent", "unknown")


@dataclass
class Daemon:
    active: bool
    pid: int | None  # as the node sees it


@dataclass
class NodeStatus:
    name: str
    roles: list[str]
    address: str
    state: str  # running, frozen, link-down, crashed, absent, unknown
    holds_vip: bool | None  # None: not a load balancer, or unknown (see error); a down LB
    # (crashed, frozen, cut off) holds nothing the network can see: False
    daemons: dict[str, Daemon] | None  # {}: none managed (the client); None: not asked
    error: str | None = None  # what could not be asked, and why
    # An LB's VRRP instance as its keepalived reports it (lab.vrrp): state, effective
    # priority. None: not an LB, not asked (the node is down, keepalived is not running),
    # or unknown (see error).
    vrrp: VrrpState | None = None


@dataclass
class Server:
    proxy: str
    server: str
    status: str  # HAProxy's word: UP, DOWN, MAINT, "UP 1/2", ...
    up: bool


@dataclass
class Backends:
    servers: list[Server] | None  # None: not asked (see error)
    error: str | None = None


@dataclass
class LabStatus:
    lab: str
    provider: str
    vip: str
    vip_holders: list[str]
    vip_unknown: list[str]  # load balancers whose hold on the VIP is not known
    nodes: list[NodeStatus]
    backends: dict[str, Backends] = field(default_factory=dict)  # by load balancer

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def errors(self) -> list[tuple[str, str]]:
        """(where, what) for everything that could not be asked."""
        out = [(n.name, n.error) for n in self.nodes if n.error]
        out += [(f"{lb} HAProxy", b.error) for lb, b in self.backends.items() if b.error]
        return out


def _why(e: Exception) -> str:
    # A HalabError is written for people already; anything else gets its type as context.
    text = str(e).strip() or "no message"
    return text if isinstance(e, HalabError) else f"{type(e).__name__}: {text}"


def node_status(lab: Lab, name: str) -> NodeStatus:
    spec = lab.topo.node(name)
    errors: list[str] = []
    try:
        state = lab.provider.node_state(name)
    except Exception as e:  # noqa: BLE001 - recorded in the status, not dropped
        state = "unknown"
        errors.append(f"state: {_why(e)}")
    node = lab.node(name)
    holds: bool | None = None
    if Role.LOADBALANCER in spec.roles and state != "unknown":
        # observe's rule, the one every verdict uses: a down LB holds nothing the network
        # can see; a running one that cannot be asked is unknown (None), never "no".
        try:
            holds = observe.holds_vip(lab, name)
        except Exception as e:  # noqa: BLE001 - recorded in the status, not dropped
            errors.append(f"VIP: {_why(e)}")
    daemons: dict[str, Daemon] | None = {}
    if node.managed:
        daemons = None
        if state in NO_DAEMONS_STATES:
            if state != "unknown":  # its error is already there
                errors.append(f"daemons: not asked, the node is {state}")
        else:
            try:
                asked: dict[str, Daemon] = {}
                for s in node.services.installed():
                    st = node.services.status(s)
                    asked[s] = Daemon(st.active, st.pid)
                daemons = asked
            except Exception as e:  # noqa: BLE001
                errors.append(f"daemons: {_why(e)}")
    vrrp: VrrpState | None = None
    keepalived = (daemons or {}).get(names.KEEPALIVED_UNIT)
    if (Role.LOADBALANCER in spec.roles and state == "running"
            and (keepalived is None or keepalived.active)):
        try:
            vrrp = lab_vrrp.ask(lab, name)
        except VrrpUnknown as e:
            errors.append(f"VRRP: {e}")
    return NodeStatus(name, [r.value for r in spec.roles], str(spec.address), state, holds,
                      daemons, "; ".join(errors) or None, vrrp)


def backends_status(lab: Lab, lb: str, state: str) -> Backends:
    if state not in ASKED_STATES:
        return Backends(None, f"not asked, the node is {state}")
    try:
        return Backends([Server(b.proxy, b.server, b.status, b.up)
                         for b in observe.backends(lab, lb)])
    except Exception as e:  # noqa: BLE001
        return Backends(None, _why(e))


def provider_states(lab: Lab) -> dict[str, str]:
    """Every node's state as the provider tells it (no SSH: it cannot hang on a node)."""
    out = {}
    for n in lab.topo.nodes:
        try:
            out[n.name] = lab.provider.node_state(n.name)
        except Exception:  # noqa: BLE001 - a provider that cannot tell says nothing new
            out[n.name] = "unknown"
    return out


def gather(lab: Lab) -> LabStatus:
    """Ask every node; one that cannot answer is reported as such, never left out.

    Each node over its own transport, all at once: a round trip costs ~0.17 s, and
    `halab watch` asks again every few seconds."""
    _ = lab.nodes  # every Node made here: the threads below only read the cache
    with ThreadPoolExecutor(len(lab.topo.nodes)) as pool:
        nodes = list(pool.map(lambda n: node_status(lab, n.name), lab.topo.nodes))
        by_name = {n.name: n for n in nodes}
        lbs = [n.name for n in lab.topo.load_balancers]
        backends = dict(zip(lbs, pool.map(lambda lb: backends_status(lab, lb,
                                                                     by_name[lb].state), lbs),
                            strict=True))
    return LabStatus(
        lab=lab.topo.name, provider=lab.provider.name, vip=lab.vip,
        vip_holders=[lb for lb in lbs if by_name[lb].holds_vip],
        vip_unknown=[lb for lb in lbs if by_name[lb].holds_vip is None],
        nodes=nodes, backends=backends)
