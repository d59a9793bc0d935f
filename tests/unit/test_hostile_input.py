"""Hostile input, refused up front: one test per row of docs/hostile-input.md.

halab runs as root and writes what it reads into configs and commands, so every row is
refused while loading, before anything is built: a lab file with exit 2 from the CLI and one
paragraph (no traceback), a fault with a one-paragraph HalabError. None of this needs root
or a lab.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import faults, inputs, topology
from lab.chaos import scenario
from lab.cli import main
from lab.errors import HalabError, LabFileError

ROOT = Path(__file__).resolve().parents[2]
DEFAULT: dict[str, Any] = yaml.safe_load((ROOT / "lab.yaml").read_text())


def _edit(fn: Callable[[dict[str, Any]], object]) -> str:
    """The default lab.yaml with ``fn`` applied to it, as YAML text."""
    data = copy.deepcopy(DEFAULT)
    fn(data)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _set(path: str, value: object) -> str:
    """The default lab.yaml with the value at ``path`` (a.b.0.c) replaced."""
    def go(data: dict[str, Any]) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        cur: Any = data
        for p in parents:
            cur = cur.setdefault(p, {}) if isinstance(p, str) else cur[p]
        cur[last] = value
    return _edit(go)


def _node(i: int, **fields: object) -> Callable[[dict[str, Any]], object]:
    return lambda d: d["nodes"][i].update(fields)


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(9))
MANY_NODES = _edit(lambda d: d["nodes"].extend(
    {"name": f"extra{i}", "roles": ["control-plane"], "address": f"192.168.0.{20 + i}"}
    for i in range(topology.MAX_NODES)))

# (id, file content, what the one-paragraph error must say)
LAB_FILE_ROWS: list[tuple[str, str | bytes, str]] = [
    # -- malformed files
    ("yaml-syntax", "name: x\nvip: 192.168.0.203\nnodes: [\n", "YAML syntax error at line"),
    ("yaml-tab", "name: x\n\tvip: 1\n", "YAML syntax error"),
    ("not-utf8", b"name: caf\xe9\n", "not UTF-8"),
    ("nul-byte", "name: x\x00\n", "YAML syntax error"),
    ("not-a-mapping", "- a\n- list\n", "YAML mapping"),
    ("empty", "", "YAML mapping"),
    ("too-big", "# " + "x" * inputs.MAX_FILE_BYTES + "\n", "far more than"),
    ("alias-bomb", BOMB, "expands to more than"),
    ("alias-bomb-in-a-field", DEFAULT and _edit(lambda d: d.update(
        bomb=[[["x"] * 10] * 10] * 10 * 20)), "expands to more than"),
    ("alias-recursive", "a: &a [*a]\n", "refers to a value that contains it"),
    ("too-deep", "a: " + "[" * 40 + "]" * 40 + "\n", "nests more than"),
    ("integer-too-long", "vip: " + "9" * 5000 + "\n", "cannot be read"),
    # -- wrong types, unknown keys, out of range
    ("wrong-type-vip", _set("vip", [1, 2]), "not an IPv4 address"),
    # YAML reads these as a bool and an int, which ipaddress would take as 0.0.0.1, 0.0.0.7
    ("vip-a-bool", _set("vip", True), "write it as text"),
    ("subnet-a-number", _set("network.subnet", 7), "write it as text"),
    ("address-a-number", _set("nodes.0.address", 3232235621), "write it as text"),
    ("wrong-type-priority", _set("nodes.0.vrrp.priority", "high"), "priority"),
    ("wrong-type-nodes", _set("nodes", "lb01"), "nodes"),
    ("unknown-key", _set("keepalived.advert_intt", 1), "unknown key `advert_intt`"),
    ("unknown-key-huge", _set("k" * 10_000, 1), "unknown key"),
    ("advert-nan", _set("keepalived.advert_int", float("nan")), "advert_int"),
    ("inter-ms-huge", _set("haproxy.check.inter_ms", 10**12), "inter_ms"),
    ("retries-huge", _set("haproxy.retries", 10**6), "retries"),
    ("too-many-nodes", MANY_NODES, f"at most {topology.MAX_NODES}"),
    # -- subnets
    ("subnet-slash-8", _set("network.subnet", "10.0.0.0/8"), "no lab subnet"),
    ("subnet-everything", _set("network.subnet", "0.0.0.0/0"), "no lab subnet"),
    ("subnet-slash-30", _set("network.subnet", "192.168.0.200/30"), "no lab subnet"),
    ("subnet-public", _set("network.subnet", "8.8.8.0/24"), "not a private unicast range"),
    ("subnet-loopback", _set("network.subnet", "127.0.0.0/24"), "not a private unicast"),
    ("subnet-multicast", _set("network.subnet", "224.0.0.0/24"), "not a private unicast"),
    ("subnet-host-bits", _set("network.subnet", "192.168.0.1/24"), "not an IPv4 network"),
    ("pod-subnet-overlaps-lab", _edit(lambda d: d.update(kubernetes={
        "control_plane": "kubeadm", "pod_subnet": "192.168.0.0/16"})),
     "pod_subnet 192.168.0.0/16 overlaps the lab subnet"),
    ("service-subnet-overlaps-lab", _edit(lambda d: d.update(kubernetes={
        "control_plane": "kubeadm", "service_subnet": "192.168.0.0/20"})),
     "service_subnet 192.168.0.0/20 overlaps the lab subnet"),
    ("pod-overlaps-service", _set("kubernetes", {"pod_subnet": "10.96.0.0/16"}),
     "overlap; give them ranges of their own"),
    ("service-subnet-too-wide", _set("kubernetes", {"service_subnet": "10.0.0.0/8"}),
     "wider than kube-apiserver takes"),
    # -- the VIP
    ("vip-is-a-node", _set("vip", "192.168.0.102"), "also node lb02's address"),
    ("vip-outside-subnet", _set("vip", "192.168.1.203"), "not a host address"),
    ("vip-network-address", _set("vip", "192.168.0.0"), "not a host address"),
    ("vip-broadcast", _set("vip", "192.168.0.255"), "not a host address"),
    ("address-broadcast", _set("nodes.2.address", "192.168.0.255"), "not a host address"),
    # -- names that collide with halab's own
    ("lab-name-box", _set("name", "box"), "halab already uses"),
    ("lab-name-boxtest", _set("name", "boxtest"), "halab already uses"),
    ("lab-name-doctor", _set("name", "doctor"), "halab already uses"),
    ("lab-name-class", _set("name", "_class"), "name"),
    *[(f"node-name-{n}", _edit(_node(2, name=n)), "reserved for halab's own use")
      for n in sorted(topology.RESERVED_NODE_NAMES)],
    *[(f"node-name-{n}", _edit(_node(2, name=n)), "device of the embedded lab's switch")
      for n in ("br0", "lo", "sit0", "tunl0", "gre0")],
    ("node-name-twice", _edit(_node(3, name="k8s-master-01")), "appears more than once"),
    ("switch-port-collision", _edit(lambda d: (
        d["nodes"][5].update(name="the-operators-desk-01"),  # 21 characters: port5
        d["nodes"][2].update(name="port5"))), "share the switch port 'port5'"),
    ("interface-lo", _set("network.interface", "lo"), "kernel makes in every namespace"),
    ("interface-eth0", _set("network.interface", "eth0"), "management NIC"),
]

# Every string field that reaches a config file or a command line, with a valid value to
# append a hostile piece to.
FIELDS = {
    "keepalived.check.script": "/usr/bin/killall -0 haproxy",
    "keepalived.auth_pass": "11",
    "vagrant.box": "halab/debian12",
    "nodes.0.vm.box": "debian12",
    "name": "lab",
    "nodes.2.name": "master",
    "network.interface": "eth1",
    "kubernetes.version": "1.30.6",
}
PIECES = ["\n", "\r", '"', "'", "{", "}", "#", "!", ";", "$(id)", "`id`", "\\", "&", "|",
          ">", "*", " x\n}\nvrrp_script x {"]
INJECTION_ROWS = [(f"{field}+{piece!r}", _set(field, base + piece), field.rsplit(".", 1)[-1])
                  for field, base in FIELDS.items() for piece in PIECES]


def _refused(text: str | bytes) -> str:
    t0 = time.monotonic()
    with pytest.raises(LabFileError) as e:
        topology.parse(text) if isinstance(text, str) else topology.parse(
            inputs.decode(text, "lab.yaml", LabFileError))
    assert time.monotonic() - t0 < 1, "answered within a second"
    msg = str(e.value)
    assert "\n" not in msg, "one paragraph"
    assert len(msg) <= inputs.MAX_MESSAGE, "an error is a paragraph, not a dump"
    return msg


@pytest.mark.parametrize(("text", "expect"), [r[1:] for r in LAB_FILE_ROWS],
                         ids=[r[0] for r in LAB_FILE_ROWS])
def test_lab_file_is_refused_with_one_paragraph(text, expect):
    assert expect in _refused(text)


@pytest.mark.parametrize(("text", "field"), [r[1:] for r in INJECTION_ROWS],
                         ids=[r[0] for r in INJECTION_ROWS])
def test_a_value_that_would_escape_its_config_line_is_refused(text, field):
    msg = _refused(text)
    assert field in msg, f"the error names the field: {msg}"


def test_safe_values_still_load():
    """The whitelists are not so tight that an honest lab file fails."""
    for text in (_set("keepalived.check.script", "/usr/local/bin/check-haproxy --port=6443"),
                 _set("keepalived.auth_pass", "s3cr.t-8"),
                 _set("vagrant.box", "debian/bookworm64"),
                 _set("network.subnet", "10.20.0.0/16").replace("192.168.0.", "10.20.0."),
                 _set("network.subnet", "172.16.5.0/24").replace("192.168.0.", "172.16.5."),
                 _edit(_node(2, name="a-name-of-sixteen")),  # a port of its own: port2
                 _edit(lambda d: d.update(kubernetes={"control_plane": "kubeadm"}))):
        topology.parse(text)


def test_a_slash_8_is_answered_at_once_with_bounded_memory():
    """The old check built set(net.hosts()): 16 M addresses for a /8, 4 G for /0."""
    import resource
    import tracemalloc

    tracemalloc.start()
    t0 = time.monotonic()
    for net in ("10.0.0.0/8", "0.0.0.0/0", "10.0.0.0/16"):
        with pytest.raises(LabFileError):
            topology.parse(_set("network.subnet", net).replace(
                "vip: 192.168.0.203", "vip: 10.0.0.203"))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.monotonic() - t0 < 1
    assert peak < 5 * 2**20, f"peak {peak} bytes"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # measured, not guessed


def test_host_membership_is_arithmetic():
    import ipaddress

    net = ipaddress.IPv4Network("192.168.0.0/24")
    hosts = set(net.hosts())
    for last in (0, 1, 128, 254, 255):
        a = ipaddress.IPv4Address(f"192.168.0.{last}")
        assert topology.is_host_of(a, net) == (a in hosts)
    assert not topology.is_host_of(ipaddress.IPv4Address("192.168.1.1"), net)


def test_error_quotes_are_cut():
    msg = _refused(_set("vip", "x" * 50_000))
    assert "…" in msg and len(msg) < 600


def test_a_non_utf8_file_is_refused_by_load(tmp_path):
    f = tmp_path / "lab.yaml"
    f.write_bytes((ROOT / "lab.yaml").read_bytes().replace(b"name: halab", b"name: h\xe9"))
    with pytest.raises(LabFileError, match=r"not UTF-8 text \(byte 0xe9 at line \d+"):
        topology.load(f)


def test_a_huge_file_is_not_read(tmp_path):
    f = tmp_path / "lab.yaml"
    with open(f, "wb") as out:
        out.truncate(2**30)  # sparse: a gigabyte that costs nothing
    with pytest.raises(LabFileError, match="far more than a lab file needs"):
        topology.load(f)


# -- through the CLI: exit 2, one paragraph, no traceback --------------------------------------
def _cli(argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["halab", *argv])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    return int(e.value.code or 0), err


@pytest.mark.parametrize(("text", "expect"), [r[1:] for r in LAB_FILE_ROWS + INJECTION_ROWS],
                         ids=[r[0] for r in LAB_FILE_ROWS + INJECTION_ROWS])
def test_the_cli_exits_2_with_one_paragraph(text, expect, tmp_path, monkeypatch, capsys):
    f = tmp_path / "lab.yaml"
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    code, err = _cli(["status", "-f", str(f)], monkeypatch, capsys)
    assert code == 2, err
    assert err.startswith("halab: ") and err.count("\n") == 1, f"one paragraph: {err!r}"
    assert expect in err and "Traceback" not in err


@pytest.mark.parametrize("row", ["not-utf8", "alias-bomb", "subnet-slash-8", "too-deep"])
def test_a_real_process_exits_2_without_traceback(row, tmp_path):
    text = dict((r[0], r[1]) for r in LAB_FILE_ROWS)[row]
    f = tmp_path / "lab.yaml"
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    p = subprocess.run([sys.executable, "-m", "lab", "status", "-f", str(f)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr + p.stdout and p.stderr.count("\n") == 1


# -- faults ------------------------------------------------------------------------------------
class _FakeLab:
    """What Fault.resolve asks of a lab: its topology, its provider's name, its nodes."""

    def __init__(self, provider: str = "netns") -> None:
        self.topo = topology.parse((ROOT / "lab.yaml").read_text())
        self.provider = type("P", (), {"name": provider})()

    def node(self, name: str) -> object:
        spec = self.topo.node(name)
        return type("N", (), {"has": lambda _, role: role in spec.roles,
                              "managed": "client" not in spec.roles})()


