"""Every fault of the catalogue, injected and undone on the real lab, through the same
entry points the CLI and the chaos runner use (faults.inject / faults.undo).

Faults on a load balancer hit the BACKUP: the VIP stays put, so each test shows the fault
and its undo without paying for a failover (test_failover.py and the chaos scenarios do).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab import faults, observe, timing
from lab.errors import HalabError
from lab.wait import until

pytestmark = [pytest.mark.needs_lab, pytest.mark.disruptive]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def backup(lab):
    return lab.topo.best_backup_lb.name


def _active(lab, node, svc):
    return lab.node(node).services.status(svc).active


# What a fault did, seen from outside the harness's bookkeeping (pid files, node_state):
# the node's own process table, and what the client can reach over the lab network.
PORTS = {"haproxy": 6443, "kube-apiserver": 6443, "ingress": 443}


def _processes(lab, node, name):
    return lab.node(node).run("pgrep -x %s", name).stdout.split()


def _reachable(lab, node, port):
    return lab.client.run("nc -z -w 1 %s %s", lab.node(node).address, port).rc == 0


def _serving(lab, node, service):
    """Is the daemon there, as the node's process table and the network say?"""
    exe = {"kube-apiserver": "nginx", "ingress": "nginx"}.get(service, service)
    procs = bool(_processes(lab, node, exe))
    if service in PORTS:
        return procs and _reachable(lab, node, PORTS[service])
    return procs


@pytest.mark.parametrize("name", ["kill", "stop"])
@pytest.mark.parametrize("service", ["haproxy", "keepalived"])
def test_daemon_fault_and_undo(steady, backup, name, service):
    lab = steady
    assert _serving(lab, backup, service)
    faults.inject(lab, name, [backup], {"service": service})
    assert not _serving(lab, backup, service), f"{service} still runs on {backup}"
    faults.undo(lab, name, [backup], {"service": service})
    # Running is not yet listening: HAProxy binds its ports a moment after it starts (seen
    # once node commands stopped sourcing the operator's ~/.bashrc and got 5x faster).
    until(f"{service} serving on {backup} again", lambda: _serving(lab, backup, service),
          timeout=5, interval=0.1)


def test_restart_gives_a_new_process(steady, backup):
    lab = steady
    before = _processes(lab, backup, "haproxy")
    faults.inject(lab, "restart", [backup], {"service": "haproxy"})
    after = _processes(lab, backup, "haproxy")
    assert after and not set(after) & set(before), (before, after)
    until(f"the new haproxy on {backup} listening on 6443",
          lambda: _reachable(lab, backup, 6443), timeout=5, interval=0.1)
    faults.undo(lab, "restart", [backup], {"service": "haproxy"})
    until(f"haproxy serving on {backup}", lambda: _serving(lab, backup, "haproxy"), timeout=5,
          interval=0.1)


def test_kill_nginx_kills_both_standins_of_a_master(steady):
    lab = steady
    m = lab.masters[0].name
    faults.inject(lab, "kill", [m], {"service": "nginx"})
    assert not _processes(lab, m, "nginx")
    assert not _reachable(lab, m, 6443) and not _reachable(lab, m, 443)
    faults.undo(lab, "kill", [m], {"service": "nginx"})
    # Running is not yet listening: nginx binds its ports a moment after it starts.
    until(f"{m} listening on 6443 and 443 again",
          lambda: _reachable(lab, m, 6443) and _reachable(lab, m, 443), timeout=5,
          interval=0.1)


def _gone(lab, node):
    """Nothing of the node answers on the lab network: not even its sshd."""
    return not _reachable(lab, node, 22)


def test_crash_and_boot(steady, backup):
    lab = steady
    faults.inject(lab, "crash", [backup])
    assert _gone(lab, backup)
    faults.undo(lab, "crash", [backup])
    assert _reachable(lab, backup, 22)
    assert _serving(lab, backup, "haproxy") and _serving(lab, backup, "keepalived")


def test_node_return_after_crash(steady, backup):
    lab = steady
    faults.inject(lab, "crash", [backup])
    assert _gone(lab, backup)
    faults.inject(lab, "return", [backup])
    assert _serving(lab, backup, "haproxy") and _serving(lab, backup, "keepalived")


def test_freeze_and_thaw(steady, backup):
    lab = steady
    faults.inject(lab, "freeze", [backup])
    assert lab.provider.node_state(backup) == "frozen"
    # A frozen node answers nothing, not even SSH's TCP handshake completes a session.
    r = lab.client.run("nc -z -w 1 %s 22 </dev/null && timeout 2 ssh -F %s -o "
                       "ConnectTimeout=1 %s true", lab.node(backup).address,
                       lab.state.ssh_config, backup)
    assert r.rc != 0
    faults.undo(lab, "freeze", [backup])
    assert lab.provider.node_state(backup) == "running"
    assert lab.node(backup).check_output("echo back") == "back"


def test_link_down_and_up(steady, backup):
    lab = steady
    addr = lab.node(backup).address
    faults.inject(lab, "link-down", [backup])
    assert lab.provider.node_state(backup) == "link-down"
    assert lab.client.run("ping -c 1 -W 1 %s", addr).rc != 0
    faults.undo(lab, "link-down", [backup])
    assert lab.client.run("ping -c 1 -W 2 %s", addr).rc == 0


