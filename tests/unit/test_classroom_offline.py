"""A classroom without root: learner names, what the kernel sees of them, the parallel
bring-up's bookkeeping (with fake labs), and the CLI's refusals."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import classroom, steady, topology
from lab.classroom import ClassError, Classroom, learner_names, learner_topology
from lab.providers.netns import BRIDGE, NetnsProvider
from lab.state import LabState

# The kernel's limit on an interface name: IFNAMSIZ is 16 bytes with the final NUL.
IFNAMSIZ = 15


@pytest.mark.parametrize("n, first, last", [(1, "learner01", "learner01"),
                                            (99, "learner01", "learner99"),
                                            (100, "learner001", "learner100"),
                                            (999, "learner001", "learner999")])
def test_learner_names_are_numbered_to_sort(n, first, last):
    names = learner_names(n)
    assert (len(names), names[0], names[-1]) == (n, first, last)
    assert names == sorted(names) and len(set(names)) == n


@pytest.mark.parametrize("n", [0, -1, 1000])
def test_a_class_has_1_to_999_learners(n):
    with pytest.raises(ClassError, match="1 to 999"):
        learner_names(n)


@pytest.mark.parametrize("stem", ["", "Learner", "learner1", "abcdefghij", "lear-ner"])
def test_a_stem_is_up_to_nine_letters(stem):
    with pytest.raises(ClassError, match="1-9 lowercase letters"):
        learner_names(3, stem)


def test_every_learner_of_the_largest_class_is_a_valid_lab(default_topo):
    for stem in ("learner", "abcdefghi"):
        for name in learner_names(999, stem):
            t = learner_topology(default_topo, name)
            assert t.name == name
            assert t.model_dump(exclude={"name"}) == default_topo.model_dump(exclude={"name"})


def test_learner_prefixes_never_cover_one_another():
    """`halab clean` of one learner removes what starts with its prefix: no other
    learner's namespace may start with it (learner1- is no prefix of learner10-)."""
    prefixes = [f"halab-{n}-" for n in learner_names(999)]
    assert len(set(prefixes)) == 999
    for p in prefixes:
        assert [q for q in prefixes if q.startswith(p)] == [p]


def test_namespaces_are_unique_and_interface_names_fit_ifnamsiz(default_topo, tmp_path):
    """Every namespace of every learner carries its lab's prefix and no two learners share
    one. Interface names never carry the lab's name: the provider creates every one of
    them inside the lab's own namespaces (the nodes' eth1, the switch's bridge and ports),
    so they are the same in every lab, cannot clash, and fit IFNAMSIZ at any N."""
    seen: set[str] = set()
    for name in learner_names(999):
        topo = learner_topology(default_topo, name)
        p = NetnsProvider(topo, LabState(tmp_path, name))
        spaces = [p.switch, *(p.ns(n.name) for n in topo.nodes)]
        assert all(ns.startswith(f"halab-{name}-") for ns in spaces)
        assert not seen & set(spaces)
        seen |= set(spaces)
        # Namespace names are files in /run/netns: NAME_MAX, not IFNAMSIZ, applies.
        assert max(len(ns) for ns in spaces) < 255
        interfaces = [topo.network.interface, BRIDGE, *(p.port(n.name) for n in topo.nodes)]
        assert all(0 < len(i) <= IFNAMSIZ and name not in i for i in interfaces), interfaces
        assert len({p.port(n.name) for n in topo.nodes}) == len(topo.nodes)
    assert len(seen) == 999 * (len(default_topo.nodes) + 1)


def test_a_node_name_too_long_for_an_interface_gets_a_short_port(default_text, tmp_path):
    long = "k8s-master-0123456789"  # 21 characters: too long for a switch port's name
    topo = topology.parse(default_text.replace("k8s-master-07", long))
    p = NetnsProvider(learner_topology(topo, "learner999"), LabState(tmp_path, "learner999"))
    assert len(p.port(long)) <= IFNAMSIZ


def test_a_learner_lab_file_is_the_base_renamed(default_text, default_topo):
    text = classroom.learner_text(default_text, "learner042")
    assert topology.parse(text) == learner_topology(default_topo, "learner042")


def test_the_arp_table_is_sized_for_the_class(default_topo, tmp_path):
    stat = tmp_path / "arp_cache"
    stat.write_text("entries  allocs   destroys\n00000042 0000023c 000001d9\n"
                    "00000042 00000011 00000000\n")
    assert classroom.arp_entries(stat) == 0x42
    need = classroom.neighbour_needs(default_topo, 100, 0x42)
    soft, hard = need["net.ipv4.neigh.default.gc_thresh2"], need[
        "net.ipv4.neigh.default.gc_thresh3"]
    # Every node of a lab may know every other node and the VIP.
    assert soft == 0x42 + 100 * len(default_topo.nodes) ** 2 and hard == 2 * soft
    assert soft > 1024, "100 labs outgrow the kernel's default hard limit"


def test_a_class_that_would_not_fit_in_memory_is_refused(tmp_path, default_text,
                                                         monkeypatch):
    from lab import system
    from lab.errors import PrerequisiteError

    (tmp_path / "lab.yaml").write_text(default_text)
    monkeypatch.setattr(system, "mem_available_kb", lambda: 1000 * 1024)
    with pytest.raises(PrerequisiteError, match="at most 15 learners"):
        Classroom(tmp_path / "lab.yaml").check(learner_names(100))
    assert not (tmp_path / ".halab").exists()


