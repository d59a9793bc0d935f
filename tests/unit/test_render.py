"""Golden files: the default lab renders the guide's configs, with only the lab's needs changed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab import topology
from provision import render

GOLDEN = Path(__file__).with_name("golden")


def test_haproxy_cfg_matches_golden(default_topo):
    assert render.haproxy_cfg(default_topo) == (GOLDEN / "haproxy.cfg").read_text()


@pytest.mark.parametrize("lb", ["lb01", "lb02"])
def test_keepalived_conf_matches_golden(default_topo, lb):
    got = render.keepalived_conf(default_topo, default_topo.node(lb))
    assert got == (GOLDEN / f"keepalived-{lb}.conf").read_text()


def _norm(text: str) -> list[str]:
    """Blanks at line ends and indentation are not part of what a config says."""
    return [line.strip() for line in text.splitlines()]


def test_golden_haproxy_differs_from_the_guide_only_by_the_stats_socket(seed_dir):
    golden = _norm((GOLDEN / "haproxy.cfg").read_text())
    seed = _norm((seed_dir / "haproxy.cfg").read_text())
    added = [line for line in golden if line not in seed]
    assert added == ["stats socket /run/haproxy/admin.sock mode 660 level admin"]
    assert [line for line in golden if line != added[0]] == seed


@pytest.mark.parametrize("lb", ["lb01", "lb02"])
def test_golden_keepalived_differs_from_the_guide_only_by_the_interface(seed_dir, lb):
    golden = _norm((GOLDEN / f"keepalived-{lb}.conf").read_text())
    seed = _norm((seed_dir / f"keepalived-{lb}.conf").read_text())
    # The guide's commented-out track_interface block keeps its virbr0.
    seed = [re.sub(r"^(interface|192\.168\.0\.203 dev) virbr0$", r"\1 eth1", s) for s in seed]
    assert golden == seed


def test_settings_change_the_render(default_text):
    text = default_text.replace("advert_int: 1 ", "advert_int: 0.1 ").replace(
        "vrrp_version: 2", "vrrp_version: 3").replace('auth_pass: "1111"', "auth_pass: null")
    text = text.replace("inter_ms: 2000", "inter_ms: 200")
    topo = topology.parse(text)
    ka = render.keepalived_conf(topo, topo.node("lb02"))
    assert "advert_int 0.1" in ka and "vrrp_version 3" in ka and "authentication" not in ka
    hp = render.haproxy_cfg(topo)
    assert "check fall 3 rise 2 inter 200" in hp
    assert "192.168.0.111:80 check fall 3 rise 2 inter 200" in hp


def test_redispatch_and_retries(default_text):
    extra = "    rise: 2\n  redispatch: true\n  retries: 3\n"
    topo = topology.parse(default_text.replace("    rise: 2\n", extra))
    hp = render.haproxy_cfg(topo)
    assert "   option redispatch\n   retries 3\n" in hp


def test_peers_are_every_other_lb(default_text):
    text = default_text.replace(
        "  - name: k8s-master-01",
        "  - name: lb03\n    roles: [loadbalancer]\n    address: 192.168.0.103\n"
        "    vrrp: {state: BACKUP, priority: 98}\n  - name: k8s-master-01")
    topo = topology.parse(text)
    ka = render.keepalived_conf(topo, topo.node("lb01"))
    assert "unicast_peer {\n    192.168.0.102\n    192.168.0.103\n  }" in ka


def test_apiserver_standin_names_node(default_topo):
    conf = render.apiserver_conf(default_topo, default_topo.node("k8s-master-07"))
    assert "listen 6443 ssl;" in conf and '"node":"k8s-master-07"' in conf
    assert "master_process off;" in conf
