"""What `halab status` and `halab fault --list` print: JSON for scripts, plain lines in a
pipe, Rich tables at a terminal. The lab is a fake one (no root): real Nodes over a fake
transport, a fake provider for machine states."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from terminal import at_terminal
from typer.testing import CliRunner

from lab import cli, faults, topology
from lab.errors import TransportError
from lab.lab import Lab
from lab.node import Node
from lab.services import ServiceState
from lab.topology import Role
from lab.transport import Result

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "unit" / "data"
BOX = set("┏┃━│┡└┗")


class World:
    """What the fake lab's nodes answer; tests change it to break things."""

    def __init__(self, topo: topology.Topology) -> None:
        self.topo = topo
        self.states = {n.name: "running" for n in topo.nodes}
        self.holders = {"lb01"}
        self.unreachable: set[str] = set()  # the transport fails (SSH refused, ...)
        self.ip_fails: set[str] = set()  # `ip` runs and exits non-zero
        self.vrrp_silent: set[str] = set()  # keepalived writes no dump when asked
        self.stopped: set[tuple[str, str]] = set()
        self.backend_status = {"k8s-master-01": "UP", "k8s-master-02": "UP",
                               "k8s-master-07": "DOWN"}


class FakeTransport:
    def __init__(self, world: World, node: str) -> None:
        self.world, self.node = world, node

    def run(self, command: str, timeout: float | None = 60) -> Result:
        w = self.world
        if self.node in w.unreachable:
            raise TransportError(f"{self.node}: SSH connection refused")
        if command.startswith("ip -o -4 addr show dev"):
            if self.node in w.ip_fails:
                return Result(command, 1, "", "Device \"eth1\" does not exist.")
            addrs = [str(w.topo.node(self.node).address)]
            addrs += [str(w.topo.vip)] if self.node in w.holders else []
            return Result(command, 0, "".join(f"3: eth1    inet {a}/24 scope global eth1\n"
                                              for a in addrs), "")
        if "--signum=JSON" in command:  # lab.vrrp asks keepalived for its JSON dump
            if self.node in w.vrrp_silent:
                return Result(command, 6, "", "")
            dump = "master" if self.node in w.holders else "backup"
            return Result(command, 0, (DATA / f"keepalived-{dump}.json").read_text(), "")
        if "show stat" in command:
            rows = ["# pxname,svname,status"]
            for proxy in ("k8s-api-server", "ingress-https"):
                rows.append(f"{proxy},FRONTEND,OPEN")
                rows += [f"{proxy},{s},{st}" for s, st in w.backend_status.items()]
                rows.append(f"{proxy},BACKEND,UP")
            return Result(command, 0, "\n".join(rows) + "\n", "")
        return Result(command, 127, "", f"fake: unexpected command {command}")

    def put(self, path: str, data: bytes, mode: int = 0o644) -> None:
        raise AssertionError("status writes nothing")

    def close(self) -> None:
        pass


class FakeServices:
    def __init__(self, world: World, node: str, names: list[str]) -> None:
        self.world, self.node, self.names = world, node, names

    def installed(self) -> list[str]:
        if self.node in self.world.unreachable:
            raise TransportError(f"{self.node}: SSH connection refused")
        return self.names

    def status(self, name: str) -> ServiceState:
        active = (self.node, name) not in self.world.stopped
        return ServiceState(name, active, 42 if active else None)


class FakeProvider:
    name = "netns"
    settle_s = 1.0

    def __init__(self, world: World) -> None:
        self.world = world

    def is_up(self) -> bool:
        return True

    def node_state(self, name: str) -> str:
        return self.world.states[name]

    def node(self, name: str) -> Node:
        spec = self.world.topo.node(name)
        services = None
        if Role.CLIENT not in spec.roles:
            names = ["haproxy", "keepalived"] if Role.LOADBALANCER in spec.roles else [
                "ingress", "kube-apiserver"]
            services = FakeServices(self.world, name, names)
        return Node(spec, FakeTransport(self.world, name), services, None)


@pytest.fixture
def world(default_topo) -> World:
    return World(default_topo)


@pytest.fixture
def fake_lab(world, tmp_path, monkeypatch) -> Lab:
    lab = Lab(world.topo, tmp_path)
    lab.provider = FakeProvider(world)  # type: ignore[assignment]
    monkeypatch.setattr(cli, "_open", lambda file, provider=None: lab)
    return lab


def _invoke(*args: str):
    r = CliRunner().invoke(cli.app, list(args))
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r