# (id, fault, nodes, params, what the error must say)
FAULT_ROWS: list[tuple[str, str, list[str], dict[str, object], str]] = [
    ("service-path", "kill", ["lb01"], {"service": "../../../tmp/x"}, "must be one of"),
    ("service-unknown", "stop", ["lb01"], {"service": "cron"}, "must be one of"),
    ("service-newline", "restart", ["lb01"], {"service": "haproxy\nx"}, "must be one of"),
    ("ingress-service", "ingress-down", ["k8s-master-01"], {"service": "../x"}, "ingress"),
    ("count-negative", "apiservers-down", [], {"count": "-1"}, "count must be"),
    ("count-zero", "apiservers-down", [], {"count": 0}, "count must be"),
    ("count-fraction", "apiservers-down", [], {"count": "1.5"}, "whole number"),
    ("count-nan", "apiservers-down", [], {"count": "nan"}, "finite"),
    ("count-beyond-masters", "apiservers-down", [], {"count": 4}, "has 3 API servers"),
    ("count-text", "apiservers-down", [], {"count": "two"}, "must be a number"),
    ("percent-tiny", "loss", ["lb02"], {"percent": "0.001"}, "percent must be"),
    ("percent-zero", "loss", ["lb02"], {"percent": 0}, "percent must be"),
    ("percent-all", "loss", ["lb02"], {"percent": 100}, "link-down"),
    ("percent-nan", "loss", ["lb02"], {"percent": "nan"}, "finite"),
    ("percent-inf", "loss", ["lb02"], {"percent": "inf"}, "finite"),
    ("percent-bool", "loss", ["lb02"], {"percent": True}, "must be a number"),
    ("ms-nan", "delay", ["lb02"], {"ms": "nan"}, "finite"),
    ("ms-zero", "delay", ["lb02"], {"ms": 0}, "ms must be"),
    ("ms-huge", "delay", ["lb02"], {"ms": "1e9"}, "ms must be"),
    ("jitter-negative", "jitter", ["lb02"], {"jitter_ms": -1}, "jitter_ms must be"),
    ("unknown-param", "loss", ["lb02"], {"colour": "red"}, "no parameter colour"),
    ("partition-self", "partition", ["lb01", "lb01"], {}, "more than once"),
    ("crash-twice", "crash", ["lb01", "lb01"], {}, "more than once"),
    ("crash-client", "crash", ["client"], {}, "operator's desk"),
    ("freeze-client", "freeze", ["client"], {}, "operator's desk"),
    ("kill-on-client", "kill", ["client"], {"service": "haproxy"}, "operator's desk"),
    ("partition-client", "partition", ["lb01", "client"], {}, "operator's desk"),
    ("loss-client", "loss", ["client"], {}, "operator's desk"),
    ("unknown-node", "crash", ["nosuch"], {}, "no node 'nosuch'"),
]


