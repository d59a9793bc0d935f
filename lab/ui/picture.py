"""The topology as a picture: a small Graphviz graph of the lab with its live state.

A stand-in: lab/graph.py (being built beside this page) draws the lab with live state for
`halab graph`. When it lands, ``topology_svg`` below is the one function to replace by
lab.graph's drawing (same input: the topology and a ``LabStatus``; same output: SVG text),
so that the page and `halab graph` draw the lab the same way.
"""

from __future__ import annotations

import subprocess

from lab.errors import HalabError
from lab.observe import DOWN_STATES
from lab.status import LabStatus
from lab.topology import Topology
from provision import names

GREEN, GREY, RED, YELLOW = "#b7e4c7", "#e9ecef", "#f5c2c7", "#ffe69c"


class PictureError(HalabError):
    """Graphviz could not draw the topology."""


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def topology_dot(topo: Topology, status: LabStatus) -> str:
    """The lab as DOT: the client, the VIP (on its holder, or unknown), each LB by its state,
    each master with the API proxy's view of it from every LB."""
    by_name = {n.name: n for n in status.nodes}
    unknown = bool(status.vip_unknown)
    holder = ("unknown" if unknown else ", ".join(status.vip_holders) or "none")
    lines = [
        "digraph lab {",
        '  graph [rankdir=TB, bgcolor="transparent", nodesep=0.35, ranksep=0.45,'
        ' fontname="Helvetica"];',
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11,'
        ' fillcolor="#e9ecef"];',
        '  edge [fontname="Helvetica", fontsize=9, arrowsize=0.6];',
    ]
    client = topo.client
    client_label = f"{client.name}\n{client.address}"
    lines.append(f"  {_q(client.name)} [label={_q(client_label)}];")
    vip_fill = YELLOW if unknown else GREEN if status.vip_holders else RED
    vip_label = f"VIP {topo.vip}\non {holder}"
    lines.append(f"  vip [shape=ellipse, fillcolor={_q(vip_fill)}, label={_q(vip_label)}];")
    lines.append(f"  {_q(client.name)} -> vip;")

    for lb in topo.load_balancers:
        ns = by_name.get(lb.name)
        state = ns.state if ns else "unknown"
        holds = ns.holds_vip if ns else None
        fill = (RED if state in DOWN_STATES or state in ("crashed", "absent") else
                YELLOW if holds is None or state == "unknown" else
                GREEN if holds else GREY)
        stopped = ([d for d, st in (ns.daemons or {}).items() if not st.active]
                   if ns else [])
        label = (f"{lb.name}\n{lb.address}\n{state}"
                 + ("\nholds the VIP" if holds else "\nVIP: ?" if holds is None else "")
                 + (f"\nstopped: {', '.join(stopped)}" if stopped else ""))
        lines.append(f"  {_q(lb.name)} [fillcolor={_q(fill)}, label={_q(label)}];")
        style = ('style=bold, color="#2b8a3e"' if holds else
                 'style=dashed, color="#b08900"' if holds is None else
                 'style=dotted, color="#adb5bd"')
        lines.append(f"  vip -> {_q(lb.name)} [{style}, arrowhead=none];")

    masters = topo.control_planes
    for m in masters:
        ns = by_name.get(m.name)
        state = ns.state if ns else "unknown"
        stopped = ([d for d, st in (ns.daemons or {}).items() if not st.active]
                   if ns else [])
        fill = (RED if state != "running" and state != "unknown" else
                YELLOW if state == "unknown" or (ns and ns.daemons is None) else
                "#ffd8a8" if stopped else GREEN)
        label = (f"{m.name}\n{m.address}" + (f"\n{state}" if state != "running" else "")
                 + (f"\nstopped: {', '.join(stopped)}" if stopped else ""))
        lines.append(f"  {_q(m.name)} [fillcolor={_q(fill)}, label={_q(label)}];")
    lines.append("  { rank=same; " + " ".join(_q(m.name) for m in masters) + " }")
    for lb in topo.load_balancers:
        b = status.backends.get(lb.name)
        states = ({s.server: s for s in b.servers if s.proxy == names.API_PROXY}
                  if b is not None and b.servers is not None else None)
        for m in masters:
            srv = None if states is None else states.get(names.server_name(names.API_PROXY,
                                                                            m.name))
            if srv is None:
                attrs = 'style=dashed, color="#b08900", label="?"'
            elif srv.up:
                attrs = 'color="#2b8a3e"'
            else:
                attrs = f'color="#c92a2a", fontcolor="#c92a2a", label={_q(srv.status)}'
            lines.append(f"  {_q(lb.name)} -> {_q(m.name)} [{attrs}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def topology_svg(topo: Topology, status: LabStatus) -> str:
    """The picture the page shows (replace by lab.graph's drawing once merged: see above)."""
    dot = topology_dot(topo, status)
    try:
        p = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True,
                           timeout=20)
    except FileNotFoundError:
        raise PictureError("the topology picture needs Graphviz's `dot` (Debian package "
                           "graphviz: `make setup` installs it)") from None
    except subprocess.TimeoutExpired:
        raise PictureError("Graphviz's `dot` did not draw the topology within 20 s") from None
    if p.returncode != 0:
        raise PictureError(f"Graphviz's `dot` failed (exit {p.returncode}): "
                           f"{p.stderr.strip()[:300]}")
    return p.stdout
