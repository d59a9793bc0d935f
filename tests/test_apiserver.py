"""The API servers behind the VIP: TLS, health, and what HAProxy does when masters die."""

from __future__ import annotations

import json
import time

import pytest

from lab import faults, observe, timing

pytestmark = [pytest.mark.needs_lab]


def _sans(cert: dict) -> set[str]:
    return {v for _, v in cert.get("subjectAltName", ())}


def test_tls_through_the_vip_against_the_lab_ca(lab, probe):
    # The handshake verifies the chain against the lab CA and the VIP against the SANs.
    sans = _sans(probe.peer_certificate(6443))
    assert lab.vip in sans
    assert {"kubernetes", "kubernetes.default"} <= sans


def test_healthz_and_version_through_the_vip(lab, probe):
    status, headers, body = probe.get("/healthz")
    assert (status, body) == (200, b"ok")
    assert headers["x-halab-node"] in {m.name for m in lab.masters}
    status, _, body = probe.get("/version")
    assert status == 200
    version = json.loads(body)
    assert {"major", "minor", "gitVersion", "platform"} <= version.keys()
    assert version["halab"]["peer"] in {lb.address for lb in lab.load_balancers}


def test_serving_certificate_names_each_master(lab):
    for m in lab.masters:
        text = m.check_output("openssl x509 -noout -ext subjectAltName -in %s",
                              "/etc/kubernetes/pki/apiserver.crt")
        assert lab.vip in text and m.address in text and m.name in text


def _served_by(probe, n: int = 12) -> list:
    records = [probe.probe("api", timeout=2) for _ in range(n)]
    return records


@pytest.mark.disruptive
@pytest.mark.parametrize("index", [0, 1, 2], ids=["first", "second", "third"])
def test_one_master_down_is_marked_down_and_vip_serves(steady, probe, index):
    lab = steady
    if index >= len(lab.masters) or len(lab.masters) < 2:
        pytest.skip("needs this many masters and one more to serve")
    victim = lab.masters[index].name
    faults.kill(lab, victim, "kube-apiserver")
    took = observe.wait_backend(lab, victim, up=False,
                                timeout=timing.backend_down(lab.topo).with_margin)
    assert took <= timing.backend_down(lab.topo).with_margin
    records = _served_by(probe)
    assert all(r.ok for r in records), [r.error for r in records if not r.ok]
    assert victim not in {r.master for r in records}
    faults.start(lab, victim, "kube-apiserver")
    observe.wait_backend(lab, victim, up=True, timeout=timing.backend_up(lab.topo).with_margin)


@pytest.mark.disruptive
def test_two_masters_down_vip_still_serves(steady, probe):
    lab = steady
    if len(lab.masters) < 3:
        pytest.skip("needs three masters")
    victims = [m.name for m in lab.masters[:2]]
    for v in victims:
        faults.kill(lab, v, "kube-apiserver")
    for v in victims:
        observe.wait_backend(lab, v, up=False, timeout=timing.backend_down(lab.topo).with_margin)
    records = _served_by(probe)
    assert all(r.ok for r in records), [r.error for r in records if not r.ok]
    assert {r.master for r in records} == {lab.masters[2].name}


@pytest.mark.disruptive
def test_all_masters_down_requests_fail_then_recover(steady, probe):
    lab = steady
    for m in lab.masters:
        faults.kill(lab, m.name, "kube-apiserver")
    for m in lab.masters:
        observe.wait_backend(lab, m.name, up=False,
                             timeout=timing.backend_down(lab.topo).with_margin)
    records = _served_by(probe, 5)
    assert not any(r.ok for r in records), "with no API server left, no request may succeed"
    for m in lab.masters:
        faults.start(lab, m.name, "kube-apiserver")
    for m in lab.masters:
        observe.wait_backend(lab, m.name, up=True, timeout=timing.backend_up(lab.topo).with_margin)
    time.sleep(0.2)
    assert probe.probe("api").ok


# -- the load balancers as an SRE would check them (pytest-testinfra) ---------------------
@pytest.fixture(params=["lb01", "lb02"])
def lb_host(request, lab, hosts):
    names = [n.name for n in lab.load_balancers]
    idx = ["lb01", "lb02"].index(request.param)
    if idx >= len(names):
        pytest.skip("fewer load balancers")
    return hosts[names[idx]]


def test_lb_daemons_run(lb_host):
    assert lb_host.process.filter(comm="haproxy")
    assert lb_host.process.filter(comm="keepalived")


@pytest.mark.parametrize("port", [80, 443, 6443])
def test_lb_listens(lb_host, port):
    assert lb_host.socket(f"tcp://0.0.0.0:{port}").is_listening


def test_lb_configs_in_place(lb_host, lab):
    cfg = lb_host.file("/etc/haproxy/haproxy.cfg")
    assert cfg.is_file and cfg.user == "root"
    for m in lab.masters:
        assert cfg.contains(f"server {m.name} {m.address}:6443")
    ka = lb_host.file("/etc/keepalived/keepalived.conf")
    assert ka.contains(f"virtual_router_id {lab.topo.keepalived.virtual_router_id}")
    assert ka.contains(f"{lab.vip} dev {lab.topo.network.interface}")
    assert lb_host.run("haproxy -c -q -f /etc/haproxy/haproxy.cfg").rc == 0
    assert lb_host.run("keepalived -t -f /etc/keepalived/keepalived.conf").rc == 0


def test_deployed_configs_are_byte_identical_to_the_render(lab):
    """Every provider deploys the same bytes for the same lab.yaml: the configs on the
    nodes are exactly what provision/ renders from the topology, whatever the nodes are."""
    from provision import render

    want = {render.HAPROXY_CFG: render.haproxy_cfg(lab.topo)}
    for lb in lab.load_balancers:
        got = {p: lb.read(p) for p in want}
        assert got == want, f"{lb.name}'s haproxy.cfg differs from the render"
        assert lb.read(render.KEEPALIVED_CONF) == render.keepalived_conf(lab.topo, lb.spec)
    for m in lab.masters:
        assert m.read(render.APISERVER_CONF) == render.apiserver_conf(lab.topo, m.spec)
