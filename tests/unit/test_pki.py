"""The lab CA's certificates follow the topology, and its private keys are never readable
by others, not even for the instant between writing and a chmod."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography import x509

from lab import topology
from provision.pki import LabPki


def _sans(crt: bytes) -> tuple[set[str], set[str]]:
    san = x509.load_pem_x509_certificate(crt).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    return (set(san.get_values_for_type(x509.DNSName)),
            {str(i) for i in san.get_values_for_type(x509.IPAddress)})


def test_a_new_vip_reissues_the_certificates(tmp_path, default_text):
    before = topology.parse(default_text)
    crt, key = LabPki(tmp_path, before).apiserver(before.node("k8s-master-01"))
    assert "192.168.0.203" in _sans(crt)[1]
    after = topology.parse(default_text.replace("vip: 192.168.0.203", "vip: 192.168.0.204"))
    pki = LabPki(tmp_path, after)
    crt2, key2 = pki.apiserver(after.node("k8s-master-01"))
    assert "192.168.0.204" in _sans(crt2)[1] and "192.168.0.203" not in _sans(crt2)[1]
    assert key2 != key  # a new pair, not a new certificate for the old key
    ingress = pki.ingress(after.node("k8s-master-01"))[0]
    assert "192.168.0.204" in _sans(ingress)[1]
    # and then reused again: re-provisioning the same topology changes nothing
    assert pki.apiserver(after.node("k8s-master-01")) == (crt2, key2)


def test_a_moved_node_gets_its_new_address_in_its_certificate(tmp_path, default_text):
    before = topology.parse(default_text)
    LabPki(tmp_path, before).apiserver(before.node("k8s-master-01"))
    after = topology.parse(default_text.replace("address: 192.168.0.111",
                                                "address: 192.168.0.121"))
    crt = LabPki(tmp_path, after).apiserver(after.node("k8s-master-01"))[0]
    assert "192.168.0.121" in _sans(crt)[1] and "192.168.0.111" not in _sans(crt)[1]


def test_a_certificate_of_another_ca_is_issued_again(tmp_path, default_topo):
    node = default_topo.node("k8s-master-01")
    crt = LabPki(tmp_path, default_topo).apiserver(node)[0]
    (tmp_path / "ca.key").unlink()
    (tmp_path / "ca.crt").unlink()  # a new CA: what the old one signed is trusted by no one
    assert LabPki(tmp_path, default_topo).apiserver(node)[0] != crt


@pytest.fixture
def no_umask_and_no_chmod(monkeypatch):
    """The worst moment: a permissive umask, and the process dying before any chmod."""
    monkeypatch.setattr(Path, "chmod", lambda *a, **k: None)
    monkeypatch.setattr(os, "chmod", lambda *a, **k: None)
    old = os.umask(0)
    yield
    os.umask(old)


def test_private_keys_are_0600_from_their_first_byte(tmp_path, default_topo,
                                                     no_umask_and_no_chmod):
    pki = LabPki(tmp_path / "pki", default_topo)
    pki.apiserver(default_topo.node("k8s-master-01"))
    pki.client("admin")
    keys = sorted((tmp_path / "pki").glob("*.key"))
    assert [k.name for k in keys] == ["ca.key", "client-admin.key", "k8s-master-01-apiserver.key"]
    assert {k.name: oct(stat.S_IMODE(k.stat().st_mode)) for k in keys} == {
        k.name: oct(0o600) for k in keys}
    assert stat.S_IMODE((tmp_path / "pki").stat().st_mode) & 0o077 == 0
