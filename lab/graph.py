"""The lab as a picture: who talks to whom, drawn from lab.yaml, optionally with what a
running lab says about itself laid over it.

``build(topo)`` is the topology alone (no root, no lab: a handout for a class);
``build(topo, status, probes)`` marks every node and edge with what was observed. One
``Graph`` is drawn three ways: a terminal drawing (``to_rich``, also inside `halab
watch`), Graphviz DOT and Mermaid (for documents, wikis and slides).

An overlay never guesses: what could not be asked is ``unknown``, drawn as such, and a
load balancer that is down forwards nothing (its edges are ``off``), which is not the same
as a backend that its HAProxy reports DOWN.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from rich.align import Align
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from lab.errors import HalabError, PrerequisiteError
from lab.observe import DOWN_STATES
from lab.probes import Record
from lab.status import LabStatus, NodeStatus
from lab.topology import Node as NodeSpec
from lab.topology import Role, Topology
from provision import names

# The probe kinds a client view shows, with the port each one goes to through the VIP.
PROBE_KINDS = {"api": names.PORTS[names.API_PROXY], "https": names.PORTS[names.INGRESS_PROXY],
               "http": names.PORTS[names.HTTP_PROXY]}
# Node states in which a load balancer forwards nothing: observe's, where it holds nothing.
NOT_FORWARDING = DOWN_STATES


class State(StrEnum):
    """What an overlay says about a node or an edge."""

    STATIC = ""  # no overlay: the topology alone
    OK = "ok"  # observed, and as provisioned
    IDLE = "idle"  # observed, fine, standing by (a backup LB, the VIP edge it does not hold)
    DOWN = "down"  # observed broken: a node down, a daemon stopped, a backend DOWN, a failed probe
    OFF = "off"  # carries nothing because the node at its end is down
    UNKNOWN = "unknown"  # could not be asked


class Kind(StrEnum):
    CLIENT = "client"
    VIP = "vip"
    LOADBALANCER = "loadbalancer"
    BACKEND = "backend"


@dataclass(frozen=True)
class GNode:
    id: str
    title: str
    kind: Kind
    lines: tuple[str, ...]  # from lab.yaml: address, VRRP role, what it serves
    state: State = State.STATIC
    notes: tuple[str, ...] = ()  # from the overlay: what was observed


@dataclass(frozen=True)
class GEdge:
    src: str
    dst: str
    label: str
    state: State = State.STATIC
    vrrp: bool = False  # the LBs' VRRP conversation, not traffic


@dataclass
class Graph:
    title: str
    tiers: list[list[GNode]]  # top to bottom: client, VIP, load balancers, backends
    edges: list[GEdge] = field(default_factory=list)
    live: bool = False
    lan: str = ""  # the switch every node hangs on, drawn around them all

    @property
    def nodes(self) -> list[GNode]:
        return [n for tier in self.tiers for n in tier]

    def node(self, id_: str) -> GNode:
        return next(n for n in self.nodes if n.id == id_)

    def edge(self, src: str, dst: str) -> GEdge:
        return next(e for e in self.edges if (e.src, e.dst) == (src, dst))


VIP_ID = "vip"


# -- what a backend serves, as lab.yaml says ---------------------------------------------------
def _proxies_of(node: NodeSpec) -> list[str]:
    """The HAProxy proxies that forward to ``node``, in the order the probes go."""
    out = []
    if Role.CONTROL_PLANE in node.roles:
        out.append(names.API_PROXY)
    if Role.INGRESS in node.roles:
        out += [names.INGRESS_PROXY, names.HTTP_PROXY]
    return out


def _backends(topo: Topology) -> list[NodeSpec]:
    return [n for n in topo.nodes if Role.LOADBALANCER not in n.roles
            and (Role.CONTROL_PLANE in n.roles or Role.INGRESS in n.roles)]


def _ports(proxies: list[str]) -> str:
    return " ".join(f":{names.PORTS[p]}" for p in proxies)


# -- the overlay -------------------------------------------------------------------------------
def _node_state(ns: NodeStatus) -> tuple[State, list[str]]:
    """A node's state and notes from its status: down beats unknown beats ok."""
    notes: list[str] = []
    if ns.state == "unknown":
        return State.UNKNOWN, [f"state unknown: {ns.error}" if ns.error else "state unknown"]
    if ns.state != "running":
        return State.DOWN, [ns.state]
    state = State.OK
    if ns.daemons is None:
        state = State.UNKNOWN
        notes.append("daemons: ?")
    else:
        stopped = [d for d, st in ns.daemons.items() if not st.active]
        if stopped:
            state = State.DOWN
            notes.append(f"stopped: {', '.join(stopped)}")
    if ns.error and state is State.OK:
        state = State.UNKNOWN
    if ns.error:
        notes.append(f"could not be asked: {ns.error}")
    return state, notes


