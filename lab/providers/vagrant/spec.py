"""What the Vagrantfile builds, resolved from the topology: the one source of truth.

halab writes this as JSON next to the lab's state and the top-level Vagrantfile reads it,
so lab.yaml's defaults and validation live in one place (Python), not twice.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lab.topology import Role, Topology

SPEC_ENV = "HALAB_VAGRANT_SPEC"


def detect_driver(requested: str = "auto") -> tuple[str, str]:
    """(driver, why). kvm needs /dev/kvm *and* a CPU that says it virtualises: on machines
    where /dev/kvm exists without vmx/svm, libvirt still reports kvm but guests hang."""
    forced = os.environ.get("HALAB_LIBVIRT_DRIVER") or requested
    if forced in ("kvm", "qemu"):
        return forced, "as configured"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    has_flags = " vmx" in flags or " svm" in flags
    usable = os.access("/dev/kvm", os.R_OK | os.W_OK)
    if usable and has_flags:
        return "kvm", "/dev/kvm is usable and the CPU has vmx/svm"
    why = "no /dev/kvm" if not usable else "/dev/kvm exists but the CPU shows no vmx/svm"
    return "qemu", f"{why}: software emulation (TCG), slow"


def vm_nodes(topo: Topology) -> list:
    return [n for n in topo.nodes if Role.CLIENT not in n.roles]


def build(topo: Topology, *, driver: str, uri: str, pool_path: Path, emulator: Path | None,
          public_key: str, serial_dir: Path,
          private_key: Path | None = None,
          host_keys: dict[str, Path] | None = None) -> dict[str, Any]:
    host_keys = host_keys or {}
    prefix = topo.prefix
    return {
        "lab": topo.name,
        "prefix": prefix,
        "driver": driver,
        "uri": uri,
        "emulator": str(emulator) if emulator else None,
        "boot_timeout": topo.vagrant.boot_timeout,
        "storage_pool": {"name": f"{prefix}pool", "path": str(pool_path)},
        # Vagrant reaches its VMs over the management network (eth0); halab never does.
        # Isolated: no NAT, no route out; its bridge and dnsmasq live with the lab's libvirt.
        "management": {"name": f"{prefix}mgmt", "address": "192.168.121.0/24",
                       "mode": "none"},
        # The lab network (eth1): forwarding none, no DHCP. Its bridge carries the client's
        # address: the machine running the VMs is the operator's desk, as on a workstation.
        "lan": {"name": f"{prefix}lan", "interface": topo.network.interface,
                "prefixlen": topo.prefixlen, "host_ip": str(topo.client.address)},
        "public_key": public_key.strip(),
        # How a person's `vagrant ssh NODE` logs in once halab has set the node up: as halab
        # does (root, the lab's key, the node's lab address), not as the box's vagrant user.
        "ssh": {"user": "root", "private_key": str(private_key) if private_key else None},
        "serial_dir": str(serial_dir),
        "hosts": {n.name: str(n.address) for n in topo.nodes},
        "nodes": [
            {"name": n.name, "address": str(n.address), "cpus": n.vm.cpus,
             "memory": n.vm.memory_mib, "box": n.vm.box or topo.vagrant.box,
             # The sshd host key halab made for the node (private; its .pub beside it):
             # node_setup installs it, the lab's known_hosts pins it. None: sshd keeps the
             # box's, and halab, which knows no such key, refuses to connect.
             "host_key": str(host_keys[n.name]) if n.name in host_keys else None}
            for n in vm_nodes(topo)
        ],
    }
