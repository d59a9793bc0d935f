"""What "steady" means, once: the lab as provisioned, serving through the VIP from the
MASTER LB. The pytest plugin, the CLI (up, demo) and the chaos runner all wait here.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from lab import faults, observe, timing
from lab.errors import HalabError
from lab.lab import Lab
from lab.timings import mark
from lab.wait import until

WHAT = ("the lab to be steady (every node running, every daemon up, no partition or "
        "impairment, the VIP on the MASTER LB alone and the client reaching it, every "
        "backend UP)")


def settle_timeout(lab: Lab) -> float:
    """How long a lab may take to become steady after a fault is undone: the provider's
    own time to bring a node back (a VM boots for a minute under TCG), or the config's
    slowest way back (a preempting return, then HAProxy's rise checks), whichever is
    longer."""
    topo = lab.topo
    by_config = (timing.preempt_back(topo).with_margin + timing.backend_up(topo).with_margin
                 + timing.arp_after_heal(topo).with_margin)
    return max(lab.provider.settle_s, by_config)


def problems(lab: Lab) -> list[str]:
    """Everything that differs from the lab as provisioned; empty means steady. What could
    not be asked is a problem too: unknown is not steady."""
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
    # One round trip per node costs ~0.17 s; asked in parallel, all of them cost one.
    running = [n for n, node in lab.nodes.items() if node.managed]
    with ThreadPoolExecutor(len(running)) as pool:
        for name, active in zip(running, pool.map(lambda n: faults.impairments(lab, n),
                                                  running), strict=True):
            found.extend(f"{i} on {name}" for i in active)
    if found:
        return found
    want = lab.topo.master_lb.name
    try:
        holders = observe.vip_holders(lab)
    except observe.ObservationError as e:
        return [f"unknown: {e}"]
    if holders != [want]:
        found.append(f"the VIP is on {', '.join(holders) or 'no LB'}, not on {want} alone")
    else:
        # A connection from the client first: it is part of steady, and its packets are what
        # moves a stale ARP entry along (delay, probe, ask anew) after a split brain's heal.
        r = lab.prober.probe("tcp")
        if not r.ok:
            found.append(f"the client cannot connect to {lab.vip}:6443 ({r.error})")
        mac = observe.neighbour_mac(lab, lab.vip)
        if mac is not None and mac != observe.lab_mac(lab, want):
            found.append(f"the client sends the VIP's packets to {mac}, not to {want}")
    for lb in lab.load_balancers:
        try:
            bs = observe.backends(lab, lb.name)
        except HalabError as e:
            found.append(f"unknown: cannot read HAProxy's backends on {lb.name}: {e}")
            continue
        found.extend(f"{lb.name}: {b.proxy}/{b.server} is {b.status}" for b in bs if not b.up)
    return found


def wait(lab: Lab, timeout: float | None = None) -> None:
    """Until the lab is steady; WaitTimeout names what was still wrong."""
    last: list[str] = []

    def steady() -> bool:
        found = problems(lab)
        if found != last or not found:
            # `halab up --timings`: what the wait was waiting for, and from when.
            mark(f"steady: {'; '.join(found) if found else 'yes'}")
        last[:] = found
        return not last

    try:
        until(WHAT, steady, timeout=settle_timeout(lab) if timeout is None else timeout,
              interval=0.25)
    except HalabError as e:
        raise type(e)(f"{e}; still wrong: {'; '.join(last) or 'nothing recorded'}") from None
