"""What breaks a lab on purpose, each fault with its undo, and the way back to steady state.

Faults act through the provider (machines, links) and each node's service manager
(daemons); they never signal anything but the lab's own processes.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from lab import observe
from lab.lab import Lab
from lab.wait import until


# -- daemons -----------------------------------------------------------------------------
def kill(lab: Lab, node: str, service: str, sig: signal.Signals = signal.SIGKILL) -> None:
    """Signal a daemon's main process (SIGKILL: it crashes; SIGTERM: it shuts down)."""
    lab.node(node).services.kill(service, sig)
    if sig in (signal.SIGKILL, signal.SIGTERM):
        until(f"{service} to exit on {node}",
              lambda: not lab.node(node).services.status(service).active, timeout=10,
              interval=0.01)


def stop(lab: Lab, node: str, service: str) -> None:
    lab.node(node).services.stop(service)


def start(lab: Lab, node: str, service: str) -> None:
    lab.node(node).services.start(service)


@contextmanager
def killed(lab: Lab, node: str, service: str,
           sig: signal.Signals = signal.SIGKILL) -> Iterator[None]:
    kill(lab, node, service, sig)
    try:
        yield
    finally:
        start(lab, node, service)


# -- machines and links ------------------------------------------------------------------
def crash(lab: Lab, node: str) -> None:
    """Power cut: the node's link drops and every process of it is gone at once."""
    lab.node(node).close()
    lab.provider.crash(node)


def boot(lab: Lab, node: str) -> None:
    lab.provider.boot(node)


def link_down(lab: Lab, node: str) -> None:
    lab.provider.link_down(node)


def link_up(lab: Lab, node: str) -> None:
    lab.provider.link_up(node)


@contextmanager
def link_cut(lab: Lab, node: str) -> Iterator[None]:
    link_down(lab, node)
    try:
        yield
    finally:
        link_up(lab, node)


# -- steady state ------------------------------------------------------------------------
def problems(lab: Lab) -> list[str]:
    """Everything that differs from the lab as provisioned; empty means steady."""
    found = []
    for name in lab.nodes:
        st = lab.provider.node_state(name)
        if st != "running":
            found.append(f"{name} is {st}")
            continue
        node = lab.node(name)
        if not node.managed:
            continue
        for svc in node.services.installed():
            if not node.services.status(svc).active:
                found.append(f"{svc} is not running on {name}")
    if found:
        return found
    holders = observe.vip_holders(lab)
    want = lab.topo.master_lb.name
    if holders != [want]:
        found.append(f"the VIP is on {', '.join(holders) or 'no LB'}, not on {want} alone")
    for lb in lab.load_balancers:
        for b in observe.backends(lab, lb.name):
            if not b.up:
                found.append(f"{lb.name}: {b.proxy}/{b.server} is {b.status}")
    return found


def restore(lab: Lab) -> list[str]:
    """Undo whatever a test or a chaos run left broken; return what was done."""
    done = []
    for name in lab.nodes:
        st = lab.provider.node_state(name)
        if st == "frozen":
            lab.provider.thaw(name)
            done.append(f"thawed {name}")
        if st == "crashed":
            lab.node(name).close()
            lab.provider.boot(name)
            done.append(f"booted {name}")
        elif st == "link-down":
            lab.provider.link_up(name)
            done.append(f"link up on {name}")
    for name, node in lab.nodes.items():
        if not node.managed:
            continue
        for svc in node.services.installed():
            if not node.services.status(svc).active:
                node.services.start(svc)
                done.append(f"started {svc} on {name}")
    return done


def wait_steady(lab: Lab, timeout: float) -> None:
    until("the lab to be steady (every daemon up, the VIP on the MASTER LB alone, every "
          "backend UP)", lambda: not problems(lab), timeout=timeout, interval=0.25)
