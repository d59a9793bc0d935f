"""The exercises without a lab: the catalogue's integrity (a page, hints, plain data), each
break and reference fix on the default lab's rendered configs, and the CLI's handling of
bad input (one paragraph, the right exit code, no traceback)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lab import exercises
from lab.errors import HalabError
from lab.exercises import haproxy, vrrp
from lab.exercises.exercise import DOCS, ExerciseError
from lab.node import Node
from lab.services import ServiceState
from lab.state import LabState
from lab.transport import Result
from provision import names, render

ROOT = Path(__file__).resolve().parents[2]


# -- the catalogue ---------------------------------------------------------------------------
def test_at_least_eight_exercises_with_unique_plain_names():
    assert len(exercises.CATALOGUE) >= 8
    for name in exercises.CATALOGUE:
        assert re.fullmatch(r"[a-z][a-z0-9-]+", name), name


@pytest.mark.parametrize("name", list(exercises.CATALOGUE))
def test_every_exercise_has_a_page_and_graduated_hints(name):
    ex = exercises.exercise(name)
    page = ROOT / ex.doc
    assert page.is_file(), f"{ex.doc} is missing"
    text = page.read_text()
    for section in ("## Goal", "## Symptoms", "## Where to look", "## What the fix teaches"):
        assert section in text, f"{ex.doc} has no '{section}' section"
    assert len(ex.hints) >= 3
    assert len(set(ex.hints)) == len(ex.hints)
    assert ex.level in ("beginner", "intermediate", "advanced")
    assert ex.title and ex.summary


def test_the_index_links_every_page():
    index = (ROOT / DOCS / "README.md").read_text()
    for name in exercises.CATALOGUE:
        assert f"({name}.md)" in index, f"docs/exercises/README.md does not link {name}.md"


def test_the_catalogue_is_plain_data():
    data = exercises.catalogue()
    assert json.loads(json.dumps(data)) == data
    assert [d["name"] for d in data] == list(exercises.CATALOGUE)
    assert {"name", "title", "summary", "level", "hints", "doc"} <= set(data[0])


def test_every_exercise_runs_on_the_default_lab(default_topo):
    assert {n: e.available(default_topo) for n, e in exercises.CATALOGUE.items()
            if e.available(default_topo) is not None} == {}


def test_unknown_names_are_refused_with_the_list():
    with pytest.raises(ExerciseError, match="no exercise named 'nosuch'.*equal-priorities"):
        exercises.exercise("nosuch")


def test_a_typo_address_is_free_and_in_the_subnet(default_topo):
    assert haproxy._typo(default_topo, "192.168.0.112") == "192.168.0.121"
    used = {str(n.address) for n in default_topo.nodes} | {str(default_topo.vip)}
    for addr in ("192.168.0.111", "192.168.0.101", "192.168.0.107"):
        typo = haproxy._typo(default_topo, addr)
        assert typo not in used and typo != addr


def test_a_wrong_program_path_differs():
    assert vrrp._wrong_path("/usr/bin/killall -0 haproxy") == ("/usr/bin/killall",
                                                               "/usr/sbin/killall")
    assert vrrp._wrong_path("/usr/sbin/x") == ("/usr/sbin/x", "/usr/bin/x")


# -- breaks and fixes on the rendered configs ------------------------------------------------
VIP = "192.168.0.203"  # lab.yaml's


class FakeTransport:
    """Files by path; `cat` reads them; pgrep finds only a keepalived started by hand."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files
        self.by_hand = False
        self.commands: list[str] = []

    def run(self, command: str, timeout: float | None = 60) -> Result:
        self.commands.append(command)
        if command.startswith("cat "):
            path = command.split()[1].strip("'")
            if path not in self.files:
                return Result(command, 1, "", "No such file")
            return Result(command, 0, self.files[path], "")
        if command == "keepalived":  # a keepalived by hand, outside the service manager
            self.by_hand = True
        elif command.startswith("pkill -x keepalived"):
            self.by_hand = False
        if command.startswith("pgrep"):
            return Result(command, 0 if self.by_hand else 1, "", "")
        if command.startswith("ip -o -4 addr show") and self.by_hand:
            # The forgotten keepalived outranks both LBs: it takes the VIP.
            return Result(command, 0, f"2: eth1    inet {VIP}/32 scope global eth1", "")
        return Result(command, 0, "", "")

    def put(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self.files[path] = data.decode()

    def close(self) -> None:
        pass


class FakeServices:
    def __init__(self) -> None:
        self.running = {names.HAPROXY_UNIT, names.KEEPALIVED_UNIT}
        self.log: list[str] = []

    def start(self, name: str) -> None:
        self.log.append(f"start {name}")
        self.running.add(name)

    def stop(self, name: str, timeout: float = 10.0) -> None:
        self.log.append(f"stop {name}")
        self.running.discard(name)

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> float:
        self.running.discard(name)
        return 0.0

    def status(self, name: str) -> ServiceState:
        return ServiceState(name, name in self.running)


class FakeProvider:
    def node_state(self, name: str) -> str:
        return "running"


class FakeLab:
    """What an exercise's break and fix touch of a Lab: its topology and its nodes."""

    def __init__(self, topo) -> None:  # noqa: ANN001
        self.topo = topo
        self.vip = str(topo.vip)
        self.provider = FakeProvider()
        self.nodes_: dict[str, Node] = {}
        for spec in topo.nodes:
            files = {}
            if spec in topo.load_balancers:
                files = {names.HAPROXY_CFG: render.haproxy_cfg(topo),
                         names.KEEPALIVED_CONF: render.keepalived_conf(topo, spec)}
            self.nodes_[spec.name] = Node(spec, FakeTransport(files), FakeServices(), None)

    def node(self, name: str) -> Node:
        return self.nodes_[name]

    def files(self) -> dict[str, dict[str, str]]:
        return {n: dict(node.transport.files) for n, node in self.nodes_.items()}


# What each break changes: (node, path, a line that appears). The reference fix must bring
# every file back byte for byte, which is also what `halab exercise reset` would write.
CHANGES = {
    "backup-haproxy-down": ("lb02", names.HAPROXY_CFG, "balance round-robin"),
    "wrong-backend": ("lb01", names.HAPROXY_CFG, "server k8s-master-02 192.168.0.121:6443"),
    "equal-priorities": ("lb01", names.KEEPALIVED_CONF, "priority 99"),
    "failing-health-check": ("lb01", names.KEEPALIVED_CONF, 'script "/usr/sbin/killall'),
    "no-track-script": ("lb01", names.KEEPALIVED_CONF, None),
    "auth-mismatch": ("lb01", names.KEEPALIVED_CONF, "auth_pass 2222"),
    "backup-binds-own-address": ("lb02", names.HAPROXY_CFG, "bind 192.168.0.102:6443"),
    "wrong-unicast-peer": ("lb02", names.KEEPALIVED_CONF, "unicast_peer {\n    192.168.0.102"),
    "rogue-router": ("k8s-master-07", vrrp.ROGUE_CONF, "virtual_router_id 51"),
}


def test_every_exercise_has_an_offline_round_trip():
    assert set(CHANGES) == set(exercises.CATALOGUE)


@pytest.mark.parametrize("name", list(exercises.CATALOGUE))
def test_the_reference_fix_undoes_the_break(default_topo, name):
    lab = FakeLab(default_topo)
    before = lab.files()
    ex = exercises.exercise(name)
    ex.breaks(lab)
    node, path, line = CHANGES[name]
    after = lab.files()
    assert after[node].get(path) != before[node].get(path), f"{name} changed nothing"
    if line is not None:
        assert line in after[node][path]
    else:
        assert "track_script" not in after[node][path]
        assert "track_script" not in after["lb02"][path]
    ex.reference_fix(lab)
    fixed = lab.files()
    for n, files in before.items():
        for p, text in files.items():
            assert fixed[n][p] == text, f"{name}: the fix left {n}:{p} different"


def test_a_break_refuses_a_file_it_does_not_recognise(default_topo):
    lab = FakeLab(default_topo)
    lab.node("lb01").transport.files[names.KEEPALIVED_CONF] = "vrrp_instance X {\n}\n"
    with pytest.raises(HalabError, match="no line matching"):
        exercises.exercise("equal-priorities").breaks(lab)


def test_keepalived_is_restarted_only_once_gone(default_topo):
    """A restart stops keepalived, waits for its lingering children, then starts it."""
    lab = FakeLab(default_topo)
    exercises.exercise("equal-priorities").breaks(lab)
    node = lab.node("lb01")
    assert node.services.log == ["stop keepalived", "start keepalived"]
    assert any(c.startswith("pgrep -x") for c in node.transport.commands)


# -- the progress record -------------------------------------------------------------------
def test_progress_belongs_to_one_incarnation_of_the_lab(tmp_path):
    from lab.exercises import record as progress

    state = LabState(tmp_path, "x")
    state.write({"since": 1.0})
    progress.begin(state, "equal-priorities", mystery=False)
    assert progress.read(state).active.name == "equal-priorities"
    state.update(since=2.0)  # the lab went down and came up again
    assert progress.read(state).active is None
    progress.begin(state, "wrong-backend", mystery=True)
    progress.took_hint(state, "wrong-backend", 2)
    s = progress.solve(state, "wrong-backend")
    assert s.hints == 2 and s.seconds is not None
    p = progress.read(state)
    assert p.active is None and [x.name for x in p.solved] == ["wrong-backend"]


# -- the CLI ---------------------------------------------------------------------------------
def _halab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", "exercise", *args],
                          capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def labdir(tmp_path, default_text):
    """A lab file whose lab is not up (a name no other lab uses)."""
    (tmp_path / "lab.yaml").write_text(default_text.replace("name: halab", "name: exunit"))
    return tmp_path


def test_list_needs_no_lab(tmp_path):
    p = _halab("list", "--json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert [e["name"] for e in json.loads(p.stdout)] == list(exercises.CATALOGUE)
    plain = _halab("list", cwd=tmp_path)
    assert plain.stdout.splitlines()[0].split("\t") == ["name", "level", "title"]


def test_list_shows_this_labs_progress(labdir):
    p = _halab("list", "--json", cwd=labdir)
    rows = json.loads(p.stdout)
    assert all(r["available"] and not r["solved"] and not r["active"] for r in rows)


@pytest.mark.parametrize("args, code, words", [
    (["start", "nosuch"], 2, "no exercise named 'nosuch'"),
    (["start"], 2, "name one exercise"),
    (["start", "equal-priorities", "--random"], 2, "not both"),
    (["check", "nosuch"], 2, "no exercise named 'nosuch'"),
    (["hint", "nosuch"], 2, "no exercise named 'nosuch'"),
    (["hint"], 2, "no exercise is active"),
    (["start", "equal-priorities"], 4, "not up"),
    (["check"], 4, "not up"),
    (["reset"], 4, "not up"),
])
def test_bad_input_is_one_paragraph(labdir, args, code, words):
    p = _halab(*args, cwd=labdir)
    assert p.returncode == code, (p.stdout, p.stderr)
    assert words in p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    assert p.stderr.startswith("halab: ")


def test_hints_come_one_at_a_time(labdir):
    first = _halab("hint", "equal-priorities", cwd=labdir)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("hint 1/4: ")
    second = _halab("hint", "equal-priorities", "--json", cwd=labdir)
    data = json.loads(second.stdout)
    assert [h["number"] for h in data["hints"]] == [2] and data["more"] is True
    every = json.loads(_halab("hint", "equal-priorities", "--all", "--json", cwd=labdir).stdout)
    assert [h["number"] for h in every["hints"]] == [1, 2, 3, 4] and every["more"] is False
    last = _halab("hint", "equal-priorities", cwd=labdir)
    assert last.stdout.startswith("hint 4/4: ") and "last hint" in last.stdout


def test_the_exercise_command_is_in_halabs_help(tmp_path):
    p = subprocess.run([sys.executable, "-m", "lab", "--help"], capture_output=True, text=True,
                       cwd=tmp_path)
    assert "exercise" in p.stdout