def test_partition_cuts_only_the_pair(steady, backup):
    lab = steady
    master = lab.topo.master_lb.name
    a, b, m = lab.node(master), lab.node(backup), lab.masters[0]
    faults.inject(lab, "partition", [master, backup])
    assert a.run("ping -c 1 -W 1 %s", b.address).rc != 0
    assert b.run("ping -c 1 -W 1 %s", a.address).rc != 0
    assert a.run("ping -c 1 -W 1 %s", m.address).rc == 0  # the rest still reachable
    assert "nft table halab-partition" in faults.impairments(lab, master)
    faults.undo(lab, "partition", [master, backup])
    assert a.run("ping -c 1 -W 1 %s", b.address).rc == 0
    assert faults.impairments(lab, master) == faults.impairments(lab, backup) == []


def _received(lab, address, count=50):
    out = lab.client.run("ping -q -n -c %s -i 0.01 -W 1 %s", count, address).stdout
    return int(re.search(r"(\d+) received", out).group(1))


def test_loss_drops_packets_and_undo_stops_it(steady, backup):
    lab = steady
    addr = lab.node(backup).address
    how = faults.loss(lab, backup, 30)
    got = _received(lab, addr)
    # 30 % of 50 replies dropped: expect ~35; all 50 back would mean no loss (p = 2e-8).
    assert 10 < got < 50, f"{how}: {got}/50 replies with 30 % loss"
    faults.undo(lab, "loss", [backup])
    assert _received(lab, addr) == 50
    assert faults.impairments(lab, backup) == []


@pytest.mark.parametrize("name", ["delay", "jitter"])
def test_delay_and_jitter(steady, backup, name):
    lab = steady
    addr = lab.node(backup).address
    try:
        faults.inject(lab, name, [backup], {"ms": 40, "jitter_ms": 10 if name == "jitter" else 0})
    except faults.FaultUnavailable as e:
        pytest.skip(f"this kernel cannot delay packets: {e}")
    out = lab.client.run("ping -q -n -c 5 -i 0.05 %s", addr).stdout
    avg = float(re.search(r"= [\d.]+/([\d.]+)/", out).group(1))
    assert avg >= 30, out
    faults.undo(lab, name, [backup])
    assert faults.impairments(lab, backup) == []


def test_apiservers_down_n_of_3(steady):
    lab = steady
    faults.inject(lab, "apiservers-down", [], {"count": 2})
    down = [m.name for m in lab.masters if not _active(lab, m.name, "kube-apiserver")]
    assert down == [m.name for m in lab.masters[:2]]
    for m in down:
        observe.wait_backend(lab, m, up=False, timeout=timing.backend_down(lab.topo).with_margin)
    assert {lab.prober.probe("api", timeout=2).master for _ in range(6)} == {
        lab.masters[2].name}
    faults.undo(lab, "apiservers-down", [], {"count": 2})
    assert all(_active(lab, m.name, "kube-apiserver") for m in lab.masters)


def test_ingress_down_on_a_master(steady):
    lab = steady
    m = lab.topo.ingresses[0].name
    faults.inject(lab, "ingress-down", [m])
    assert not _active(lab, m, "ingress") and _active(lab, m, "kube-apiserver")
    faults.undo(lab, "ingress-down", [m])
    assert _active(lab, m, "ingress")


def test_bad_fault_input_is_one_clear_error(lab):
    with pytest.raises(HalabError, match="no fault named 'nosuch'"):
        faults.inject(lab, "nosuch", ["lb01"])
    with pytest.raises(HalabError, match="exactly two"):
        faults.inject(lab, "partition", ["lb01"])
    with pytest.raises(HalabError, match="needs service"):
        faults.inject(lab, "kill", ["lb01"])
    with pytest.raises(HalabError, match="no parameter colour"):
        faults.inject(lab, "loss", ["lb01"], {"colour": "red"})
    with pytest.raises(HalabError, match="no control-plane role"):
        faults.inject(lab, "apiservers-down", ["lb01"])
    with pytest.raises(HalabError, match="the client"):
        faults.inject(lab, "loss", [lab.client.name])


def _halab(lab_file, *args):
    return subprocess.run([sys.executable, "-m", "lab", *args, "-f", str(lab_file)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_cli_injects_and_undoes_by_hand(steady, backup, lab_file):
    lab = steady
    p = _halab(lab_file, "fault", "kill", backup, "-p", "service=haproxy")
    assert p.returncode == 0, p.stderr
    assert not _active(lab, backup, "haproxy")
    p = _halab(lab_file, "fault", "--undo", "kill", backup, "-p", "service=haproxy")
    assert p.returncode == 0, p.stderr
    assert _active(lab, backup, "haproxy")
    p = _halab(lab_file, "fault", "--list")
    assert p.returncode == 0 and all(name in p.stdout for name in faults.CATALOGUE)


def test_cli_bad_fault_is_one_paragraph(lab, lab_file):
    p = _halab(lab_file, "fault", "partition", "lb01")
    assert p.returncode == 1
    assert p.stderr.startswith("halab: fault 'partition' takes exactly two")
    assert "Traceback" not in p.stderr + p.stdout