# -- status --json ---------------------------------------------------------------------------
def test_status_json_healthy(fake_lab):
    r = _invoke("status", "--json")
    assert r.exit_code == 0
    s = json.loads(r.stdout)
    assert (s["lab"], s["provider"], s["vip"]) == ("halab", "netns", "192.168.0.203")
    assert s["vip_holders"] == ["lb01"] and s["vip_unknown"] == []
    nodes = {n["name"]: n for n in s["nodes"]}
    assert list(nodes) == ["lb01", "lb02", "k8s-master-01", "k8s-master-02",
                           "k8s-master-07", "client"], "every node, in lab.yaml's order"
    lb01 = nodes["lb01"]
    assert lb01["roles"] == ["loadbalancer"] and lb01["address"] == "192.168.0.101"
    assert lb01["state"] == "running" and lb01["holds_vip"] is True and lb01["error"] is None
    assert lb01["daemons"] == {"haproxy": {"active": True, "pid": 42},
                               "keepalived": {"active": True, "pid": 42}}
    assert (lb01["vrrp"]["state"], lb01["vrrp"]["effective_priority"]) == ("MASTER", 102)
    assert nodes["lb02"]["vrrp"]["state"] == "BACKUP"
    assert nodes["client"]["vrrp"] is None
    assert nodes["lb02"]["holds_vip"] is False
    assert nodes["client"]["daemons"] == {} and nodes["client"]["holds_vip"] is None
    assert set(s["backends"]) == {"lb01", "lb02"}
    servers = {(x["proxy"], x["server"]): x for x in s["backends"]["lb02"]["servers"]}
    assert servers[("k8s-api-server", "k8s-master-07")] == {
        "proxy": "k8s-api-server", "server": "k8s-master-07", "status": "DOWN", "up": False}
    assert servers[("ingress-https", "k8s-master-01")]["up"] is True
    assert s["backends"]["lb01"]["error"] is None


def test_status_json_keeps_every_lb_that_could_not_be_asked(fake_lab, world):
    world.states["lb02"] = "crashed"
    world.unreachable.add("lb01")
    world.stopped.add(("k8s-master-02", "kube-apiserver"))
    s = json.loads(_invoke("status", "--json").stdout)
    nodes = {n["name"]: n for n in s["nodes"]}
    # lb01 runs but cannot be asked: unknown, not "does not hold"; a crashed lb02 holds
    # nothing the network can see (observe's rule), its daemons and HAProxy are not asked.
    assert s["vip_holders"] == [] and s["vip_unknown"] == ["lb01"]
    assert nodes["lb01"]["holds_vip"] is None and nodes["lb01"]["daemons"] is None
    assert "SSH connection refused" in nodes["lb01"]["error"]
    assert nodes["lb02"]["holds_vip"] is False and nodes["lb02"]["daemons"] is None
    assert "crashed" in nodes["lb02"]["error"]
    assert s["backends"]["lb01"]["servers"] is None
    assert "SSH connection refused" in s["backends"]["lb01"]["error"]
    assert s["backends"]["lb02"]["servers"] is None
    assert "crashed" in s["backends"]["lb02"]["error"]
    assert nodes["k8s-master-02"]["daemons"]["kube-apiserver"] == {"active": False,
                                                                   "pid": None}


def test_status_json_keepalived_that_cannot_be_asked_is_unknown_with_the_reason(fake_lab,
                                                                               world):
    world.vrrp_silent.add("lb02")
    s = json.loads(_invoke("status", "--json").stdout)
    lb02 = next(n for n in s["nodes"] if n["name"] == "lb02")
    assert lb02["vrrp"] is None
    assert "VRRP: keepalived on lb02 wrote no dump" in lb02["error"]
    out = _invoke("status").stdout
    row = next(line for line in out.splitlines() if line.startswith("lb02\t"))
    assert row.split("\t")[-1] == "?"


def test_status_json_a_failing_ip_is_unknown_not_absent(fake_lab, world):
    world.ip_fails.add("lb01")
    s = json.loads(_invoke("status", "--json").stdout)
    lb01 = next(n for n in s["nodes"] if n["name"] == "lb01")
    assert lb01["holds_vip"] is None and "exited 1" in lb01["error"]
    assert s["vip_unknown"] == ["lb01"] and s["vip_holders"] == []


