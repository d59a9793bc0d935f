"""The VM lab's spec: lab.yaml resolved for the Vagrantfile, one source of truth."""

from __future__ import annotations

from pathlib import Path

from lab import topology
from lab.providers.vagrant import spec


def _spec(topo, driver="qemu"):
    return spec.build(topo, driver=driver, uri="qemu:///system", pool_path=Path("/p"),
                      emulator=Path("/e") if driver == "qemu" else None,
                      public_key="ssh-ed25519 AAAA halab\n", serial_dir=Path("/s"))


def test_one_vm_per_node_but_the_client(default_topo):
    s = _spec(default_topo)
    assert [n["name"] for n in s["nodes"]] == ["lb01", "lb02", "k8s-master-01",
                                               "k8s-master-02", "k8s-master-07"]
    assert s["nodes"][0] == {"name": "lb01", "address": "192.168.0.101", "cpus": 1,
                             "memory": 512, "box": "halab/debian12", "host_key": None}
    assert s["lan"]["host_ip"] == "192.168.0.10", "the VM host is the client"
    assert s["prefix"] == "halab-halab-" and s["storage_pool"]["name"] == "halab-halab-pool"
    assert s["management"]["mode"] == "none", "the management network routes nowhere"
    assert s["public_key"] == "ssh-ed25519 AAAA halab"


def test_vm_resources_come_from_lab_yaml(default_text):
    text = default_text.replace(
        "    address: 192.168.0.111\n",
        "    address: 192.168.0.111\n    vm: {cpus: 2, memory_mib: 2048, box: debian/bookworm64}\n")
    node = _spec(topology.parse(text))["nodes"][2]
    assert (node["cpus"], node["memory"], node["box"]) == (2, 2048, "debian/bookworm64")


def test_driver_override_and_detection(monkeypatch):
    monkeypatch.setenv("HALAB_LIBVIRT_DRIVER", "kvm")
    assert spec.detect_driver()[0] == "kvm"
    monkeypatch.delenv("HALAB_LIBVIRT_DRIVER")
    assert spec.detect_driver("qemu") == ("qemu", "as configured")
    driver, why = spec.detect_driver()
    assert driver in ("kvm", "qemu") and why
