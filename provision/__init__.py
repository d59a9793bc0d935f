"""Provisioning: HAProxy, keepalived and the control-plane stand-ins, applied to nodes.

Knows HAProxy and keepalived; knows nothing about namespaces or VMs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

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

    for stage in stages:
        for node, change in zip(stage, _each(one, stage), strict=True):
            changes[node.name] = change
    if topo.kubernetes.control_plane == "kubeadm":
        # After the load balancers: the joining masters reach the first one through the VIP.
        from provision import kubeadm

        kubeadm.apply(topo, [n for n in managed if n.has(Role.CONTROL_PLANE)], progress)
    write_kubeconfig(topo, state)
    return [changes[n.name] for n in managed]


T = TypeVar("T")


def _each(fn: Callable[[Node], T], nodes: list[Node]) -> list[T]:
    """``fn`` on every node at once, a thread each; the results in order, or the first
    node's error. Daemon threads, joined here: a Ctrl-C ends the wait at once and the
    caller removes the lab, where a thread pool would first wait for every thread, and a
    thread may wait tens of seconds on an SSH connection whose proxy (`nc`, in the same
    process group) the Ctrl-C ended. `halab up` Ctrl-Ced while provisioning hung there
    (tests/test_crashproof.py)."""
    done: list[tuple[bool, object]] = [(False, None)] * len(nodes)

    def run(i: int, node: Node) -> None:
        try:
            done[i] = (True, fn(node))
        except BaseException as e:  # noqa: BLE001 - raised in the caller's thread below
            done[i] = (False, e)

    threads = [threading.Thread(target=run, args=(i, n), daemon=True,
                                name=f"provision-{n.name}") for i, n in enumerate(nodes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for ok, value in done:
        if not ok:
            raise value  # type: ignore[misc]
    return [value for _, value in done]  # type: ignore[misc]


__all__ = ["provision", "Change", "LabPki"]
