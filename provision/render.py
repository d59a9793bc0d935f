"""Configuration files rendered from the topology: pure functions of lab.yaml.

Rendering touches no node, so the same text goes to every provider and can be compared
(golden files, embedded vs VM lab) without a lab.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from lab.topology import Node, Topology
from provision import names
from provision.names import (
    APISERVER_CONF,
    HAPROXY_CFG,
    HAPROXY_STATS_SOCKET,
    INGRESS_CONF,
    KEEPALIVED_CONF,
    PKI_DIR,
    ingress_server_name,
)

TEMPLATES = Path(__file__).with_name("templates")
__all__ = ["APISERVER_CONF", "HAPROXY_CFG", "INGRESS_CONF", "KEEPALIVED_CONF",
           "ingress_server_name"]
# HAProxy's own check defaults: a plain `check` means these.
HAPROXY_CHECK_DEFAULTS = (2000, 3, 2)
# What the stand-in's /version says: the kubeadm HA guide's era of Kubernetes.
STANDIN_VERSION = {"major": "1", "minor": "30", "git": "v1.30.0-halab-standin"}


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)
    env.filters["ingress_server"] = ingress_server_name
    env.filters["ms"] = _duration
    return env


def _duration(ms: int) -> str:
    """HAProxy's time format, in the guide's units where they fit: 10000 -> 10s."""
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def haproxy_cfg(topo: Topology) -> str:
    c = topo.haproxy.check
    check = f"check fall {c.fall} rise {c.rise}"
    if c.inter_ms != HAPROXY_CHECK_DEFAULTS[0]:
        check += f" inter {c.inter_ms}"
    if c.fastinter_ms is not None:
        check += f" fastinter {c.fastinter_ms}"
    if c.downinter_ms is not None:
        check += f" downinter {c.downinter_ms}"
    plain_extra = ""
    if ((c.inter_ms, c.fall, c.rise) != HAPROXY_CHECK_DEFAULTS or c.fastinter_ms is not None
            or c.downinter_ms is not None):
        plain_extra = " " + check.removeprefix("check ")
    healthz = api_check(topo) == "healthz"
    return _env().get_template("haproxy.cfg.j2").render(
        haproxy=topo.haproxy, ingresses=topo.ingresses, control_planes=topo.control_planes,
        check=check, plain_check_extra=plain_extra, stats_socket=HAPROXY_STATS_SOCKET, names=names,
        api_health="healthz" if healthz else "tcp",
        # The check's TLS comes from `http-check connect ssl`; the API servers' certificates
        # are the lab CA's, which HAProxy is not given (the guide's `verify none`).
        api_check_extra=" verify none" if healthz else "")


def api_check(topo: Topology) -> str:
    """How HAProxy checks the API servers: `tcp` or `healthz` (auto decided)."""
    if topo.haproxy.api_check != "auto":
        return topo.haproxy.api_check
    return "healthz" if topo.kubernetes.control_plane == "kubeadm" else "tcp"


def check_apiserver_sh(topo: Topology) -> str:
    return _env().get_template("check_apiserver.sh.j2").render(
        vip=topo.vip, port=names.API_PORT)


def keepalived_conf(topo: Topology, node: Node) -> str:
    if node.vrrp is None:
        raise ValueError(f"{node.name} is not a load balancer")
    peers = [lb for lb in topo.load_balancers if lb.name != node.name]
    return _env().get_template("keepalived.conf.j2").render(
        node=node, k=topo.keepalived, advert_int=_number(topo.keepalived.advert_int),
        interface=topo.network.interface, peers=peers, vip=topo.vip,
        track={"name": names.HAPROXY_TRACK_NAME, "file": names.HAPROXY_TRACK_FILE})


def haproxy_watch_sh(topo: Topology) -> str:
    """The watcher that tells keepalived (track_file) of HAProxy's exit and return."""
    return _env().get_template("haproxy-watch.sh.j2").render(
        fifo=names.HAPROXY_ALIVE_FIFO, track=names.HAPROXY_TRACK_FILE, port=names.API_PORT)


def apiserver_conf(topo: Topology, node: Node) -> str:
    return _env().get_template("kube-apiserver-standin.conf.j2").render(
        node=node, port=6443, pki_dir=PKI_DIR, pidfile="/run/kube-apiserver-standin.pid",
        version=STANDIN_VERSION)


def ingress_conf(topo: Topology, node: Node) -> str:
    return _env().get_template("ingress-standin.conf.j2").render(
        node=node, pki_dir=PKI_DIR, pidfile="/run/ingress-standin.pid")