@pytest.mark.parametrize(("name", "nodes", "params", "expect"), [r[1:] for r in FAULT_ROWS],
                         ids=[r[0] for r in FAULT_ROWS])
def test_a_bad_fault_is_refused_before_it_acts(name, nodes, params, expect):
    with pytest.raises(HalabError) as e:
        faults.fault(name).resolve(_FakeLab(), nodes, params)  # what inject and undo call
    assert expect in str(e.value) and "\n" not in str(e.value)


def test_ssh_is_a_fault_target_only_where_halab_starts_it_without_ssh():
    faults.fault("kill").resolve(_FakeLab("netns"), ["lb01"], {"service": "ssh"})
    with pytest.raises(HalabError, match="only way in"):
        faults.fault("kill").resolve(_FakeLab("vagrant"), ["lb01"], {"service": "ssh"})


def test_good_fault_parameters_pass_and_are_typed():
    lab = _FakeLab()
    assert faults.fault("loss").resolve(lab, ["lb02"], {"percent": "12.5"})[1] == {
        "percent": 12.5}
    assert faults.fault("apiservers-down").resolve(lab, [], {"count": "3"})[1] == {"count": 3}
    assert faults.fault("kill").resolve(lab, ["k8s-master-01"], {"service": "nginx"})[1] == {
        "service": "nginx"}


