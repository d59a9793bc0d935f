"""The names a deployed lab promises: HAProxy's proxies, its stats socket, the units, the
config paths. The templates render them, and whatever reads the lab back (observe, faults,
chaos, the CLI) imports them from here, so that a name is typed once.
"""

from __future__ import annotations

# HAProxy `listen` sections, as the kubeadm HA guide names them.
API_PROXY = "k8s-api-server"  # *:6443 -> the masters' API servers
INGRESS_PROXY = "k8s-nginx-ingress"  # *:443 -> the masters' ingress (TLS passed through)
HTTP_PROXY = "lets-encrypt-http-resolver"  # *:80 -> the masters' ingress (plain HTTP)
PROXIES = (HTTP_PROXY, INGRESS_PROXY, API_PROXY)
# The port each proxy binds on the VIP (haproxy.cfg.j2's `bind` lines; a unit test holds the
# rendered file to these) and forwards to on its servers.
PORTS = {API_PROXY: 6443, INGRESS_PROXY: 443, HTTP_PROXY: 80}
API_PORT = PORTS[API_PROXY]  # on every LB's own address and the VIP

# Debian's default admin socket (the guide dropped the line; observe reads `show stat` here).
HAPROXY_STATS_SOCKET = "/run/haproxy/admin.sock"

# The units halab runs on a node (systemd units on VMs and hosts, tini children in netns).
HAPROXY_UNIT = "haproxy"
KEEPALIVED_UNIT = "keepalived"
APISERVER_UNIT = "kube-apiserver"
INGRESS_UNIT = "ingress"
# The units that are nginx in this lab (the API server and ingress stand-ins).
NGINX_UNITS = (APISERVER_UNIT, INGRESS_UNIT)
# The embedded lab's sshd, a unit of the node like the others (on VMs: the system's own).
SSH_UNIT = "ssh"

# keepalived's main pid file, and where it writes its state dumps (SIGJSON, SIGUSR1): its
# $TMPDIR, a runtime folder of the node's own (on the embedded lab /tmp is the host's).
KEEPALIVED_PIDFILE = "/run/keepalived.pid"
KEEPALIVED_DUMP_DIR = "/run/keepalived"

# HAProxy's exit told to keepalived at once (keepalived.track_file, profile fast): HAProxy
# holds ALIVE_FIFO open (its unit's wrapper opens it as fd 3 and execs haproxy, which keeps
# it); the watcher unit reads the FIFO and sees end-of-file the moment the kernel closes
# HAProxy's descriptors, however it died, and writes TRACK_FILE ("1": HAProxy gone, "0": it
# listens on :6443), which keepalived follows through inotify (vrrp_track_file).
# keepalived's own vrrp_track_process cannot do this inside a lab node (its process-events
# connector works only in the initial network namespace: errno 111).
HAPROXY_WATCH_UNIT = "haproxy-watch"
HAPROXY_WATCH_SH = "/etc/halab/haproxy-watch.sh"
HAPROXY_RUN_DIR = "/run/haproxy"  # HAProxy's runtime folder (its stats socket's too)
HAPROXY_ALIVE_FIFO = f"{HAPROXY_RUN_DIR}/alive"
# In keepalived's own runtime folder: it exists whenever keepalived runs (its unit makes it),
# so the inotify watch keepalived puts on the file's folder never misses.
HAPROXY_TRACK_FILE = f"{KEEPALIVED_DUMP_DIR}/haproxy.track"
HAPROXY_TRACK_NAME = "haproxy_serves"  # the track_file's name in keepalived.conf

# Config files, where the roles write them and the daemons read them.
HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"
KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"
# The kubeadm HA guide's keepalived check (profile kubeadm-guide): the API through HAProxy.
CHECK_APISERVER_SH = "/etc/keepalived/check_apiserver.sh"
APISERVER_CONF = "/etc/halab/kube-apiserver/nginx.conf"
INGRESS_CONF = "/etc/halab/ingress/nginx.conf"
PKI_DIR = "/etc/kubernetes/pki"


def ingress_server_name(node_name: str) -> str:
    """k8s-master-01 -> k8s-nginx-ingress-01, as the guide names its ingress servers."""
    if node_name.startswith("k8s-master-"):
        return "k8s-nginx-ingress-" + node_name.removeprefix("k8s-master-")
    return f"{node_name}-ingress"


def server_name(proxy: str, node_name: str) -> str:
    """The `server` name a node has in ``proxy``: its own name for the API servers, the
    guide's ingress names for the ingress proxies."""
    return node_name if proxy == API_PROXY else ingress_server_name(node_name)
