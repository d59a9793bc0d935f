"""Provisioning: HAProxy, keepalived and the control-plane stand-ins, applied to nodes.

Knows HAProxy and keepalived; knows nothing about namespaces or VMs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from lab.node import Node
from lab.state import LabState
from lab.system import require_tools
from lab.topology import Role, Topology
from provision.pki import LabPki
from provision.roles import PACKAGES, Change, apply


def check(topo: Topology) -> None:
    """The Debian packages the roles need, checked before anything is built."""
    roles = {r for n in topo.nodes for r in n.roles}
    require_tools([t for r in roles for t in PACKAGES[r]])


def provision(topo: Topology, state: LabState, nodes: Iterable[Node],
              progress: Callable[[str], None] = lambda _: None) -> list[Change]:
    pki = LabPki(state.pki, topo)
    changes = []
    # Masters first: HAProxy's checks and keepalived's election then start on a lab that
    # already serves.
    order = sorted((n for n in nodes if not n.has(Role.CLIENT)),
                   key=lambda n: n.has(Role.LOADBALANCER))
    for node in order:
        progress(f"{node.name}: provisioning {', '.join(r.value for r in node.roles)}")
        changes.append(apply(topo, node, pki))
    return changes


__all__ = ["check", "provision", "Change", "LabPki"]