def test_every_fault_parameter_has_a_rule_its_default_passes():
    for f in faults.CATALOGUE.values():
        assert set(f.rules) == set(f.params), f"{f.name}: a parameter without a rule"
        for k, default in f.params.items():
            if default is not None:
                f.rules[k].check(f.name, k, default)


@pytest.mark.parametrize(("items", "expect"), [
    (["service"], "KEY=VALUE"), (["=haproxy"], "KEY=VALUE"), (["a b=1"], "KEY=VALUE"),
    (["service=haproxy", "service=keepalived"], "given twice"),
])
def test_malformed_fault_parameters(items, expect):
    with pytest.raises(HalabError, match=expect):
        faults.parse_params(items)


@pytest.mark.parametrize("row", [r for r in FAULT_ROWS if r[0] in {
    "service-path", "count-negative", "percent-tiny", "ms-nan", "partition-self",
    "crash-client"}], ids=lambda r: r[0])
def test_the_cli_refuses_a_bad_fault_before_asking_the_lab(row, monkeypatch, capsys):
    """The default lab is not up here: the refusal comes before `not up` (exit 4)."""
    _, name, nodes, params, expect = row
    argv = ["fault", name, *nodes, *[f"-p{k}={v}" for k, v in params.items()],
            "-f", str(ROOT / "lab.yaml")]
    code, err = _cli(argv, monkeypatch, capsys)
    assert code == 1 and expect in err and err.count("\n") == 1, err


