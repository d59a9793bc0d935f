"""The API servers behind the VIP: TLS, health, and what HAProxy does when masters die."""

from __future__ import annotations

import datetime as dt
import json
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lab import faults, observe, timing
from lab.kubectl import Kubectl, write_kubeconfig
from lab.probes import NetnsSockets, Prober

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


# -- a real client: kubectl (client-go) from the client, with the lab's kubeconfig ---------
def test_kubectl_healthz_through_the_vip(kubectl):
    a = kubectl.run("get", "--raw", "/healthz")
    assert a.ok, a.error
    assert a.output == "ok"


def test_kubectl_version_shows_what_the_standin_reports(kubectl, probe):
    from provision.render import STANDIN_VERSION

    a = kubectl.run("version", "-o", "json")
    assert a.ok, a.error
    server = json.loads(a.output)["serverVersion"]
    _, _, body = probe.get("/version")
    served = json.loads(body)
    fields = ("major", "minor", "gitVersion", "gitCommit", "platform")
    assert {k: server[k] for k in fields} == {k: served[k] for k in fields}
    assert (server["major"], server["minor"], server["gitVersion"]) == (
        STANDIN_VERSION["major"], STANDIN_VERSION["minor"], STANDIN_VERSION["git"])


# -- TLS refuses what it must: a CA the lab never used, a name the certificate lacks --------
# A name in none of the serving certificates' SANs (.invalid is reserved: RFC 2606).
WRONG_NAME = "apiserver.wrong.invalid"
# OpenSSL's verify codes for the two refusals.
X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
X509_V_ERR_HOSTNAME_MISMATCH = 62


@pytest.fixture(scope="module")
def foreign_ca(tmp_path_factory) -> Path:
    """A CA made now, of the lab CA's kind (EC P-256, self-signed), that signed nothing."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the halab lab CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    path = tmp_path_factory.mktemp("foreign-ca") / "ca.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _handshake(lab, ca: Path, server_name: str) -> dict:
    """A plain TLS handshake from the client to VIP:6443, checking ``server_name``."""
    sockets = NetnsSockets(lab.provider.client_netns())
    try:
        ctx = ssl.create_default_context(cafile=str(ca))
        raw = sockets.socket()
        raw.settimeout(5)
        raw.connect((lab.vip, 6443))
        with ctx.wrap_socket(raw, server_hostname=server_name) as s:
            return s.getpeercert() or {}
    finally:
        sockets.close()


def test_wrong_ca_is_refused_by_the_probe(lab, probe, foreign_ca):
    status, _, _ = probe.get("/healthz")  # the same path with the lab CA works
    assert status == 200
    wrong = Prober(lab.provider.client_netns(), lab.vip, foreign_ca)
    try:
        with pytest.raises(ssl.SSLCertVerificationError) as refused:
            wrong.get("/healthz")
        assert refused.value.verify_code == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, \
            refused.value
        record = wrong.probe("api")
        assert not record.ok and "CERTIFICATE_VERIFY_FAILED" in record.error
    finally:
        wrong.close()


@pytest.mark.parametrize("name", [WRONG_NAME, "lb01"], ids=["unknown-name", "other-node"])
def test_wrong_hostname_is_refused(lab, name):
    ca = lab.state.pki / "ca.crt"
    assert lab.vip in _sans(_handshake(lab, ca, lab.vip))  # the right name passes
    assert _handshake(lab, ca, "kubernetes.default")
    with pytest.raises(ssl.SSLCertVerificationError) as refused:
        _handshake(lab, ca, name)
    assert refused.value.verify_code == X509_V_ERR_HOSTNAME_MISMATCH, refused.value


def test_kubectl_refuses_a_wrong_ca(lab, kubectl, foreign_ca, tmp_path):
    assert kubectl.run("get", "--raw", "/healthz").ok  # the lab's kubeconfig works
    wrong = Kubectl(lab, write_kubeconfig(lab, tmp_path / "kubeconfig", ca_file=foreign_ca))
    a = wrong.run("get", "--raw", "/healthz", "--request-timeout=5s")
    assert not a.ok, f"kubectl trusted a server its CA never signed: {a.output!r}"
    assert "x509: certificate signed by unknown authority" in a.error, a.error


def test_kubectl_refuses_a_wrong_server_name(kubectl):
    good = kubectl.run("get", "--raw", "/healthz", "--tls-server-name=kubernetes.default")
    assert good.ok, good.error
    a = kubectl.run("get", "--raw", "/healthz", f"--tls-server-name={WRONG_NAME}",
                    "--request-timeout=5s")
    assert not a.ok, f"kubectl accepted a certificate not valid for {WRONG_NAME}"
    assert "x509: certificate is valid for" in a.error and WRONG_NAME in a.error, a.error


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
