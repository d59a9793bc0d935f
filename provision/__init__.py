"""Provisioning: HAProxy, keepalived and the control-plane stand-ins, applied to nodes.

Knows HAProxy and keepalived; knows nothing about namespaces or VMs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

from lab.node import Node
from lab.state import LabState
from lab.timings import span
from lab.topology import Role, Topology
from provision.kubeconfig import write_kubeconfig
from provision.pki import LabPki
from provision.roles import Change, apply


def provision(topo: Topology, state: LabState, nodes: Iterable[Node],
              progress: Callable[[str], None] = lambda _: None) -> list[Change]:
    pki = LabPki(state.pki, topo)
    managed = [n for n in nodes if not n.has(Role.CLIENT)]
    masters = [n for n in managed if not n.has(Role.LOADBALANCER)]
    lbs = [n for n in managed if n.has(Role.LOADBALANCER)]
    # The CA and the certificates are made here, once, before the threads need them.
    with span("lab CA and certificates"):
        for n in managed:
            if n.has(Role.CONTROL_PLANE):
                pki.apiserver(n.spec)
            if n.has(Role.INGRESS):
                pki.ingress(n.spec)

    def one(node: Node, before_start: Callable[[], None] = lambda: None) -> Change:
        progress(f"{node.name}: provisioning {', '.join(r.value for r in node.roles)}")
        return apply(topo, node, pki, state.rendered(node.name), before_start)

    # Every node at once, one thread (and one SSH connection) each; files are written and
    # validated side by side. Daemons start in an order, though:
    # - a load balancer's only once every master listens: HAProxy's checks and keepalived's
    #   election then start on a lab that already serves (a master that refuses HAProxy's
    #   first check stays DOWN for rise x inter);
    # - the other load balancers' only once the MASTER's keepalived runs. Both begin in
    #   BACKUP and the first to time out becomes MASTER: 3 x advert_int plus a skew that
    #   differs by 1/256 s per point of priority (4 ms between the guide's 102 and 101), so
    #   a backup started earlier would take the VIP first, until the MASTER preempts it.
    master_lb = next((n for n in lbs if n.name == topo.master_lb.name), None)
    backups = [n for n in lbs if n is not master_lb]
    first = [_start(one, n) for n in masters]

    def gated(node: Node, futures: list[Future[Change]], what: str) -> Change:
        def wait() -> None:
            with span(f"{node.name} waits for {what}"):
                for f in futures:
                    f.result()  # one that failed fails those waiting for it too
        return one(node, wait)

    second = ([_start(gated, master_lb, first, "every master to listen")]
              if master_lb else [])
    third = [_start(gated, n, first + second,
                    "every master to listen and the MASTER's keepalived")
             for n in backups]
    ordered = masters + ([master_lb] if master_lb else []) + backups
    changes = {n.name: f.result()
               for n, f in zip(ordered, first + second + third, strict=True)}
    if topo.kubernetes.control_plane == "kubeadm":
        # After the load balancers: the joining masters reach the first one through the VIP.
        from provision import kubeadm

        kubeadm.apply(topo, [n for n in managed if n.has(Role.CONTROL_PLANE)], progress)
    write_kubeconfig(topo, state)
    return [changes[n.name] for n in managed]


def _start(fn: Callable[..., Change], node: Node, *args: Any) -> Future[Change]:
    """``fn(node, *args)`` in a daemon thread of its own; its result, or its error, in the
    future. Daemon threads, and no pool: a Ctrl-C ends the caller's wait at once and the
    caller removes the lab, where a thread pool would first wait for every thread, and a
    thread may wait tens of seconds on an SSH connection whose proxy (`nc`, in the same
    process group) the Ctrl-C ended. `halab up` Ctrl-Ced while provisioning hung there
    (tests/test_crashproof.py)."""
    fut: Future[Change] = Future()

    def run() -> None:
        try:
            fut.set_result(fn(node, *args))
        except BaseException as e:  # noqa: BLE001 - raised in the waiting thread
            fut.set_exception(e)

    threading.Thread(target=run, daemon=True, name=f"provision-{node.name}").start()
    return fut


__all__ = ["provision", "Change", "LabPki"]