# -- the bring-up, with fake labs ----------------------------------------------------------
@dataclass
class FakeProvider:
    name: str
    log: list[str]

    def down(self) -> None:
        self.log.append(f"down {self.name}")


class FakeLab:
    """Up takes a moment and records how many labs were coming up at once."""

    lock = threading.Lock()
    running = 0
    most = 0

    def __init__(self, name: str, log: list[str], fail: set[str]) -> None:
        self.name, self.log, self.fail = name, log, fail
        self.provider = FakeProvider(name, log)

    def up(self, progress) -> None:
        cls = type(self)
        with cls.lock:
            cls.running += 1
            cls.most = max(cls.most, cls.running)
        try:
            for step in ("namespaces", "provision"):
                progress(step)
                time.sleep(0.05)
            if self.name in self.fail:
                raise RuntimeError(f"{self.name}'s sshd never answered")
        finally:
            with cls.lock:
                cls.running -= 1

    def close(self) -> None:
        pass


@pytest.fixture
def fake_class(tmp_path, default_text, monkeypatch):
    base = tmp_path / "lab.yaml"
    base.write_text(default_text)
    room = Classroom(base)
    log: list[str] = []
    fail: set[str] = set()
    FakeLab.running = FakeLab.most = 0
    monkeypatch.setattr(Classroom, "check", lambda self, names: None)
    monkeypatch.setattr(Classroom, "_make_room", lambda self, n, notice: None)
    monkeypatch.setattr(Classroom, "lab", lambda self, name: FakeLab(name, log, fail))
    monkeypatch.setattr(Classroom, "down", lambda self: log.append("class down") or [])
    monkeypatch.setattr(steady, "problems", lambda lab: [])
    monkeypatch.setattr(steady, "settle_timeout", lambda lab: 1.0)
    return room, log, fail


def test_labs_come_up_in_a_bounded_pool_and_a_failure_stays_alone(fake_class):
    room, log, fail = fake_class
    fail.add("learner04")
    outcomes = room.up(10, parallel=3)
    assert [o.name for o in outcomes] == learner_names(10)
    assert [o.name for o in outcomes if not o.ok] == ["learner04"]
    assert "sshd never answered" in (outcomes[3].error or "")
    assert 1 < FakeLab.most <= 3, "in parallel, never more than --parallel at once"
    assert log.count("down learner04") >= 1, "the failed lab is cleaned"
    assert not [e for e in log if e.startswith("down ") and e != "down learner04"]
    record = room.read()
    assert record["phase"] == "up" and record["learners"] == learner_names(10)
    assert record["results"]["learner04"]["ok"] is False
    assert all(room.lab_file(n).exists() for n in learner_names(10))


def test_an_interrupted_bring_up_removes_the_class(fake_class):
    room, log, _ = fake_class

    def interrupt(outcome: classroom.Outcome) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        room.up(10, parallel=2, done=interrupt)
    assert log[-1] == "class down"
    assert len([e for e in log if e.startswith("down learner")]) < 10, \
        "labs not yet started are not started"


def test_no_exercises_module_means_no_exercise(monkeypatch):
    monkeypatch.setitem(sys.modules, "lab.exercises", None)  # a build without them
    assert classroom.exercise_of(None) is None  # type: ignore[arg-type]


def test_the_exercise_a_learner_works_on_is_reported(monkeypatch):
    import types

    @dataclass
    class Active:
        name: str
        started: float

    fake = types.ModuleType("lab.exercises")
    fake.active = lambda lab: Active("equal-priorities", 1.0)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lab.exercises", fake)
    assert classroom.exercise_of(None) == {"name": "equal-priorities", "started": 1.0}


# -- the CLI -------------------------------------------------------------------------------
def _halab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True,
                          text=True, cwd=cwd)


@pytest.mark.parametrize("args, code, words", [
    (["class", "up", "0"], 2, "1 to 999 learners"),
    (["class", "up", "1000"], 2, "1 to 999 learners"),
    (["class", "up", "3", "--stem", "L1"], 2, "1-9 lowercase letters"),
    (["class", "status"], 4, "no class is up"),
])
def test_class_refusals_are_one_paragraph(tmp_path, default_text, args, code, words):
    (tmp_path / "lab.yaml").write_text(default_text)
    p = _halab(*args, cwd=tmp_path)
    assert p.returncode == code, p.stderr
    assert words in p.stderr and "Traceback" not in p.stderr + p.stdout
    assert not (tmp_path / ".halab").exists(), "nothing made for a refused command"


def test_status_names_a_learner_that_failed_and_one_that_is_down(fake_class, monkeypatch):
    room, _, fail = fake_class
    fail.add("learner02")
    room.up(3, parallel=3)
    monkeypatch.undo()  # the real labs again: none of them is up
    failed, down = room.learner_status("learner02"), room.learner_status("learner03")
    assert failed.state == "failed" and "sshd never answered" in (failed.error or "")
    assert down.state == "down" and not down.healthy and down.problems is None
