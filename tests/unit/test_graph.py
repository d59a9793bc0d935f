"""The topology graph (lab/graph.py): drawn from lab.yaml alone, and with a status laid over
it. Statuses here are made by hand in the shapes lab.status gives for real outages;
tests/test_watch.py draws the graph of the real lab broken the same ways."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from statuses import MASTERS, healthy, node
from terminal import at_terminal

from lab import graph
from lab.graph import Kind, State
from lab.probes import Record
from lab.status import Backends, Daemon
from provision import names
from provision.render import haproxy_cfg

ROOT = Path(__file__).resolve().parents[2]


def ok(kind: str) -> Record:
    return Record(1.0, kind, True, 0.004, status=200, master="k8s-master-01",
                  via="192.168.0.101")


# -- from lab.yaml alone -----------------------------------------------------------------------
def test_the_static_graph_is_the_lab_yaml(default_topo):
    g = graph.build(default_topo)
    assert not g.live
    assert [[n.id for n in tier] for tier in g.tiers] == [
        ["client"], ["vip"], ["lb01", "lb02"], MASTERS]
    assert all(n.state is State.STATIC and not n.notes for n in g.nodes)
    assert g.node("vip").title == "VIP 192.168.0.203"
    assert g.node("lb01").lines == ("192.168.0.101", "MASTER · priority 100",
                                    "haproxy · keepalived")
    assert g.node("lb02").lines[1] == "BACKUP · priority 99"
    assert g.node("k8s-master-07").lines == ("192.168.0.107", "kube-apiserver :6443",
                                             "ingress :443 :80")
    assert g.edge("client", "vip").label == "api :6443 · https :443 · http :80"
    assert g.edge("vip", "lb01").label == "MASTER 100"
    vrrp = [e for e in g.edges if e.vrrp]
    assert [(e.src, e.dst) for e in vrrp] == [("lb01", "lb02")]
    forwards = [e for e in g.edges if e.src.startswith("lb") and not e.vrrp]
    assert len(forwards) == 6 and {e.label for e in forwards} == {":6443 :443 :80"}
    assert all(e.state is State.STATIC for e in g.edges)


def test_ports_are_the_ones_haproxy_cfg_binds(default_topo):
    """names.PORTS (what the graph and the probes say) is what the rendered config binds."""
    cfg = haproxy_cfg(default_topo)
    binds = dict(re.findall(r"^listen (\S+)\n    bind \*:(\d+)$", cfg, re.M))
    assert {p: int(port) for p, port in binds.items()} == names.PORTS
    assert graph.PROBE_KINDS == {"api": 6443, "https": 443, "http": 80}


def test_a_topology_of_other_roles_and_sizes(default_text):
    """Three LBs, a control plane without ingress, an ingress-only node."""
    from lab import topology

    text = default_text.replace(
        "  - name: k8s-master-07\n    roles: [control-plane, ingress]",
        "  - name: k8s-master-07\n    roles: [ingress]").replace(
        "  - name: k8s-master-02\n    roles: [control-plane, ingress]",
        "  - name: k8s-master-02\n    roles: [control-plane]").replace(
        "  - name: k8s-master-01\n",
        "  - name: lb03\n    roles: [loadbalancer]\n    address: 192.168.0.103\n"
        "    vrrp: {state: BACKUP, priority: 98}\n  - name: k8s-master-01\n")
    topo = topology.parse(text)
    g = graph.build(topo)
    assert [n.id for n in g.tiers[2]] == ["lb01", "lb02", "lb03"]
    assert [(e.src, e.dst) for e in g.edges if e.vrrp] == [("lb01", "lb02"), ("lb02", "lb03")]
    assert g.edge("lb03", "k8s-master-02").label == ":6443"
    assert g.edge("lb03", "k8s-master-07").label == ":443 :80"
    assert g.node("k8s-master-02").lines[1:] == ("kube-apiserver :6443",)
    text_ = graph.to_text(g)
    assert "lb03" in text_ and "priority 98" in text_


# -- the three drawings ------------------------------------------------------------------------
def test_text_names_every_node_and_has_no_trailing_blanks(default_topo):
    text = graph.to_text(graph.build(default_topo))
    for n in default_topo.nodes:
        assert n.name in text and str(n.address) in text
    assert "VIP 192.168.0.203" in text and "lb01 ⇄ lb02: VRRP unicast" in text
    lines = text.splitlines()
    assert all(line == line.rstrip() for line in lines)
    assert min(len(line) - len(line.lstrip()) for line in lines if line.strip()) == 0
    assert "\x1b[" not in text


def test_dot_is_well_formed(default_topo):
    dot = graph.to_dot(graph.build(default_topo))
    assert dot.startswith('digraph "lab halab" {') and dot.rstrip().endswith("}")
    assert dot.count("{") == dot.count("}")
    assert "\\u" not in dot, "Graphviz does not read JSON's \\u escapes"
    for n in default_topo.nodes:
        assert re.search(rf'^  "{n.name}" \[label="{n.name}\\n', dot, re.M), n.name
    edges = re.findall(r'^  "([^"]+)" -> "([^"]+)" \[(.*)\];$', dot, re.M)
    assert len(edges) == 1 + 2 + 1 + 6
    assert ("lb01", "lb02") in {(a, b) for a, b, _ in edges}
    vrrp = next(attrs for a, b, attrs in edges if (a, b) == ("lb01", "lb02"))
    assert "dir=both" in vrrp and "constraint=false" in vrrp
    assert '{ rank=same; "lb01" "lb02" }' in dot
    # Every node on the one switch: the lab LAN drawn around them all.
    assert re.search(r'subgraph cluster_lan \{\n  label="lab LAN 192\.168\.0\.0/24', dot)
    assert dot.index("cluster_lan") < dot.index('"client" [') < dot.index('"client" ->')


def test_mermaid_is_well_formed(default_topo):
    text = graph.to_mermaid(graph.build(default_topo))
    lines = text.splitlines()
    assert lines[0] == "flowchart TB"
    ids = re.findall(r"^  (n\d+)[\[(]", text, re.M)
    assert ids == [f"n{i}" for i in range(7)]
    arrows = re.findall(r'^  (n\d+) (-->|==>|-\.->|<-\.->)\|"[^"]*"\| (n\d+)$', text, re.M)
    assert len(arrows) == 10
    assert "classDef" not in text, "a static graph has no states to colour"
    assert lines[1].startswith('  subgraph lan["lab LAN 192.168.0.0/24') and "  end" in lines


def test_quotes_cannot_break_out_of_a_label():
    n = graph.GNode("x", 'say "hi"', Kind.BACKEND, ())
    g = graph.Graph('a "lab"', [[n], [], [], []])
    assert 'say #quot;hi#quot;' in graph.to_mermaid(g)
    assert 'digraph "a \\"lab\\"" {' in graph.to_dot(g)


# -- the overlay: what a running lab says ------------------------------------------------------
def test_a_healthy_lab(default_topo):
    g = graph.build(default_topo, healthy(default_topo), {k: ok(k) for k in graph.PROBE_KINDS})
    assert g.live
    assert all(n.state is State.OK for n in g.nodes), [(n.id, n.state) for n in g.nodes]
    assert g.node("vip").notes == ("on lb01",)
    assert g.node("lb01").notes == ("holds the VIP", "keepalived: MASTER 102")
    assert g.node("lb02").notes == ("keepalived: BACKUP 101",)
    assert (g.edge("vip", "lb01").state, g.edge("vip", "lb01").label) == (
        State.OK, "MASTER 100 · holds it")
    assert (g.edge("vip", "lb02").state, g.edge("vip", "lb02").label) == (
        State.IDLE, "BACKUP 99 · standby")
    assert g.edge("client", "vip").label == "api ok · https ok · http ok"
    assert {e.label for e in g.edges if e.src.startswith("lb") and not e.vrrp} == {"UP"}
    text = graph.to_text(g)
    assert "● holds the VIP" in text and "lb02: UP" in text
    assert " DOWN" not in text and " ?" not in text


def test_a_crashed_lb_is_down_and_forwards_nothing(default_topo):
    st = healthy(default_topo)
    lb01 = node(st, "lb01")
    lb01.state, lb01.holds_vip, lb01.daemons, lb01.vrrp = "crashed", False, None, None
    lb01.error = "daemons: not asked, the node is crashed"
    st.backends["lb01"] = Backends(None, "not asked, the node is crashed")
    st.vip_holders = ["lb02"]
    node(st, "lb02").holds_vip = True
    g = graph.build(default_topo, st)
    assert g.node("lb01").state is State.DOWN and g.node("lb01").notes[0] == "crashed"
    assert g.edge("vip", "lb01").state is State.OFF
    assert g.edge("vip", "lb01").label == "MASTER 100 · crashed"
    assert g.edge("vip", "lb02").state is State.OK
    assert {g.edge("lb01", m).state for m in MASTERS} == {State.OFF}
    assert {g.edge("lb02", m).state for m in MASTERS} == {State.OK}
    assert g.node("vip").state is State.OK and g.node("vip").notes == ("on lb02",)
    assert "lb01 DOWN" in graph.to_text(g)


def test_an_lb_that_cannot_be_asked_is_unknown_never_fine(default_topo):
    st = healthy(default_topo)
    lb01 = node(st, "lb01")
    lb01.holds_vip, lb01.daemons = None, None
    lb01.error = "VIP: cannot ask lb01 whether it holds the VIP: SSH connection refused"
    st.backends["lb01"] = Backends(None, "SSH connection refused")
    st.vip_holders, st.vip_unknown = [], ["lb01"]
    g = graph.build(default_topo, st)
    assert g.node("lb01").state is State.UNKNOWN
    assert g.edge("vip", "lb01").state is State.UNKNOWN
    assert g.node("vip").state is State.UNKNOWN
    assert {g.edge("lb01", m).state for m in MASTERS} == {State.UNKNOWN}
    assert "lb01 ?" in graph.to_text(g)
    dot = graph.to_dot(g)
    assert re.search(r'^  "lb01" \[.*color=darkorange', dot, re.M)


def test_a_failing_ip_on_a_running_lb_is_unknown(default_topo):
    st = healthy(default_topo)
    node(st, "lb02").holds_vip = None
    node(st, "lb02").error = "VIP: cannot ask lb02 whether it holds the VIP: exited 1"
    st.vip_unknown = ["lb02"]
    g = graph.build(default_topo, st)
    assert g.node("lb02").state is State.UNKNOWN and g.node("vip").state is State.UNKNOWN
    assert g.edge("vip", "lb02").state is State.UNKNOWN


def test_a_dead_apiserver_is_down_on_its_node_and_its_edges(default_topo):
    st = healthy(default_topo)
    node(st, "k8s-master-01").daemons["kube-apiserver"] = Daemon(False, None)
    for lb in ("lb01", "lb02"):
        for s in st.backends[lb].servers:
            if (s.proxy, s.server) == (names.API_PROXY, "k8s-master-01"):
                s.status, s.up = "DOWN", False
    g = graph.build(default_topo, st)
    m1 = g.node("k8s-master-01")
    assert m1.state is State.DOWN and "stopped: kube-apiserver" in m1.notes
    for lb in ("lb01", "lb02"):
        e = g.edge(lb, "k8s-master-01")
        assert (e.state, e.label) == (State.DOWN, ":6443 DOWN")
        assert g.edge(lb, "k8s-master-02").state is State.OK
    assert "lb01: :6443 DOWN" in graph.to_text(g)
    assert re.search(r'"lb01" -> "k8s-master-01" \[label=":6443 DOWN", color=red',
                     graph.to_dot(g))


def test_a_stopped_haproxy_forwards_nothing(default_topo):
    st = healthy(default_topo)
    node(st, "lb01").daemons["haproxy"] = Daemon(False, None)
    st.backends["lb01"] = Backends(None, "nc: /run/haproxy/admin.sock: Connection refused")
    g = graph.build(default_topo, st)
    assert g.node("lb01").state is State.DOWN
    assert "stopped: haproxy" in g.node("lb01").notes
    assert {(g.edge("lb01", m).state, g.edge("lb01", m).label) for m in MASTERS} == {
        (State.OFF, "haproxy stopped")}


def test_split_brain_and_no_holder(default_topo):
    st = healthy(default_topo)
    node(st, "lb02").holds_vip = True
    st.vip_holders = ["lb01", "lb02"]
    g = graph.build(default_topo, st)
    assert g.node("vip").state is State.DOWN
    assert g.node("vip").notes == ("split brain: lb01, lb02",)
    st = healthy(default_topo)
    node(st, "lb01").holds_vip = False
    st.vip_holders = []
    g = graph.build(default_topo, st)
    assert g.node("vip").state is State.DOWN
    assert g.node("vip").notes == ("held by no load balancer",)


def test_client_probes_failed_or_unknown(default_topo):
    failed = Record(1.0, "api", False, 0.5, "TimeoutError: timed out", stage="connect")
    g = graph.build(default_topo, healthy(default_topo),
                    {"api": failed, "https": ok("https"), "http": None})
    e = g.edge("client", "vip")
    assert (e.state, e.label) == (State.DOWN, "api FAIL · https ok · http ?")
    g = graph.build(default_topo, healthy(default_topo),
                    {"api": ok("api"), "https": ok("https"), "http": None})
    assert g.edge("client", "vip").state is State.UNKNOWN


def test_mermaid_colours_states(default_topo):
    st = healthy(default_topo)
    node(st, "lb01").state, node(st, "lb01").holds_vip = "crashed", False
    text = graph.to_mermaid(graph.build(default_topo, st))
    assert "classDef down" in text and re.search(r"^  class n2 down$", text, re.M)
    assert re.search(r'^  n1 -\.->\|"MASTER 100 · crashed"\| n2$', text, re.M)


# -- the command -------------------------------------------------------------------------------
def _halab(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True,
                          text=True, cwd=cwd)


@pytest.mark.parametrize("fmt,start", [("text", None), ("dot", "digraph "),
                                       ("mermaid", "flowchart TB")])
def test_halab_graph_needs_no_lab(fmt, start, tmp_path, default_text):
    """From lab.yaml only: no root, no lab up (a class handout, a wiki page)."""
    (tmp_path / "lab.yaml").write_text(default_text.replace("name: halab", "name: notup"))
    p = _halab("graph", "--format", fmt, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    if start:
        assert p.stdout.startswith(start)
    else:
        assert "k8s-master-07" in p.stdout and "\x1b[" not in p.stdout
    assert not (tmp_path / ".halab").exists(), "a static graph touches nothing"


def test_halab_graph_refuses_an_unknown_format():
    p = _halab("graph", "--format", "png")
    assert p.returncode == 2 and "dot, text, mermaid" in p.stderr
    assert "Traceback" not in p.stderr


def test_halab_graph_of_a_lab_that_is_not_up_is_lab_yaml_s(tmp_path, default_text):
    (tmp_path / "lab.yaml").write_text(default_text.replace("name: halab", "name: notup"))
    p = _halab("graph", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith('digraph "lab notup" {')
    assert "lab 'notup' is not up: the topology from lab.yaml alone" in p.stderr


@pytest.mark.parametrize("suffix,magic", [(".svg", b"<svg"), (".png", b"\x89PNG"),
                                          (".dot", b"digraph"), (".mmd", b"flowchart"),
                                          (".txt", b"lab notup")])
def test_halab_graph_out_draws_with_graphviz(tmp_path, default_text, suffix, magic):
    (tmp_path / "lab.yaml").write_text(default_text.replace("name: halab", "name: notup"))
    out = tmp_path / f"lab{suffix}"
    p = _halab("graph", "--static", "--out", str(out), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    data = out.read_bytes()
    assert magic in data[:400], data[:200]
    if suffix == ".svg":
        assert b"<title>lb01</title>" in data and b"k8s&#45;master&#45;07" in data


def test_halab_graph_out_of_an_unknown_kind(tmp_path, default_text):
    (tmp_path / "lab.yaml").write_text(default_text)
    p = _halab("graph", "--static", "--out", "lab.pdf", cwd=tmp_path)
    assert p.returncode == 1 and "cannot tell the format from the suffix" in p.stderr
    assert ".svg" in p.stderr and "Traceback" not in p.stderr


def test_without_graphviz_the_error_names_the_package(tmp_path, default_topo, monkeypatch):
    import shutil

    from lab.errors import PrerequisiteError

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(PrerequisiteError, match="apt-get install graphviz"):
        graph.write(graph.build(default_topo), tmp_path / "lab.svg")


def test_keepalived_that_cannot_be_asked_is_unknown_in_the_graph(default_topo):
    st = healthy(default_topo)
    lb02 = node(st, "lb02")
    lb02.vrrp, lb02.error = None, "VRRP: keepalived on lb02 wrote no dump within 2 s"
    g = graph.build(default_topo, st)
    assert g.node("lb02").state is State.UNKNOWN
    assert "keepalived: ?" in g.node("lb02").notes


def test_halab_graph_of_a_bad_lab_file(tmp_path):
    (tmp_path / "lab.yaml").write_text("vip: 192.168.0.203\nnodes: []\n")
    p = _halab("graph", cwd=tmp_path)
    assert p.returncode == 2 and "nodes" in p.stderr and "Traceback" not in p.stderr


def test_halab_graph_at_a_terminal_draws_panels(tmp_path, default_text):
    (tmp_path / "lab.yaml").write_text(default_text)
    rc, drawn, err = at_terminal("graph", "--format", "text", cwd=tmp_path, columns=160,
                                 lines=60)
    assert rc == 0, err
    out = re.sub(r"\x1b\[[0-9;]*m", "", drawn)
    assert "╭─ lb01" in out and "▼ HAProxy forwards to" in out and "k8s-master-07" in out
