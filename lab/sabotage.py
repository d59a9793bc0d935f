"""Silent breakage: the lab broken the way real outages break it, where no daemon dies and
no fault of the catalogue shows. The sabotage suite (tests/test_sabotage.py) sets these
under the failover tests and the chaos scenarios and shows that every verdict then fails
with a message that names what broke.

Each sabotage has an undo; everything it adds to a node is named ``halab-sabotage`` so that
``undo_all`` finds it whatever happened in between.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from lab import faults
from lab.lab import Lab
from provision import names
from provision.roles import haproxy_unit

TABLE = "halab-sabotage"


@dataclass(frozen=True)
class Sabotage:
    name: str
    what: str  # what a verdict should name, in words a person would use
    apply: Callable[[Lab], None]
    undo: Callable[[Lab], None]


def _nft(lab: Lab, node: str, family: str, chain: str, rule: str) -> None:
    """One rule in a table of its own on ``node`` (the client included)."""
    lab.node(node).check_output(
        "nft -f - <<'EOF'\n"
        f"table {family} {TABLE} {{}}\n"
        f"delete table {family} {TABLE}\n"
        f"table {family} {TABLE} {{\n  chain c {{ {chain}; {rule}; }}\n}}\nEOF")


def _unnft(lab: Lab, node: str) -> None:
    lab.node(node).run("nft delete table inet %s 2>/dev/null; nft delete table arp %s "
                       "2>/dev/null; true", TABLE, TABLE)


def _stats(lab: Lab, lb: str, command: str) -> None:
    lab.node(lb).check_output("echo %s | nc -U -w 2 %s", command, names.HAPROXY_STATS_SOCKET)


def backup_cannot_serve(lb: str) -> Sabotage:
    """The backup's kernel drops whatever the client sends to the VIP's ports: it takes the
    VIP and serves nothing (a host firewall that forgot the VIP)."""
    def apply(lab: Lab) -> None:
        _nft(lab, lb, "inet", "type filter hook input priority -20",
             f"ip daddr {lab.vip} tcp dport {{ 80, 443, 6443 }} drop")
    return Sabotage(f"{lb} cannot serve the VIP", f"{lb} drops traffic to the VIP",
                    apply, lambda lab: _unnft(lab, lb))


def garp_lost() -> Sabotage:
    """The client never hears who holds the VIP: gratuitous ARP and ARP replies for it are
    lost (a switch or host filter that drops them), so it keeps sending to the old MAC."""
    def apply(lab: Lab) -> None:
        _nft(lab, lab.client.name, "arp", "type filter hook input priority 0",
             f"arp saddr ip {lab.vip} drop")
    return Sabotage("gratuitous ARP lost", "ARP for the VIP never reaches the client", apply,
                    lambda lab: _unnft(lab, lab.client.name))


def adverts_ignored(lb: str) -> Sabotage:
    """``lb``'s keepalived hears no VRRP advert from its peers (a firewall that drops
    protocol 112): a backup then claims the VIP too, and a priority-0 advert is lost."""
    def apply(lab: Lab) -> None:
        _nft(lab, lb, "inet", "type filter hook input priority -20", "ip protocol 112 drop")
    return Sabotage(f"{lb} ignores VRRP adverts", f"{lb} hears no VRRP adverts", apply,
                    lambda lab: _unnft(lab, lb))


def priority_zero_lost(lb: str) -> Sabotage:
    """``lb`` never hears a priority-0 advert (its peers' resignations), all others it
    does: it learns that the MASTER left only when its master-down timer runs out. Unlike
    ``adverts_ignored`` the backup stays a backup until the fault, on a lab whose
    master-down interval is shorter than the time a test takes to set its fault off."""
    def apply(lab: Lab) -> None:
        # VRRP (v2 and v3): byte 2 of the header is the priority.
        _nft(lab, lb, "inet", "type filter hook input priority -20",
             "ip protocol 112 @th,16,8 0 drop")
    return Sabotage(f"{lb} loses priority-0 adverts", f"{lb} hears no priority-0 advert",
                    apply, lambda lab: _unnft(lab, lb))


def health_checks_off(server: str, proxy: str = names.API_PROXY) -> Sabotage:
    """HAProxy on every LB stops checking ``server``: a dead server stays UP and clients go
    on being sent to it (checks disabled by hand during maintenance and never re-enabled)."""
    srv = names.server_name(proxy, server)

    def apply(lab: Lab) -> None:
        for lb in lab.load_balancers:
            _stats(lab, lb.name, f"disable health {proxy}/{srv}")

    def undo(lab: Lab) -> None:
        for lb in lab.load_balancers:
            _stats(lab, lb.name, f"enable health {proxy}/{srv}")
    return Sabotage(f"health checks of {proxy}/{srv} off",
                    f"HAProxy does not check {proxy}/{srv}", apply, undo)


def broken_haproxy_config(lb: str) -> Sabotage:
    """A broken haproxy.cfg on disk: the next (re)start of HAProxy fails. Undone by
    provisioning again, which writes the rendered config back and starts HAProxy."""
    def apply(lab: Lab) -> None:
        lab.node(lb).check_output("echo 'this is not haproxy syntax' >> %s", names.HAPROXY_CFG)

    def undo(lab: Lab) -> None:
        lab.provision()
    return Sabotage(f"broken haproxy.cfg on {lb}", f"HAProxy on {lb} cannot start", apply,
                    undo)


def master_answers_500(master: str) -> Sabotage:
    """The API server on ``master`` answers every request with HTTP 500 while its port stays
    open (a server up but broken); HAProxy's TCP check sees nothing wrong."""
    def apply(lab: Lab) -> None:
        n = lab.node(master)
        n.check_output("sed -i 's/return 200 \"ok\"/return 500 \"broken\"/' %s",
                       names.APISERVER_CONF)
        n.services.restart(names.APISERVER_UNIT)

    def undo(lab: Lab) -> None:
        lab.provision()
    return Sabotage(f"{master} answers 500", f"the API server on {master} answers HTTP 500",
                    apply, undo)


SLOW_DIR = "/var/lib/halab-sabotage"


def slow_haproxy_start(lb: str, seconds: float = 10.0) -> Sabotage:
    """HAProxy on ``lb`` takes ``seconds`` to listen after it is started (a huge config,
    thousands of certificates, DNS resolution of servers at start-up): its process exists,
    named haproxy, long before it accepts a connection, so the guide's check (`killall -0
    haproxy`) passes early. The unit first runs a copy of sleep named haproxy."""
    def apply(lab: Lab) -> None:
        node = lab.node(lb)
        # The lab's own unit (on a lab with the watcher, HAProxy behind its FIFO), delayed.
        unit = haproxy_unit(lab.topo)
        node.check_output("mkdir -p %s && cp /bin/sleep %s/haproxy", SLOW_DIR, SLOW_DIR)
        node.services.install(dataclasses.replace(unit, argv=(
            "/bin/sh", "-c", f"{SLOW_DIR}/haproxy {seconds:g} && exec "
            + " ".join(shlex.quote(a) for a in unit.argv))))

    def undo(lab: Lab) -> None:
        node = lab.node(lb)
        node.services.install(haproxy_unit(lab.topo))
        node.run("rm -rf %s", SLOW_DIR)
    return Sabotage(f"HAProxy on {lb} slow to start", "the VIP came back before HAProxy "
                    "listened", apply, undo)


def undo_all(lab: Lab) -> None:
    """Whatever a sabotage left on any node: its nft tables, HAProxy's health checks,
    configs that differ from the render. Crashed nodes and stopped daemons (sshd among
    them, the harness's way in) are brought back first."""
    faults.restore(lab)
    for name in lab.nodes:
        if lab.provider.node_state(name) == "running":
            _unnft(lab, name)
    enable = "; ".join(
        f"enable health {proxy}/{names.server_name(proxy, m.name)}"
        for proxy in names.PROXIES
        for m in (lab.topo.control_planes if proxy == names.API_PROXY else lab.topo.ingresses))
    for lb in lab.load_balancers:
        # One round trip: the stats socket takes commands separated by semicolons.
        lb.run("echo %s | nc -U -w 2 %s", enable, names.HAPROXY_STATS_SOCKET)
    for lb in lab.load_balancers:
        lb.run("rm -rf %s", SLOW_DIR)
    lab.provision()