def _vip_state(status: LabStatus) -> tuple[State, list[str]]:
    if len(status.vip_holders) > 1:
        return State.DOWN, [f"split brain: {', '.join(status.vip_holders)}"]
    if status.vip_unknown:
        held = f"on {status.vip_holders[0]}, " if status.vip_holders else ""
        return State.UNKNOWN, [f"{held}unknown on {', '.join(status.vip_unknown)}"]
    if not status.vip_holders:
        return State.DOWN, ["held by no load balancer"]
    return State.OK, [f"on {status.vip_holders[0]}"]


def _probe_state(probes: Mapping[str, Record | None]) -> tuple[State, str]:
    parts, states = [], []
    for kind, rec in probes.items():
        if rec is None:
            parts.append(f"{kind} ?")
            states.append(State.UNKNOWN)
        elif rec.ok:
            parts.append(f"{kind} ok")
            states.append(State.OK)
        else:
            parts.append(f"{kind} FAIL")
            states.append(State.DOWN)
    state = (State.DOWN if State.DOWN in states else State.UNKNOWN if State.UNKNOWN in states
             else State.OK)
    return state, " · ".join(parts)


def _backend_edge(status: LabStatus, lb: str, node: NodeSpec) -> tuple[State, str]:
    """What ``lb``'s HAProxy says of ``node``'s servers: UP, DOWN (which ports), unknown."""
    proxies = _proxies_of(node)
    lb_status = next(n for n in status.nodes if n.name == lb)
    if lb_status.state in NOT_FORWARDING:
        return State.OFF, f"{lb} {lb_status.state}"
    haproxy = (lb_status.daemons or {}).get(names.HAPROXY_UNIT)
    if haproxy is not None and not haproxy.active:
        return State.OFF, "haproxy stopped"
    b = status.backends.get(lb)
    if b is None or b.servers is None:
        return State.UNKNOWN, "?"
    by = {(s.proxy, s.server): s for s in b.servers}
    down, missing = [], []
    for p in proxies:
        s = by.get((p, names.server_name(p, node.name)))
        if s is None:
            missing.append(p)
        elif not s.up:
            down.append(f":{names.PORTS[p]} {s.status}")
    if down:
        return State.DOWN, " ".join(down)
    if missing:
        # HAProxy does not know a server lab.yaml promises: a config that is not the lab's.
        return State.UNKNOWN, "not in HAProxy: " + _ports(missing)
    return State.OK, "UP"


