"""The classroom page without a lab: the JSON the page receives (pure, from statuses shaped
like the real lab's, healthy and broken), the events, the fault buttons, the picture, the
refusal of any bind address but 127.0.0.1, and the HTTP server's guards against a fake
lab."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import sys
import threading
from importlib import resources
from pathlib import Path

import pytest

from lab import faults, topology
from lab.errors import HalabError
from lab.probes import Record
from lab.status import Backends, Daemon, LabStatus, NodeStatus, Server
from lab.ui import picture, server, view
from lab.ui.view import VipSample

ROOT = Path(__file__).resolve().parents[2]
NOW = 1000.0


@pytest.fixture
def topo() -> topology.Topology:
    return topology.load(ROOT / "lab.yaml")


def lab_status(topo: topology.Topology, holders: tuple[str, ...] = ("lb01",),
               unknown: tuple[str, ...] = (), states: dict[str, str] | None = None,
               down_servers: tuple[str, ...] = ()) -> LabStatus:
    """A status as lab.status.gather makes it, for the default topology."""
    states = states or {}
    nodes, backends = [], {}
    for spec in topo.nodes:
        lb = topology.Role.LOADBALANCER in spec.roles
        state = states.get(spec.name, "running")
        daemons = ({} if topology.Role.CLIENT in spec.roles else
                   {d: Daemon(True, 10 + i) for i, d in enumerate(
                       ["haproxy", "keepalived", "ssh"] if lb else
                       ["kube-apiserver", "ingress", "ssh"])})
        error = f"VIP: cannot ask {spec.name}: SSH refused" if spec.name in unknown else None
        holds = None if spec.name in unknown else (spec.name in holders) if lb else None
        nodes.append(NodeStatus(spec.name, [r.value for r in spec.roles], str(spec.address),
                                state, holds, daemons, error))
        if lb:
            backends[spec.name] = (Backends(None, "SSH refused") if spec.name in unknown else
                                   Backends([Server("k8s-api-server", m.name,
                                                    "DOWN" if m.name in down_servers else "UP",
                                                    m.name not in down_servers)
                                             for m in topo.control_planes]))
    return LabStatus(topo.name, "netns", str(topo.vip),
                     [lb for lb in ("lb01", "lb02") if lb in holders and lb not in unknown],
                     list(unknown), nodes, backends)


def samples(holders: tuple[str, ...] = ("lb01",), t: float = NOW - 0.1,
            unknown: dict[str, str] | None = None) -> dict[str, VipSample]:
    unknown = unknown or {}
    return {lb: VipSample(lb, t, None if lb in unknown else lb in holders, unknown.get(lb, ""))
            for lb in ("lb01", "lb02")}


def probes(pattern: str, via: str = "192.168.0.101", end: float = NOW - 0.1) -> list[Record]:
    """One probe per character, 0.2 s apart, ending at ``end``: '.' good, 'x' failed."""
    n = len(pattern)
    return [Record(end - (n - 1 - i) * 0.2, "api", c == ".", 0.004 if c == "." else 0.5,
                   "" if c == "." else "ConnectionRefusedError: refused",
                   200 if c == "." else None, "k8s-master-01", via if c == "." else None,
                   "" if c == "." else "connect")
            for i, c in enumerate(pattern)]


def snapshot(topo, **kw) -> view.Snapshot:
    base = dict(now=NOW, topo=topo, provider="netns", status=lab_status(topo),
                status_at=NOW - 1.0, status_took=0.8, vip=samples(),
                records=probes("." * 20), probing_since=NOW - 30)
    base.update(kw)
    return view.Snapshot(**base)


# -- the VIP holder: #vip-holder's text ----------------------------------------------------
def test_the_holder_is_the_lb_that_holds_the_vip(topo):
    v = view.vip_view(["lb01", "lb02"], samples(("lb02",)), NOW)
    assert v["holder"] == "lb02" and v["holders"] == ["lb02"] and not v["unknown"]


def test_an_lb_that_cannot_be_asked_makes_the_holder_unknown_never_blank():
    v = view.vip_view(["lb01", "lb02"],
                      samples((), unknown={"lb01": "cannot stream: SSH refused"}), NOW)
    assert v["holder"] == "unknown" and v["holders"] is None
    assert v["unknown"] == {"lb01": "cannot stream: SSH refused"}
    # lb02 answered "no": a page that left lb01 out would say "none" (wrong: lb01 may hold it)


def test_an_old_sample_is_unknown_not_the_last_holder():
    v = view.vip_view(["lb01", "lb02"], samples(("lb01",), t=NOW - view.VIP_STALE_S - 0.1), NOW)
    assert v["holder"] == "unknown"
    assert "no VIP sample for" in v["unknown"]["lb01"]


def test_no_sample_yet_is_unknown():
    v = view.vip_view(["lb01", "lb02"], {}, NOW)
    assert v["holder"] == "unknown" and v["unknown"]["lb02"] == "not asked yet"


def test_no_holder_says_none_and_two_say_split_brain():
    assert view.vip_view(["lb01", "lb02"], samples(()), NOW)["holder"] == "none"
    v = view.vip_view(["lb01", "lb02"], samples(("lb01", "lb02")), NOW)
    assert v["holder"] == "lb01, lb02" and v["split_brain"]


def test_a_status_round_that_cannot_ask_an_lb_wins_over_its_streamed_samples(topo):
    """lb01's sshd killed: the VIP stream opened before goes on answering, a fresh status
    round cannot ask: the page says unknown."""
    st = lab_status(topo, unknown=("lb01",))
    not_asked = view.unaskable(st, age=1.0, stale_after=5.0)
    assert "SSH refused" in not_asked["lb01"]
    v = view.vip_view(["lb01", "lb02"], samples(("lb01",)), NOW, not_asked)
    assert v["holder"] == "unknown" and v["seen_holding"] == ["lb01"]
    # A status too old to speak for now is not used either way.
    assert view.unaskable(st, age=9.0, stale_after=5.0) == {}


def test_page_latency_is_the_sum_of_its_parts():
    assert view.page_latency_s() == pytest.approx(
        view.CLICK_S + view.PROBE_S + view.VIP_STALE_S + view.PUSH_S)


# -- the whole state -----------------------------------------------------------------------
def test_the_state_is_json_and_names_every_node(topo):
    state = view.build(snapshot(topo))
    json.dumps(state)
    assert [n["name"] for n in state["nodes"]] == [n.name for n in topo.nodes]
    assert state["vip"]["holder"] == "lb01"
    lb01 = state["nodes"][0]
    assert lb01["holds_vip"] is True and lb01["configured"] == {"state": "MASTER",
                                                                "priority": 100}
    assert lb01["vrrp"] is None  # keepalived's report absent from this status: unknown
    assert {s["status"] for s in lb01["backends"]["servers"]} == {"UP"}
    assert state["client"]["state"] == "served" and state["client"]["via"] == "lb01"
    assert state["status"]["stale"] is False


def test_before_the_first_status_every_node_is_unknown(topo):
    state = view.build(snapshot(topo, status=None, status_at=None, status_took=None,
                                vip={}, records=[], probing_since=None))
    assert {n["state"] for n in state["nodes"]} == {"unknown"}
    assert state["vip"]["holder"] == "unknown"
    assert state["client"]["state"] == "unknown"
    assert state["nodes"][0]["backends"]["servers"] is None


def test_an_overdue_status_is_unknown_not_the_last_answer(topo):
    state = view.build(snapshot(topo, status_at=NOW - 60, status_took=1.0))
    assert {n["state"] for n in state["nodes"]} == {"unknown"}
    assert "no status for 60 s" in state["nodes"][0]["error"]
    assert state["status"]["stale"] is True


def test_a_crashed_lb_and_its_backends(topo):
    st = lab_status(topo, holders=("lb02",), states={"lb01": "crashed"},
                    down_servers=("k8s-master-02",))
    st.backends["lb01"] = Backends(None, "not asked, the node is crashed")
    state = view.build(snapshot(topo, status=st, vip=samples(("lb02",))))
    lb01 = state["nodes"][0]
    assert lb01["state"] == "crashed" and lb01["backends"]["servers"] is None
    assert "crashed" in lb01["backends"]["error"]
    lb02 = state["nodes"][1]
    assert {s["server"]: s["status"] for s in lb02["backends"]["servers"]}[
        "k8s-master-02"] == "DOWN"


def test_the_probe_strip(topo):
    c = view.probes_view(topo, probes("....xxx"), NOW, NOW - 30, [])
    assert c["state"] == "failing" and c["failing_for"] == pytest.approx(0.5, abs=0.01)
    assert [p["ok"] for p in c["strip"]] == [True] * 4 + [False] * 3
    assert c["strip"][0]["via"] == "lb01" and c["success_rate"] == pytest.approx(4 / 7,
                                                                                 abs=0.001)
    served = view.probes_view(topo, probes("xx..", via="192.168.0.102"), NOW, NOW - 30, [])
    assert served["state"] == "served" and served["via"] == "lb02"
    # Only the window: older probes are not on the strip.
    old = probes("." * 10, end=NOW - view.STRIP_S - 1)
    assert view.probes_view(topo, old + probes(".."), NOW, NOW - 60, [])["count"] == 2


def test_probes_that_stopped_or_died_are_unknown(topo):
    quiet = view.probes_view(topo, probes("...", end=NOW - 5), NOW, NOW - 30, [])
    assert quiet["state"] == "unknown" and "no probe for" in quiet["why"]
    dead = view.probes_view(topo, probes("..."), NOW, NOW - 30,
                            ["the api probe thread died at 99.0: RuntimeError: x"])
    assert dead["state"] == "unknown" and "died" in dead["why"]


# -- events --------------------------------------------------------------------------------
def test_events_tell_what_changed(topo):
    before = view.build(snapshot(topo))
    after = view.build(snapshot(
        topo, status=lab_status(topo, holders=("lb02",), down_servers=("k8s-master-01",)),
        vip=samples(("lb02",)), records=probes("....xxx")))
    texts = [e.text for e in view.events(before, after, NOW, wall=0)]
    assert "VIP lb01 → lb02" in texts
    assert "lb01: k8s-api-server/k8s-master-01 UP → DOWN" in texts
    assert any(t.startswith("client: probes through the VIP fail") for t in texts)
    again = view.build(snapshot(topo, vip=samples(("lb02",)), records=probes("xxx....",
                                                                                via="192.168.0.102")))
    texts = [e.text for e in view.events(after, again, NOW + 1, wall=0)]
    assert any(t.startswith("client: served again after") and "via lb02" in t for t in texts)
    assert view.events(None, before, NOW) == []


def test_an_unknown_holder_is_an_event_with_its_reason(topo):
    before = view.build(snapshot(topo))
    after = view.build(snapshot(topo, vip=samples(unknown={"lb01": "cannot stream"})))
    (e,) = [e for e in view.events(before, after, NOW, wall=0) if e.kind == "observe"]
    assert e.text == "VIP holder unknown (lb01: cannot stream)"


def test_events_newest_first():
    evs = [view.Event(1.0, 0, "vip", "a"), view.Event(2.0, 0, "vip", "b")]
    assert [e["text"] for e in view.events_view(evs, 3.0)] == ["b", "a"]


# -- the fault buttons ---------------------------------------------------------------------
DAEMONS = {"lb01": ["haproxy", "keepalived", "ssh"], "lb02": ["haproxy", "keepalived", "ssh"],
           "k8s-master-01": ["kube-apiserver", "ingress", "ssh"],
           "k8s-master-02": ["kube-apiserver", "ingress", "ssh"],
           "k8s-master-07": ["kube-apiserver", "ingress", "ssh"]}


class _FakeNode:
    def __init__(self, spec: topology.Node) -> None:
        self.spec = spec

    def has(self, role: topology.Role) -> bool:
        return role in self.spec.roles


class _FakeLab:
    """What Fault.resolve asks of a lab: the provider's name and the nodes' roles."""

    def __init__(self, topo: topology.Topology, provider: str) -> None:
        self.topo = topo
        self.provider = type("P", (), {"name": provider})()

    def node(self, name: str) -> _FakeNode:
        return _FakeNode(self.topo.node(name))


def test_every_fault_of_the_catalogue_has_a_button_that_resolves(topo):
    acts = view.fault_actions(topo, faults.CATALOGUE.values(), "netns", DAEMONS)
    assert {a.fault for a in acts} == set(faults.CATALOGUE)
    assert len({a.id for a in acts}) == len(acts), "ids must be unique"
    lab = _FakeLab(topo, "netns")
    for a in acts:
        faults.fault(a.fault).resolve(lab, list(a.nodes), dict(a.params))  # raises if wrong


def test_the_headline_button_and_its_undo(topo):
    acts = {a.label: a for a in view.fault_actions(topo, faults.CATALOGUE.values(), "netns",
                                                   DAEMONS)}
    kill = acts["kill haproxy on lb01"]
    assert kill.fault == "kill" and kill.nodes == ("lb01",)
    assert dict(kill.params) == {"service": "haproxy"}
    assert kill.has_undo and kill.undo_label == "undo kill haproxy on lb01"
    assert "partition lb01 lb02" in acts and "apiservers-down count=3" in acts
    assert acts["loss on lb02 percent=10"].params == (("percent", 10.0),)
    assert not acts["return on lb01"].has_undo  # it is itself an undo
    assert "kill ssh on lb01" in acts  # the nodes' own daemons, as they report them


def test_buttons_only_for_what_the_provider_can_express(topo):
    acts = view.fault_actions(topo, faults.CATALOGUE.values(), "hosts", DAEMONS)
    assert not {a.fault for a in acts} & {"crash", "freeze", "return", "link-down"}


def test_a_node_that_reported_no_daemons_gets_no_daemon_buttons_yet(topo):
    acts = view.fault_actions(topo, faults.CATALOGUE.values(), "netns", {})
    assert not [a for a in acts if a.fault == "kill"]


# -- the picture ---------------------------------------------------------------------------
def test_the_picture_shows_the_holder_and_what_is_unknown(topo):
    dot = picture.topology_dot(topo, lab_status(topo, holders=("lb02",),
                                                down_servers=("k8s-master-07",)))
    assert "on lb02" in dot and ":6443 DOWN" in dot  # lab.graph's drawing
    unknown = picture.topology_dot(topo, lab_status(topo, unknown=("lb01",)))
    assert "VIP: ?" in unknown and '"lb01 ?' in unknown


def test_the_picture_is_graphviz_svg(topo):
    if shutil.which("dot") is None:
        pytest.fail("Graphviz's dot is missing: `make setup` installs the graphviz package")
    svg = picture.topology_svg(topo, lab_status(topo))
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "192.168.0.107" in svg


def test_live_vip_overrides_the_status_round(topo):
    st = lab_status(topo, holders=("lb01",))
    v = view.vip_view(["lb01", "lb02"], samples(("lb02",)), NOW)
    live = view.with_live_vip(st, v)
    assert live.vip_holders == ["lb02"] and live.nodes[1].holds_vip is True


# -- 127.0.0.1 only ------------------------------------------------------------------------
@pytest.mark.parametrize("address", ["0.0.0.0", "::", "::1", "127.0.0.2", "localhost",
                                     "192.168.0.10", ""])
def test_any_bind_address_but_loopback_is_refused(address):
    with pytest.raises(server.AddressRefused) as e:
        server.check_address(address)
    assert "127.0.0.1 only" in str(e.value) and "ssh -L" in str(e.value)
    assert e.value.exit_code == 2


def test_loopback_is_accepted():
    server.check_address("127.0.0.1")


def test_the_cli_refuses_another_address_in_one_paragraph(tmp_path):
    p = subprocess.run([sys.executable, "-m", "lab", "ui", "-f", str(ROOT / "lab.yaml"),
                        "--address", "0.0.0.0"], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 2
    assert "serves on 127.0.0.1 only" in p.stderr and "Traceback" not in p.stderr + p.stdout


def test_the_cli_says_when_no_lab_is_up(tmp_path, default_text):
    (tmp_path / "lab.yaml").write_text(default_text.replace("name: halab", "name: uinotup"))
    p = subprocess.run([sys.executable, "-m", "lab", "ui", "--port", "0"], capture_output=True,
                       text=True, cwd=tmp_path)
    assert p.returncode == 4 and "not up" in p.stderr and "Traceback" not in p.stderr


def test_a_port_in_use_is_an_error_naming_the_fix(tmp_path, default_text):
    (tmp_path / "lab.yaml").write_text(default_text.replace("name: halab", "name: uiport"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ui = server.UiServer(tmp_path / "lab.yaml", port=port)
        with pytest.raises(server.PortInUse, match=f"port {port} .* in use.*--port"):
            ui.start()


# -- the HTTP server, over a fake lab ------------------------------------------------------
class FakeLive:
    """What the Hub reads of live.Live: the topology and a snapshot's parts."""

    def __init__(self, topo: topology.Topology) -> None:
        self.topo, self.provider = topo, "netns"
        self.reconnected: list[object] = []

    def snapshot(self, now: float) -> dict:
        return {"status": lab_status(self.topo), "status_at": now - 1, "status_took": 0.5,
                "status_error": None, "vip": samples(t=now - 0.1),
                "records": probes("....", end=now - 0.1), "probing_since": now - 10,
                "probe_errors": [], "exercise_active": None, "exercise_error": None}

    def daemons(self) -> dict[str, list[str]]:
        return DAEMONS

    def reconnect(self, nodes: object = None) -> None:
        self.reconnected.append(nodes)