# -- status: plain lines in a pipe, a table at a terminal ------------------------------------
def test_status_in_a_pipe_is_plain_tab_separated_lines(fake_lab, world):
    world.states["lb02"] = "crashed"
    world.ip_fails.add("lb01")
    out = _invoke("status").stdout
    assert not BOX & set(out) and "…" not in out
    lines = out.splitlines()
    assert lines[0] == "# lab halab (netns), VIP 192.168.0.203 on no LB (unknown: lb01)"
    assert lines[1].split("\t") == ["node", "roles", "address", "state", "VIP", "daemons",
                                    "VRRP"]
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[2:8]}
    assert all(len(r) == 7 for r in rows.values())
    assert rows["lb01"] == ["lb01", "loadbalancer", "192.168.0.101", "running", "?",
                            "haproxy, keepalived", "MASTER 102"]
    assert rows["lb02"][3:] == ["crashed", "-", "?", "-"]
    assert rows["client"][4:] == ["-", "-", "-"]
    backends = lines[lines.index("# HAProxy backends (k8s-api-server / ingress)") + 1:]
    assert backends[0].split("\t") == ["server", "lb01", "lb02"]
    assert "k8s-api-server/k8s-master-07\tDOWN\t?" in backends
    problems = lines[lines.index("# could not be asked") + 1:]
    assert any(p.startswith("lb01\tVIP: ") and "exited 1" in p for p in problems)
    assert any(p.startswith("lb02\t") and "crashed" in p for p in problems)
    assert "lb02 HAProxy\tnot asked, the node is crashed" in problems


def test_status_at_a_terminal_is_a_rich_table(fake_lab, world, monkeypatch):
    world.unreachable.add("lb02")
    monkeypatch.setattr(cli, "_tty", lambda: True)
    monkeypatch.setattr(cli, "out", Console(force_terminal=True, width=160,
                                            color_system=None))
    out = _invoke("status").stdout
    assert BOX & set(out), out
    assert "k8s-master-07" in out and "holds" in out
    assert "lb02: could not be asked: VIP: cannot ask lb02 whether it holds" in out


def test_status_json_of_a_lab_that_is_not_up(tmp_path, default_text):
    (tmp_path / "lab.yaml").write_text(default_text.replace("name: halab", "name: notup"))
    p = _halab("status", "--json", cwd=tmp_path)
    assert p.returncode == 4 and "not up" in p.stderr and p.stdout == ""
    assert "Traceback" not in p.stderr


# -- fault --list ----------------------------------------------------------------------------
def _halab(*args: str, cwd: Path = ROOT, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True,
                          text=True, cwd=cwd, **kw)


def test_fault_list_json_is_the_catalogue():
    p = _halab("fault", "--list", "--json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert [f["name"] for f in data] == list(faults.CATALOGUE)
    by = {f["name"]: f for f in data}
    assert by["kill"]["params"] == {"service": None} and by["kill"]["required"] == ["service"]
    assert by["kill"]["undo"] == "start it again"
    assert by["kill"]["providers"] == ["hosts", "netns", "vagrant"]
    assert by["crash"]["providers"] == ["netns", "vagrant"]
    assert by["loss"]["params"] == {"percent": 10.0} and by["loss"]["required"] == []
    assert (by["partition"]["min_nodes"], by["partition"]["max_nodes"]) == (2, 2)
    assert by["apiservers-down"]["role"] == "control-plane"
    assert all(f["summary"] and f["nodes"] for f in data)


def test_fault_list_in_a_pipe_is_plain_and_whole():
    p = _halab("fault", "--list")
    assert p.returncode == 0, p.stderr
    assert not BOX & set(p.stdout) and "…" not in p.stdout
    lines = p.stdout.splitlines()
    assert lines[0].split("\t") == ["fault", "nodes", "parameters", "what it does", "undo",
                                    "providers"]
    rows = [line.split("\t") for line in lines[1:]]
    assert [r[0] for r in rows] == list(faults.CATALOGUE)
    assert all(len(r) == 6 for r in rows)
    # Nothing cut: every summary is there in full.
    assert [r[3] for r in rows] == [f.summary for f in faults.CATALOGUE.values()]
    assert rows[0][2] == "service=(required)" and rows[3][2] == "-"


def test_fault_list_at_a_terminal_is_a_rich_table():
    rc, out, err = at_terminal("fault", "--list", cwd=ROOT, columns=200, lines=50)
    assert rc == 0, err
    assert BOX & set(out) and "halab fault catalogue" in out and "\t" not in out


def test_json_for_an_injection_is_refused_clearly():
    p = _halab("fault", "kill", "lb01", "-p", "service=haproxy", "--json")
    assert p.returncode == 1 and "--list --json" in p.stderr
    assert "Traceback" not in p.stderr and p.stdout == ""