# -- building ----------------------------------------------------------------------------------
def build(topo: Topology, status: LabStatus | None = None,
          probes: Mapping[str, Record | None] | None = None) -> Graph:
    """The lab's graph; with ``status`` (lab.status.gather) and ``probes`` (the client's
    latest probe of each kind, None where there is none), its live state."""
    live = status is not None
    by_status = {n.name: n for n in status.nodes} if status else {}
    client = topo.client
    vrrp = topo.keepalived
    ports = " · ".join(f"{k} :{p}" for k, p in PROBE_KINDS.items())

    def overlay(spec: NodeSpec) -> tuple[State, tuple[str, ...]]:
        if spec.name not in by_status:
            return State.STATIC, ()
        st, notes = _node_state(by_status[spec.name])
        return st, tuple(notes)

    st, notes = overlay(client)
    tiers: list[list[GNode]] = [[GNode(client.name, client.name, Kind.CLIENT,
                                       (str(client.address), "probes and SSH start here"),
                                       st, notes)]]
    vip_state, vip_notes = _vip_state(status) if status else (State.STATIC, [])
    tiers.append([GNode(VIP_ID, f"VIP {topo.vip}", Kind.VIP,
                        (f"VRRP id {vrrp.virtual_router_id}, advert {vrrp.advert_int:g} s",),
                        vip_state, tuple(vip_notes))])
    lbs = []
    for lb in topo.load_balancers:
        assert lb.vrrp is not None
        st, notes = overlay(lb)
        if status is not None:
            ns = by_status[lb.name]
            # VRRP as keepalived reports it: the state and the effective priority.
            if ns.vrrp is not None:
                notes = (f"keepalived: {ns.vrrp}", *notes)
            elif ns.state == "running" and "VRRP:" in (ns.error or ""):
                notes = ("keepalived: ?", *notes)  # its error makes the node unknown
            if ns.holds_vip:
                notes = ("holds the VIP", *notes)
            elif ns.holds_vip is None:
                # Down (a daemon known stopped) says more than unknown; the note stays.
                st = st if st is State.DOWN else State.UNKNOWN
                notes = ("VIP: ?", *notes)
        lbs.append(GNode(lb.name, lb.name, Kind.LOADBALANCER,
                         (str(lb.address), f"{lb.vrrp.state} · priority {lb.vrrp.priority}",
                          f"{names.HAPROXY_UNIT} · {names.KEEPALIVED_UNIT}"), st, notes))
    tiers.append(lbs)
    backends = []
    for b in _backends(topo):
        st, notes = overlay(b)
        serves = []
        if Role.CONTROL_PLANE in b.roles:
            serves.append(f"{names.APISERVER_UNIT} :{names.PORTS[names.API_PROXY]}")
        if Role.INGRESS in b.roles:
            serves.append(f"{names.INGRESS_UNIT} {_ports([names.INGRESS_PROXY, names.HTTP_PROXY])}")
        backends.append(GNode(b.name, b.name, Kind.BACKEND, (str(b.address), *serves), st,
                              notes))
    tiers.append(backends)

    edges: list[GEdge] = []
    if probes is not None:
        pst, plabel = _probe_state(probes)
        edges.append(GEdge(client.name, VIP_ID, plabel, pst))
    else:
        edges.append(GEdge(client.name, VIP_ID, ports))
    for lb in topo.load_balancers:
        assert lb.vrrp is not None
        label = f"{lb.vrrp.state} {lb.vrrp.priority}"
        if status is None:
            edges.append(GEdge(VIP_ID, lb.name, label))
            continue
        holds, lb_state = by_status[lb.name].holds_vip, by_status[lb.name].state
        if holds:
            state, label = State.OK, f"{label} · holds it"
        elif holds is None:
            state, label = State.UNKNOWN, f"{label} · ?"
        elif lb_state in NOT_FORWARDING:
            state, label = State.OFF, f"{label} · {lb_state}"
        else:
            state, label = State.IDLE, f"{label} · standby"
        edges.append(GEdge(VIP_ID, lb.name, label, state))
    lb_names = [lb.name for lb in topo.load_balancers]
    for a, b in zip(lb_names, lb_names[1:], strict=False):
        # keepalived.conf.j2 speaks unicast VRRP (unicast_src_ip / unicast_peer), as the guide.
        edges.append(GEdge(a, b, "VRRP unicast", vrrp=True))
    for lb in topo.load_balancers:
        for node in _backends(topo):
            if status is None:
                edges.append(GEdge(lb.name, node.name, _ports(_proxies_of(node))))
            else:
                st, label = _backend_edge(status, lb.name, node)
                edges.append(GEdge(lb.name, node.name, label, st))
    title = f"lab {topo.name}" + (f" ({status.provider})" if status else "")
    lan = (f"lab LAN {topo.network.subnet}: one switch, {topo.network.interface} on every node, "
           "no route out")
    return Graph(title, tiers, edges, live, lan)


# -- drawing: the terminal ---------------------------------------------------------------------
STYLES = {State.STATIC: "", State.OK: "green", State.IDLE: "dim", State.DOWN: "bold red",
          State.OFF: "dim red", State.UNKNOWN: "yellow"}
# Words, not only colours: a drawing must read the same without colour (NO_COLOR, a pipe).
MARKS = {State.STATIC: "", State.OK: "", State.IDLE: "", State.DOWN: " DOWN", State.OFF: " OFF",
         State.UNKNOWN: " ?"}


def _panel(g: Graph, n: GNode) -> Panel:
    body = Text()
    for line in n.lines:
        body.append(line + "\n")
    for note in n.notes:
        held = note == "holds the VIP"
        body.append(("● " if held else "") + note + "\n",
                    style="bold green" if held else STYLES[n.state])
    if g.live and n.kind is Kind.BACKEND:
        # What each LB's HAProxy says of this backend: the edges into it.
        for e in (e for e in g.edges if e.dst == n.id):
            body.append(f"{e.src}: ", style="dim")
            body.append(e.label + "\n", style=STYLES[e.state])
    body.rstrip()
    title = Text(n.title + MARKS[n.state], style="bold " + STYLES[n.state])
    border = STYLES[n.state] or ("bold" if n.kind is Kind.VIP else "")
    return Panel(body, title=title, title_align="left", border_style=border, expand=False)