class FakeActions:
    def __init__(self) -> None:
        self.job = None
        self.active: dict = {}
        self.exercise_result = None
        self.calls: list = []

    def fault(self, action, undo=False):
        from lab.ui.actions import Job

        self.calls.append((action.label, undo))
        return Job(action.label, "fault", 0.0)


@pytest.fixture
def served(topo):
    hub = server.Hub(FakeLive(topo), FakeActions())  # type: ignore[arg-type]
    hub.publish()
    httpd = server.UiHTTPServer(("127.0.0.1", 0), hub)
    th = threading.Thread(target=httpd.serve_forever, daemon=True)
    th.start()
    yield httpd
    stop = threading.Event()
    stop.set()
    hub.run(stop)  # marks the hub closed: event streams end
    httpd.shutdown()
    httpd.server_close()


def _request(httpd, method, path, body=None, headers=None):
    port = httpd.server_address[1]
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    return r.status, r.read().decode(), r


def test_the_page_has_the_vip_holder_element_never_blank(served):
    status, html, r = _request(served, "GET", "/")
    assert status == 200 and r.getheader("Content-Type").startswith("text/html")
    assert '<span id="vip-holder" class="holder-unknown">unknown</span>' in html
    assert "new EventSource(\"/events\")" in html


def test_the_state_endpoint(served):
    status, body, _ = _request(served, "GET", "/api/state")
    assert status == 200 and json.loads(body)["vip"]["holder"] == "lb01"


