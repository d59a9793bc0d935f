"""Provisioning against a fake node: idempotence and validation, no root needed."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from lab import topology
from lab.errors import HalabError
from lab.node import Node
from lab.services import ServiceState, Unit
from lab.transport import Result
from provision.pki import LabPki
from provision.roles import apply

ROOT = Path(__file__).resolve().parents[2]


class FakeTransport:
    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, int]] = {}
        self.commands: list[str] = []
        self.fail: set[str] = set()

    def run(self, command: str, timeout: float | None = 60) -> Result:
        self.commands.append(command)
        if command.startswith("for f in "):  # Node.put_many's comparison
            import hashlib
            import shlex

            paths = shlex.split(command.removeprefix("for f in ").split(";")[0])
            lines = [f"{hashlib.sha256(self.files[p][0]).hexdigest()} {self.files[p][1]:o} {p}"
                     for p in paths if p in self.files]
            return Result(command, 0, "".join(line + "\n" for line in lines), "")
        rc = 1 if any(f in command for f in self.fail) else 0
        return Result(command, rc, "", "config error" if rc else "")

    def put(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self.files[path] = (data, mode)

    def close(self) -> None:
        pass


class FakeServices:
    def __init__(self) -> None:
        self.units: dict[str, Unit] = {}
        self.running: set[str] = set()
        self.log: list[str] = []

    def install(self, unit: Unit) -> bool:
        changed = self.units.get(unit.name) != unit
        self.units[unit.name] = unit
        return changed

    def install_many(self, units) -> list[str]:  # noqa: ANN001
        return [u.name for u in units if self.install(u)]

    def installed(self) -> list[str]:
        return sorted(self.units)

    def start(self, name: str) -> None:
        self.log.append(f"start {name}")
        self.running.add(name)

    def stop(self, name: str, timeout: float = 10.0) -> None:
        self.running.discard(name)

    def restart(self, name: str) -> None:
        self.log.append(f"restart {name}")

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        self.running.discard(name)

    def status(self, name: str) -> ServiceState:
        return ServiceState(name, name in self.running)

    def uninstall(self, name: str) -> None:
        self.log.append(f"uninstall {name}")
        self.running.discard(name)
        del self.units[name]


@pytest.fixture
def pki(tmp_path, default_topo):
    return LabPki(tmp_path / "pki", default_topo)


def _node(topo, name):
    t, s = FakeTransport(), FakeServices()
    return Node(topo.node(name), t, s, None), t, s


def test_first_provision_writes_validates_and_starts(default_topo, pki):
    node, t, s = _node(default_topo, "lb01")
    change = apply(default_topo, node, pki)
    assert set(t.files) == {"/etc/haproxy/haproxy.cfg", "/etc/keepalived/keepalived.conf"}
    assert "haproxy -c -f /etc/haproxy/haproxy.cfg" in t.commands  # before it starts
    assert "keepalived -t -f /etc/keepalived/keepalived.conf" in t.commands
    assert s.log == ["start haproxy", "start keepalived"] and change.started


def test_second_provision_changes_and_restarts_nothing(default_topo, pki):
    node, t, s = _node(default_topo, "k8s-master-01")
    apply(default_topo, node, pki)
    s.log.clear()
    change = apply(default_topo, node, pki)
    assert not change.changed and s.log == []


def test_changed_config_restarts_only_its_daemon(default_topo, pki):
    node, t, s = _node(default_topo, "lb01")
    apply(default_topo, node, pki)
    s.log.clear()
    t.files["/etc/keepalived/keepalived.conf"] = (b"old", 0o644)
    change = apply(default_topo, node, pki)
    assert change.changed_files == ["/etc/keepalived/keepalived.conf"]
    assert s.log == ["restart keepalived"]


def test_invalid_config_is_never_started(default_topo, pki):
    node, t, s = _node(default_topo, "lb01")
    t.fail.add("haproxy -c")
    with pytest.raises(HalabError) as e:
        apply(default_topo, node, pki)
    assert "lb01" in str(e.value) and "config error" in str(e.value)
    assert s.log == []


def test_apiserver_certificate_has_kubeadm_sans(default_topo, pki):
    from cryptography import x509

    crt, _ = pki.apiserver(default_topo.node("k8s-master-02"))
    san = x509.load_pem_x509_certificate(crt).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    names = set(san.get_values_for_type(x509.DNSName))
    ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    assert {"kubernetes", "kubernetes.default", "k8s-master-02"} <= names
    assert {"192.168.0.203", "192.168.0.112"} <= ips
    # made once, then reused: re-provisioning changes nothing
    assert pki.apiserver(default_topo.node("k8s-master-02"))[0] == crt


def test_the_kubeadm_guide_profile_writes_its_check_script(pki):
    topo = topology.load(ROOT / "lab.yaml", profile="kubeadm-guide")
    node, t, s = _node(topo, "lb01")
    apply(topo, node, pki)
    script, mode = t.files["/etc/keepalived/check_apiserver.sh"]
    assert mode == 0o755
    assert b"curl --silent --max-time 2 --insecure https://localhost:6443/" in script
    assert b"https://192.168.0.203:6443/" in script


def test_a_unit_the_roles_no_longer_have_is_removed(pki):
    """The fast profile's watcher on a node brought up again with the seed's settings (a
    node's disk outlives `halab down`) is stopped and removed; the lab could never be
    steady with a unit installed that nothing starts."""
    fast = topology.load(ROOT / "lab.yaml", profile="fast")
    seed = topology.load(ROOT / "lab.yaml")
    node, t, s = _node(fast, "lb01")
    apply(fast, node, pki)
    assert "haproxy-watch" in s.installed()
    node.spec = seed.node("lb01")
    change = apply(seed, node, pki)
    assert "haproxy-watch" not in s.installed() and "uninstall haproxy-watch" in s.log
    assert change.removed == ["haproxy-watch"]
    assert set(s.installed()) == {"haproxy", "keepalived"}