def _row(items: list[RenderableType]) -> RenderableType:
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    for _ in items:
        grid.add_column()
    grid.add_row(*items)
    return Align.center(grid)


def _arrow(*parts: tuple[str, str]) -> RenderableType:
    return Align.center(Text.assemble(("▼ ", "dim"), *parts))


def to_rich(g: Graph) -> RenderableType:
    """The tiers, top to bottom, each node a panel; what passes between tiers on the
    arrows, and (live) what each LB's HAProxy says of each backend in the backend's panel."""
    client, vip, lbs, backends = g.tiers
    e = g.edge(client[0].id, VIP_ID)
    to_lbs: list[tuple[str, str]] = []
    for i, lb in enumerate(lbs):
        to = g.edge(VIP_ID, lb.id)
        to_lbs.append(("   " if i else "", ""))
        to_lbs.append((f"{lb.id}: {to.label}", STYLES[to.state]))
    vrrp = "   ".join(f"{x.src} ⇄ {x.dst}: {x.label}" for x in g.edges if x.vrrp)
    return Group(
        Align.center(Text(g.title, style="bold")),
        *([Align.center(Text(g.lan, style="dim"))] if g.lan else []),
        _row([_panel(g, n) for n in client]),
        _arrow((e.label, STYLES[e.state] or "dim")),
        _row([_panel(g, n) for n in vip]),
        _arrow(*to_lbs),
        _row([_panel(g, n) for n in lbs]),
        Align.center(Text(vrrp, style="dim")),
        _arrow(("HAProxy forwards to", "dim")),
        _row([_panel(g, n) for n in backends]),
    )


def to_text(g: Graph, width: int = 160, color: bool = False) -> str:
    """The terminal drawing as a string (a pipe, a file, a test): laid out on ``width``
    columns, then trimmed to what it uses."""
    import textwrap

    from rich.console import Console

    console = Console(width=width, record=True, color_system="standard" if color else None,
                      force_terminal=color, file=_Null())
    console.print(to_rich(g))
    text = console.export_text(styles=color)
    if color:
        return text
    return textwrap.dedent("\n".join(line.rstrip() for line in text.splitlines())) + "\n"


class _Null:
    def write(self, _: str) -> int:
        return 0

    def flush(self) -> None:
        pass


# -- drawing: Graphviz DOT and Mermaid ----------------------------------------------------------
DOT_COLOURS = {State.STATIC: "black", State.OK: "darkgreen", State.IDLE: "gray50",
               State.DOWN: "red", State.OFF: "gray70", State.UNKNOWN: "darkorange"}


def _dot_id(s: str) -> str:
    # A double-quoted DOT ID; Graphviz reads UTF-8, and \\n in a label is its line break.
    return json.dumps(s, ensure_ascii=False)


def _label(n: GNode, sep: str) -> str:
    words = [n.title + MARKS[n.state], *n.lines, *n.notes]
    return sep.join(words)


def to_dot(g: Graph) -> str:
    """Graphviz: `halab graph --format dot | dot -Tsvg > lab.svg`."""
    out = [f"digraph {_dot_id(g.title)} {{",
           "  rankdir=TB;",
           '  node [shape=box, style="rounded", fontname="Helvetica"];',
           '  edge [fontname="Helvetica", fontsize=10];']
    if g.lan:
        out += ["  subgraph cluster_lan {",
                f"  label={_dot_id(g.lan)}; style=dashed; color=gray50; fontcolor=gray30;"]
    for tier in g.tiers:
        for n in tier:
            attrs = [f"label={_dot_id(_label(n, chr(10)))}",
                     f"color={DOT_COLOURS[n.state]}"]
            if n.kind is Kind.VIP:
                attrs.append("shape=ellipse")
            if n.state is State.DOWN:
                attrs.append("penwidth=2")
            out.append(f"  {_dot_id(n.id)} [{', '.join(attrs)}];")
        if len(tier) > 1:
            out.append("  { rank=same; " + " ".join(_dot_id(n.id) for n in tier) + " }")
    if g.lan:
        out.append("  }")
    for e in g.edges:
        attrs = [f"label={_dot_id(e.label)}", f"color={DOT_COLOURS[e.state]}",
                 f"fontcolor={DOT_COLOURS[e.state]}"]
        if e.vrrp:
            attrs += ["dir=both", "style=dotted", "constraint=false"]
        elif e.state in (State.IDLE, State.OFF):
            attrs.append("style=dashed")
        elif e.state is State.DOWN:
            attrs.append("penwidth=2")
        elif e.state is State.OK and e.src == VIP_ID:
            attrs.append("penwidth=3")
        out.append(f"  {_dot_id(e.src)} -> {_dot_id(e.dst)} [{', '.join(attrs)}];")
    out.append("}")
    return "\n".join(out) + "\n"