def test_server_sent_events_carry_the_buttons_then_the_state(served):
    port = served.server_address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        data = b""
        while b"event: state" not in data:
            data += s.recv(65536)
    head, _, stream = data.decode().partition("\r\n\r\n")
    assert "text/event-stream" in head
    static = json.loads(stream.split("event: static\ndata: ", 1)[1].split("\n", 1)[0])
    assert "kill haproxy on lb01" in [a["label"] for a in static["actions"]]
    assert static["exercises"]["why"] in ("", "no exercises in this build")


def test_a_foreign_host_or_a_post_without_the_token_is_refused(served):
    status, _, _ = _request(served, "GET", "/", headers={"Host": "evil.example:80"})
    assert status == 403  # DNS rebinding: a page of another site on our address
    status, body, _ = _request(served, "POST", "/api/fault", body=b'{"id": "x"}',
                               headers={"Content-Type": "application/json"})
    assert status == 403 and "not from this page" in body
    status, _, _ = _request(served, "POST", "/api/fault", body=b'{"id": "x"}',
                            headers={"Content-Type": "application/json",
                                     "X-Halab-Token": served.token,
                                     "Origin": "http://evil.example"})
    assert status == 403


def test_a_button_click_reaches_the_actions(served):
    headers = {"Content-Type": "application/json", "X-Halab-Token": served.token}
    kill = next(a for a in served.hub._action_list if a.label == "kill haproxy on lb01")
    status, body, _ = _request(served, "POST", "/api/fault",
                               body=json.dumps({"id": kill.id}).encode(), headers=headers)
    assert status == 202 and json.loads(body)["ok"]
    assert served.hub.actions.calls == [("kill haproxy on lb01", False)]
    status, body, _ = _request(served, "POST", "/api/fault",
                               body=json.dumps({"id": "no|such"}).encode(), headers=headers)
    assert status == 400 and "no fault button" in body