@pytest.mark.parametrize(("step", "expect"), [
    ("{fault: kill, nodes: [lb01], params: {service: ../../../tmp/x}}", "must be one of"),
    ("{fault: loss, nodes: [lb01], params: {percent: 100}}", "percent must be"),
    ("{fault: apiservers-down, params: {count: -1}}", "count must be"),
    ("{fault: delay, nodes: [lb01], params: {ms: .nan}}", "finite"),
    ("{fault: partition, nodes: [lb01, lb01]}", "more than once"),
])
def test_a_chaos_scenario_with_a_bad_fault_is_refused_when_loaded(tmp_path, step, expect):
    f = tmp_path / "bad.yaml"
    f.write_text("title: t\nsteady-state-hypothesis: {probes: [{name: lab-steady}]}\n"
                 f"method:\n  - {step}\n")
    with pytest.raises(HalabError, match=expect):
        scenario.load(f)


def test_a_hostile_scenario_file_is_refused(tmp_path):
    f = tmp_path / "bomb.yaml"
    f.write_text(BOMB)
    with pytest.raises(HalabError, match="expands to more than"):
        scenario.load(f)
    f.write_bytes(b"title: \xff\n")
    with pytest.raises(HalabError, match="not UTF-8"):
        scenario.load(f)


def test_every_shipped_scenario_still_loads():
    assert scenario.load_all()


def test_the_table_is_linked_from_the_safety_section():
    readme = (ROOT / "README.md").read_text()
    safety = readme.split("\n## Safety\n", 1)[1].split("\n## ", 1)[0]
    assert "(docs/hostile-input.md)" in safety
    table = (ROOT / "docs" / "hostile-input.md").read_text()
    for this in ("tests/unit/test_hostile_input.py", "alias bomb", "not UTF-8", "client"):
        assert this in table


# -- the lab file's folder and the checkout: paths written into configs and commands ------
@pytest.mark.parametrize("folder", ["with space", "semi;colon", "dollar$(id)", "quote'd",
                                    "back`tick", "amp&er", "lt<gt", "new\nline"])
def test_a_folder_path_with_shell_or_config_metacharacters_is_refused_up_front(tmp_path, folder):
    from lab.errors import LabFileError
    from lab.lab import Lab

    d = tmp_path / folder
    d.mkdir()
    (d / "lab.yaml").write_text((ROOT / "lab.yaml").read_text())
    with pytest.raises(LabFileError) as e:
        Lab.open(d / "lab.yaml")
    msg = str(e.value)
    assert "the lab file's folder" in msg and "Nothing was built" in msg
    assert not (d / ".halab").exists()


def test_an_ordinary_folder_path_is_accepted(tmp_path):
    from lab.lab import Lab

    d = tmp_path / "srv_halab-1.0+x"
    d.mkdir()
    (d / "lab.yaml").write_text((ROOT / "lab.yaml").read_text())
    assert Lab.open(d / "lab.yaml").topo.name == "halab"


def test_a_node_named_twice_with_a_newline_in_it_gets_a_one_line_error(default_topo):
    """Found by the hypothesis property: the node names went into the message raw."""
    from lab import faults
    from lab.errors import HalabError

    for nodes in (["a\nb", "a\nb"], ["x\ny"] * 5):
        with pytest.raises(HalabError) as e:
            faults.check_nodes("apiservers-down", default_topo, nodes)
        assert "\n" not in str(e.value)