MERMAID_CLASSES = {State.OK: "fill:#e6f4ea,stroke:#137333",
                   State.IDLE: "fill:#f1f3f4,stroke:#80868b",
                   State.DOWN: "fill:#fce8e6,stroke:#c5221f,stroke-width:2px",
                   State.OFF: "fill:#f1f3f4,stroke:#c5221f,stroke-dasharray:4",
                   State.UNKNOWN: "fill:#fef7e0,stroke:#e37400"}


def _mermaid_text(s: str) -> str:
    # Inside "...": a double quote ends the label; Mermaid reads #quot; as one.
    return s.replace('"', "#quot;")


def to_mermaid(g: Graph) -> str:
    """Mermaid (GitHub and GitLab render it in Markdown): a ```mermaid block."""
    ids = {n.id: f"n{i}" for i, n in enumerate(g.nodes)}
    out = ["flowchart TB"]
    if g.lan:
        out.append(f'  subgraph lan["{_mermaid_text(g.lan)}"]')
    for n in g.nodes:
        text = _mermaid_text(_label(n, "<br/>"))
        shape = f'(("{text}"))' if n.kind is Kind.VIP else f'["{text}"]'
        out.append(f"  {ids[n.id]}{shape}")
    if g.lan:
        out.append("  end")
    for e in g.edges:
        label = _mermaid_text(e.label)
        arrow = ("<-.->" if e.vrrp else "-.->" if e.state in (State.IDLE, State.OFF)
                 else "==>" if e.state is State.OK and e.src == VIP_ID else "-->")
        out.append(f'  {ids[e.src]} {arrow}|"{label}"| {ids[e.dst]}')
    used = sorted({n.state for n in g.nodes} - {State.STATIC})
    for st in used:
        out.append(f"  classDef {st.value} {MERMAID_CLASSES[st]}")
        members = ",".join(ids[n.id] for n in g.nodes if n.state is st)
        out.append(f"  class {members} {st.value}")
    return "\n".join(out) + "\n"


FORMATS = {"dot": to_dot, "text": to_text, "mermaid": to_mermaid}
# What `halab graph --out FILE` writes, by the file's suffix: a format of ours, or one that
# Graphviz's `dot` renders from our DOT.
OUT_SUFFIXES = {".dot": "dot", ".gv": "dot", ".txt": "text", ".mmd": "mermaid",
                ".svg": "svg", ".png": "png"}


def write(g: Graph, path: Path) -> None:
    """``g`` into ``path``, in the format its suffix names (.svg and .png through `dot`)."""
    suffix = path.suffix.lower()
    if suffix not in OUT_SUFFIXES:
        raise HalabError(f"halab graph --out {path}: cannot tell the format from the "
                         f"suffix; use one of {', '.join(OUT_SUFFIXES)}")
    fmt = OUT_SUFFIXES[suffix]
    if fmt in FORMATS:
        path.write_text(FORMATS[fmt](g))
        return
    render_with_dot(to_dot(g), fmt, path)


def render_with_dot(dot: str, fmt: str, path: Path) -> None:
    """Graphviz's `dot` (Debian's graphviz) draws the picture: no layout of ours."""
    import shutil
    import subprocess

    from lab import packages

    if shutil.which("dot") is None:
        raise PrerequisiteError(
            f"halab graph --out {path.name} needs Graphviz's `dot`, which is not installed: "
            f"`apt-get install {packages.package_of('dot')}` (or write DOT with --out "
            f"{path.stem}.dot and draw it elsewhere)")
    p = subprocess.run(["dot", f"-T{fmt}", "-o", str(path)], input=dot.encode(),
                       capture_output=True)
    if p.returncode:
        raise HalabError(f"Graphviz's `dot -T{fmt}` failed ({p.returncode}) writing {path}: "
                         f"{p.stderr.decode(errors='replace').strip()}")
