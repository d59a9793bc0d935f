"""Statuses in the shapes lab.status.gather gives, made by hand for the offline tests of
the graph and the watch (tests break them the way real outages do)."""

from __future__ import annotations

from lab.status import Backends, Daemon, LabStatus, NodeStatus, Server
from lab.vrrp import VrrpState
from provision import names

MASTERS = ["k8s-master-01", "k8s-master-02", "k8s-master-07"]


def healthy(topo) -> LabStatus:
    """What lab.status.gather says of the default lab as provisioned."""
    nodes = []
    for n in topo.nodes:
        roles = [r.value for r in n.roles]
        if "loadbalancer" in roles:
            daemons = {"haproxy": Daemon(True, 10), "keepalived": Daemon(True, 11),
                       "ssh": Daemon(True, 12)}
        elif "client" in roles:
            daemons = {}
        else:
            daemons = {"ingress": Daemon(True, 20), "kube-apiserver": Daemon(True, 21),
                       "ssh": Daemon(True, 22)}
        holds = (n.name == "lb01") if "loadbalancer" in roles else None
        vrrp = None
        if "loadbalancer" in roles:  # as keepalived reports it, checks passing: + weight 2
            vrrp = (VrrpState("VI_1", "MASTER", 102, 100, 0, 1.7e9, 1, 0) if n.name == "lb01"
                    else VrrpState("VI_1", "BACKUP", 101, 99, 102, 1.7e9, 0, 0))
        nodes.append(NodeStatus(n.name, roles, str(n.address), "running", holds, daemons,
                                None, vrrp))
    def servers() -> list[Server]:
        return [Server(p, names.server_name(p, m), "UP", True) for p in names.PROXIES
                for m in MASTERS]

    return LabStatus("halab", "netns", str(topo.vip), ["lb01"], [], nodes,
                     {"lb01": Backends(servers()), "lb02": Backends(servers())})


def node(st: LabStatus, name: str) -> NodeStatus:
    return next(n for n in st.nodes if n.name == name)
