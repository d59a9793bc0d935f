"""Provisioning: HAProxy, keepalived and the control-plane stand-ins, applied to nodes.

Knows HAProxy and keepalived; knows nothing about namespaces or VMs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from lab.node import Node
from lab.state import LabState
from lab.topology import Role, Topology
from provision.kubeconfig import write_kubeconfig
from provision.pki import LabPki
from provision.roles import Change, apply


def provision(topo: Topology, state: LabState, nodes: Iterable[Node],
              progress: Callable[[str], None] = lambda _: None) -> list[Change]:
    pki = LabPki(state.pki, topo)
    managed = [n for n in nodes if not n.has(Role.CLIENT)]
    # Masters first: HAProxy's checks and keepalived's election then start on a lab that
    # already serves. Within a stage nodes are independent: one thread (and one SSH
    # connection) each.
    stages = [[n for n in managed if not n.has(Role.LOADBALANCER)],
              [n for n in managed if n.has(Role.LOADBALANCER)]]
    # The CA and the certificates are made here, once, before the threads need them.
    for n in managed:
        if n.has(Role.CONTROL_PLANE):
            pki.apiserver(n.spec)
        if n.has(Role.INGRESS):
            pki.ingress(n.spec)
    changes: dict[str, Change] = {}

    def one(node: Node) -> Change:
        progress(f"{node.name}: provisioning {', '.join(r.value for r in node.roles)}")
        return apply(topo, node, pki, state.rendered(node.name))

    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="provision") as pool:
        for stage in stages:
            for node, change in zip(stage, pool.map(one, stage), strict=True):
                changes[node.name] = change
    if topo.kubernetes.control_plane == "kubeadm":
        # After the load balancers: the joining masters reach the first one through the VIP.
        from provision import kubeadm

        kubeadm.apply(topo, [n for n in managed if n.has(Role.CONTROL_PLANE)], progress)
    write_kubeconfig(topo, state)
    return [changes[n.name] for n in managed]


__all__ = ["provision", "Change", "LabPki"]