# -- packaging -----------------------------------------------------------------------------
def test_the_page_template_ships_with_the_package():
    assert (resources.files("lab.ui") / "templates" / "page.html.j2").is_file()
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "ui/templates/*" in data["tool"]["setuptools"]["package-data"]["lab"]


def test_an_error_while_the_ui_asks_is_a_halab_error():
    assert issubclass(server.PortInUse, HalabError) and issubclass(picture.PictureError,
                                                                   HalabError)


def test_the_first_answers_after_start_up_are_not_events(topo):
    before = view.build(snapshot(topo, status=None, status_at=None, status_took=None, vip={}))
    after = view.build(snapshot(topo))
    assert [e.kind for e in view.events(before, after, NOW, wall=0)] == []


# -- the actions: one job at a time, exercises through lab.exercises' API ------------------
class FakeExercises:
    """lab.exercises' API as the page calls it (being built on another branch)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.gate = threading.Event()
        self.gate.set()

    def catalogue(self) -> list[dict]:
        return [{"name": "equal-priorities", "title": "Equal VRRP priorities", "level": 1}]

    def active(self, lab) -> dict | None:
        return None

    def start(self, lab, name):
        self.calls.append(("start", name))
        self.gate.wait(10)
        return {"name": name, "title": "Equal VRRP priorities"}

    def check(self, lab, name):
        self.calls.append(("check", name))

        class Result:
            def as_dict(self) -> dict:
                return {"ok": False, "problems": ["lb02 has priority 100 too"]}

        return Result()

    def hint(self, lab, name):
        self.calls.append(("hint", name))
        return {"hints": [{"number": 1, "text": "compare the priorities"}]}

    def reset(self, lab) -> list[str]:
        self.calls.append(("reset",))
        return ["lb02: rewrote /etc/keepalived/keepalived.conf"]


@pytest.fixture
def acts(tmp_path, default_text, monkeypatch):
    from lab.ui import actions

    (tmp_path / "lab.yaml").write_text(default_text.replace("name: halab", "name: uiacts"))
    fake = FakeExercises()
    monkeypatch.setattr(actions, "_exercises", fake)
    done: list = []
    a = actions.Actions(tmp_path / "lab.yaml", None, lambda job, touched: done.append(
        (job.label, job.state, touched)))
    a.fake, a.finished = fake, done  # type: ignore[attr-defined]
    yield a
    fake.gate.set()
    a.close()


def _finish(acts, timeout: float = 10) -> None:
    import time

    t0 = time.monotonic()
    while acts.job.state == "running":
        assert time.monotonic() - t0 < timeout
        time.sleep(0.01)


def test_an_exercise_check_through_the_api_and_its_result(acts):
    acts.exercise("check", "equal-priorities")
    _finish(acts)
    assert acts.job.state == "done" and acts.job.message == "not solved yet"
    assert acts.exercise_result == {"op": "check", "name": "equal-priorities",
                                    "data": {"ok": False,
                                             "problems": ["lb02 has priority 100 too"]}}
    acts.exercise("reset", None)
    _finish(acts)
    assert acts.fake.calls[-1] == ("reset",)
    assert acts.finished[-1] == ("exercise reset", "done", None)  # every node looked at afresh


def test_one_job_at_a_time(acts):
    from lab.ui.actions import Busy

    acts.fake.gate.clear()
    acts.exercise("start", "equal-priorities")
    with pytest.raises(Busy, match="busy with “exercise start equal-priorities”"):
        acts.exercise("hint", "equal-priorities")
    acts.fake.gate.set()
    _finish(acts)
    with pytest.raises(HalabError, match="choose an exercise"):
        acts.exercise("hint", None)


def test_a_fault_that_fails_is_a_failed_job_with_its_reason(acts, topo):
    kill = next(a for a in view.fault_actions(topo, faults.CATALOGUE.values(), "netns",
                                              DAEMONS) if a.label == "kill haproxy on lb01")
    acts.fault(kill)
    _finish(acts)
    assert acts.job.state == "failed" and acts.job.message  # the lab is not up
    assert kill.id not in acts.active
    assert acts.finished[-1][2] == ["lb01"]  # the status rounds look at lb01 afresh


def test_without_lab_exercises_the_panel_says_so(monkeypatch, topo):
    from lab.ui import actions

    monkeypatch.setattr(actions, "_exercises", None)
    hub = server.Hub(FakeLive(topo), FakeActions())  # type: ignore[arg-type]
    hub.publish()
    assert hub.state["exercise"] == {"available": False, "why": "no exercises in this build"}
    assert json.loads(hub.static_json)["exercises"]["available"] is False


def test_with_lab_exercises_the_panel_lists_them(monkeypatch, topo):
    from lab.ui import actions

    monkeypatch.setattr(actions, "_exercises", FakeExercises())
    hub = server.Hub(FakeLive(topo), FakeActions())  # type: ignore[arg-type]
    hub.publish()
    static = json.loads(hub.static_json)["exercises"]
    assert static["available"] and static["catalogue"][0]["name"] == "equal-priorities"
    assert hub.state["exercise"]["available"] and hub.state["exercise"]["active"] is None


def test_the_vrrp_state_is_keepalived_s_own_report(topo):
    from lab.vrrp import VrrpState

    snap = snapshot(topo)
    lb01 = next(n for n in snap.status.nodes if n.name == "lb01")
    lb01.vrrp = VrrpState("VI_1", "BACKUP", 100, 100, 101, 0.0, 1, 1)
    state = view.build(snap)
    assert state["nodes"][0]["vrrp"] == {"state": "BACKUP", "priority": 100}
