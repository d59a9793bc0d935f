"""A classroom of three labs on the same addresses: isolated from one another and from the
machine. One learner's lab is broken; only that one fails over and is reported.

The class is brought up through the CLI from a copy of lab.yaml, with learners named
pyclass01..03 so that it never meets an instructor's class (learner01...) on the same
machine; the session's lab is not used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import classbench, failover, observe, timing
from lab.classroom import Classroom, close_lab
from lab.lab import Lab
from lab.measure import Verdict
from lab.providers.netns import netns_list
from lab.providers.netns.services import pid_ns, processes_in

# One worker for the whole file under pytest-xdist: its tests share one class (`room`),
# whose learners' names are the machine's namespace prefixes.
pytestmark = [pytest.mark.needs_lab, pytest.mark.slow, pytest.mark.xdist_group("classroom")]
ROOT = Path(__file__).resolve().parents[1]
STEM = "pyclass"
N = 3


def _halab(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def _ours() -> list[str]:
    return [ns for ns in netns_list() if ns.startswith(f"halab-{STEM}")]


def _root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                         check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


class Room:
    def __init__(self, base: Path, links_before: set[str], up: subprocess.CompletedProcess):
        self.base, self.links_before, self.up = base, links_before, up
        self.room = Classroom(base)
        self.labs: dict[str, Lab] = {}

    def lab(self, name: str) -> Lab:
        if name not in self.labs:
            self.labs[name] = self.room.lab(name)
        return self.labs[name]

    def status(self) -> dict:
        p = _halab("class", "status", "--json", "-f", str(self.base), cwd=self.base.parent)
        assert p.returncode == 0, p.stderr
        return {s["name"]: s for s in json.loads(p.stdout)["learners"]}


@pytest.fixture(scope="module")
def room(tmp_path_factory) -> Iterator[Room]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if _ours():
        pytest.fail(f"namespaces of an earlier class are still here: {_ours()[:3]}; remove "
                    "them with `halab class down -f` its lab file", pytrace=False)
    d = tmp_path_factory.mktemp("classroom")
    base = d / "lab.yaml"
    base.write_text((ROOT / "lab.yaml").read_text())
    before = _root_links()
    up = _halab("class", "up", str(N), "--stem", STEM, "-f", str(base), cwd=d)
    r = Room(base, before, up)
    try:
        yield r
    finally:
        for lab in r.labs.values():
            close_lab(lab)
        _halab("class", "down", "-f", str(base), cwd=d)


def test_a_class_comes_up_on_the_same_addresses_and_nothing_in_the_root_namespace(room):
    assert room.up.returncode == 0, room.up.stderr + room.up.stdout
    names = [f"{STEM}0{i}" for i in range(1, N + 1)]
    assert room.room.learners() == names
    spaces = _ours()
    for name in names:
        lab = room.lab(name)
        assert len([ns for ns in spaces if ns.startswith(f"halab-{name}-")]) == 7
        assert str(lab.topo.vip) == "192.168.0.203"  # every learner, the same addresses
    # Every interface of every lab was made inside the lab's namespaces: the machine's own
    # namespace gained none, and no daemon of a lab runs in it.
    assert _root_links() - room.links_before == set()
    root_net = os.stat("/proc/self/ns/net").st_ino  # this test runs in the machine's own
    for name in names:
        provider = room.lab(name).provider
        for node in room.lab(name).topo.nodes:
            if node.name == "client":
                continue
            init = provider._init_pid(node.name)
            assert init is not None, f"{name}/{node.name} has no PID 1"
            node_net = os.stat(f"/run/netns/{provider.ns(node.name)}").st_ino
            nets = {os.stat(f"/proc/{pid}/ns/net").st_ino
                    for pid in processes_in(pid_ns(init)).values()}
            assert nets == {node_net} and root_net not in nets, f"{name}/{node.name}"


def _holds(v: Verdict) -> None:
    __tracebackhide__ = True
    if v.status == "inconclusive":
        pytest.skip(str(v))
    assert v.passed, str(v)


def test_one_learner_broken_fails_over_alone_and_is_reported(room):
    names = room.room.learners()
    broken, others = names[1], [names[0], names[2]]
    master, backup = room.room.base.master_lb.name, room.room.base.best_backup_lb.name
    for name in names:
        assert observe.vip_holders(room.lab(name)) == [master], name
    marks = {n: classbench.vrrp_marks(room.lab(n)) for n in others}

    # The headline failover, judged as the failover suite judges it, on one learner.
    v = failover.haproxy_crash(room.lab(broken))
    _holds(v)
    assert observe.vip_holders(room.lab(broken)) == [backup]

    for name in others:
        lab = room.lab(name)
        assert observe.vip_holders(lab) == [master], f"{name}'s VIP moved"
        r = lab.prober.probe("api")
        assert r.ok and r.via == lab.node(master).address, f"{name}: {r.error}"
        moves = classbench.vrrp_transitions(lab, marks[name])
        assert not any(moves.values()), f"{name}'s keepalived changed state: {moves}"

    status = room.status()
    assert status[broken]["vip_holders"] == [backup]
    assert f"haproxy is not running on {master}" in status[broken]["problems"], status[broken]
    for name in others:
        assert status[name]["problems"] == [] and status[name]["vip_holders"] == [master], \
            status[name]
    plain = _halab("class", "status", "-f", str(room.base), cwd=room.base.parent)
    line = next(ln for ln in plain.stdout.splitlines() if ln.startswith(broken))
    assert "haproxy is not running" in line and "steady" not in line.split("\t")[3]
    # The bound the verdict used is the deployed config's, for a learner as for any lab.
    assert timing.haproxy_crash(room.lab(broken).topo) == timing.haproxy_crash(room.room.base)


def test_class_up_twice_is_refused(room):
    p = _halab("class", "up", "2", "--stem", STEM, "-f", str(room.base), cwd=room.base.parent)
    assert p.returncode == 4 and "already up" in p.stderr and "Traceback" not in p.stderr
    assert len(_ours()) == 7 * N, "the refused command built nothing"


def test_class_down_leaves_no_namespace_of_any_learner(room):
    for lab in room.labs.values():
        close_lab(lab)
    room.labs.clear()
    p = _halab("class", "down", "-f", str(room.base), cwd=room.base.parent)
    assert p.returncode == 0, p.stderr
    assert _ours() == []
    assert not room.room.dir.exists()
    p = _halab("class", "status", "-f", str(room.base), cwd=room.base.parent)
    assert p.returncode == 4 and "no class is up" in p.stderr


def test_class_down_after_a_sigkilled_class_up_leaves_nothing(tmp_path):
    """The class record names every learner before anything is built, so `class down`
    finds what an interrupted `class up` left, by namespace prefix."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    import signal

    from lab.providers.netns import netns_pids
    from lab.wait import until

    base = tmp_path / "lab.yaml"
    base.write_text((ROOT / "lab.yaml").read_text())
    up = subprocess.Popen([sys.executable, "-m", "lab", "class", "up", str(N), "--stem", STEM,
                           "-f", str(base)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        until("the interrupted class to have processes in its labs",
              lambda: any(netns_pids(ns) for ns in _ours()), timeout=60, interval=0.01)
    finally:
        up.send_signal(signal.SIGKILL)
        up.wait()
    assert _ours(), "the test should interrupt a class that has started building"
    p = _halab("class", "down", "-f", str(base), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert _ours() == []
    assert not (tmp_path / ".halab" / "_class").exists()
