"""lab.yaml validation: every bad input gets one clear paragraph naming the field."""

from __future__ import annotations

import pytest

from lab import topology
from lab.errors import LabFileError


def test_default_lab_loads(default_topo):
    t = default_topo
    assert t.name == "halab" and str(t.vip) == "192.168.0.203"
    assert [n.name for n in t.load_balancers] == ["lb01", "lb02"]
    assert t.master_lb.name == "lb01"
    assert [n.name for n in t.control_planes] == ["k8s-master-01", "k8s-master-02",
                                                  "k8s-master-07"]
    assert t.client.name == "client"
    assert t.prefix == "halab-halab-"


def _err(text: str) -> str:
    with pytest.raises(LabFileError) as e:
        topology.parse(text)
    msg = str(e.value)
    assert "\n" not in msg, "one paragraph"
    assert e.value.exit_code == 2
    return msg


def test_yaml_syntax_error_names_the_line(default_text):
    broken = default_text.replace("vip: 192.168.0.203", "vip: [192.168.0.203")
    assert "YAML syntax error at line" in _err(broken)


def test_unknown_key(default_text):
    msg = _err(default_text.replace("  advert_int: 1 ", "  advert_intt: 1 "))
    assert "keepalived.advert_intt" in msg and "unknown key" in msg


def test_duplicate_node_name(default_text):
    msg = _err(default_text.replace("name: k8s-master-02", "name: k8s-master-01"))
    assert "k8s-master-01" in msg and "more than once" in msg


def test_duplicate_address(default_text):
    msg = _err(default_text.replace("address: 192.168.0.112", "address: 192.168.0.111"))
    assert "192.168.0.111" in msg and "k8s-master-01, k8s-master-02" in msg


def test_address_outside_subnet(default_text):
    msg = _err(default_text.replace("address: 192.168.0.107", "address: 10.0.0.7"))
    assert "k8s-master-07" in msg and "192.168.0.0/24" in msg


def test_vip_outside_subnet(default_text):
    assert "VIP 192.168.1.203" in _err(default_text.replace("vip: 192.168.0.203",
                                                            "vip: 192.168.1.203"))


def test_vip_equals_node_address(default_text):
    msg = _err(default_text.replace("vip: 192.168.0.203", "vip: 192.168.0.102"))
    assert "lb02" in msg and "VIP" in msg


def test_fewer_than_two_load_balancers(default_text):
    text = default_text.replace(
        "  - name: lb02\n    roles: [loadbalancer]\n    address: 192.168.0.102\n"
        "    vrrp: {state: BACKUP, priority: 99}\n", "")
    assert "at least two" in _err(text)


def test_equal_priorities(default_text):
    assert "different VRRP priorities" in _err(default_text.replace("priority: 99",
                                                                    "priority: 100"))


def test_unknown_role(default_text):
    msg = _err(default_text.replace("roles: [control-plane, ingress]\n    address: 192.168.0.112",
                                    "roles: [control-plane, master]\n    address: 192.168.0.112"))
    assert "k8s-master-02" in msg and "unknown role 'master'" in msg


def test_missing_file(tmp_path):
    with pytest.raises(LabFileError) as e:
        topology.load(tmp_path / "nope.yaml")
    assert "no such lab file" in str(e.value) and "-f PATH" in str(e.value)


def test_bad_address(default_text):
    assert "not an IPv4 address" in _err(default_text.replace("vip: 192.168.0.203",
                                                              "vip: 192.168.0.999"))


def test_two_masters(default_text):
    assert "exactly one load balancer" in _err(default_text.replace("state: BACKUP",
                                                                    "state: MASTER"))


def test_vrrpv2_rejects_fractional_advert(default_text):
    assert "whole seconds" in _err(default_text.replace("advert_int: 1 ", "advert_int: 0.5 "))


def test_reserved_node_name(default_text):
    assert "reserved" in _err(default_text.replace("name: client", "name: switch"))


def test_not_a_mapping():
    assert "YAML mapping" in _err("- just\n- a list\n")
