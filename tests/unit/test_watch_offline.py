"""The live view's data and drawing (lab/watch.py, lab/screen.py), offline: timelines and
statuses made by hand in the shapes the real observers give. tests/test_watch.py breaks
the real lab under a running watch and sees each verdict word come out."""

from __future__ import annotations

import dataclasses
import time
import types

import pytest
from rich.console import Console
from statuses import healthy, node

from lab import screen, watch
from lab.errors import HalabError
from lab.probes import Holding, Record, Timeline
from lab.status import Backends, Daemon
from lab.watch import Frame, KindView, Polled

INTERVAL = 0.1


def rec(t: float, kind: str = "api", ok: bool = True, via: str = "192.168.0.101") -> Record:
    if ok:
        return Record(t, kind, True, 0.005, status=200, master="k8s-master-01", via=via)
    return Record(t, kind, False, 0.002, "ConnectionRefusedError: refused", stage="connect")


def view(kind: str, records: list[Record], now: float) -> KindView:
    return watch.kind_view(kind, records, now, 0.9, now - 30, 0.5, 60)


LB01 = ["lb01"]


def frame(topo, t: float = 100.0, holders: list[str] | None = LB01, kinds=None,
          polled: Polled | None = None, errors: tuple[str, ...] = ()) -> Frame:
    if kinds is None:
        kinds = {k: view(k, [rec(t - 0.2, k)], t) for k in watch.KINDS}
    if polled is None:
        polled = Polled(t - 1, t - 0.5, healthy(topo), None, (), "lb01")
    return Frame(topo, t, t - 40, 30.0, INTERVAL, str(topo.vip), ("lb01", "lb02"), holders,
                 tuple([holders] * 60), kinds, polled, 2.0, 0.9, errors)


# -- the verdict word --------------------------------------------------------------------------
def test_steady(default_topo):
    assert frame(default_topo).verdict == ("steady", [])


def test_degraded_is_steady_s_problems(default_topo):
    p = Polled(99, 99.5, healthy(default_topo), None, ("haproxy is not running on lb02",),
               "lb01")
    assert frame(default_topo, polled=p).verdict == (
        "degraded", ["haproxy is not running on lb02"])


def test_a_failing_probe_is_an_outage_whatever_else_is_unknown(default_topo):
    t = 100.0
    kinds = {k: view(k, [rec(t - 3, k), *[rec(t - 2 + i / 10, k, ok=(k != "api"))
                                          for i in range(15)]], t) for k in watch.KINDS}
    word, why = frame(default_topo, holders=None, kinds=kinds).verdict
    assert word == "outage"
    assert why == ["api: failing for 2.0 s (connect: ConnectionRefusedError: refused)"]


@pytest.mark.parametrize("hole", ["holders", "probe", "thread", "no poll", "stale poll",
                                  "status error", "node error", "steady unknown", "arp"])
def test_what_cannot_be_observed_is_unknown_never_steady(default_topo, hole):
    t = 100.0
    kw: dict = {}
    st = healthy(default_topo)
    polled = Polled(t - 1, t - 0.5, st, None, (), "lb01")
    if hole == "holders":
        kw["holders"] = None
    elif hole == "probe":  # the latest https probe is older than a probe may take
        kw["kinds"] = {k: view(k, [rec(t - (5 if k == "https" else 0.2), k)], t)
                       for k in watch.KINDS}
    elif hole == "thread":
        kw["errors"] = ("the http probe thread died at 12.000: RuntimeError: boom",)
    elif hole == "no poll":
        polled = None
    elif hole == "stale poll":  # asked 7 s ago, answered in 0.5 s: the next ask hangs
        polled = dataclasses.replace(polled, at=t - 7, done=t - 6.5)
    elif hole == "status error":
        polled = dataclasses.replace(polled, status=None, status_error="TransportError: x")
    elif hole == "node error":
        n = node(st, "lb01")
        n.holds_vip, n.error = None, "VIP: cannot ask lb01 whether it holds the VIP"
    elif hole == "steady unknown":
        polled = dataclasses.replace(polled, problems=(
            "unknown: cannot read HAProxy's backends on lb02: refused",))
    elif hole == "arp":
        polled = dataclasses.replace(polled, arp=None, arp_error="ip: cannot open netns")
    f = frame(default_topo, polled=polled, **kw)
    if hole == "no poll":
        f = dataclasses.replace(f, polled=None)
    word, why = f.verdict
    assert word == "unknown", (hole, why)
    assert why


def test_a_slow_ask_is_not_a_stale_one(default_topo):
    """On a busy machine a poll takes seconds: its answer is stale after a few of those."""
    t = 100.0
    slow = Polled(t - 7, t - 1, healthy(default_topo), None, (), "lb01")
    assert frame(default_topo, polled=slow).verdict == ("steady", [])
    hung = Polled(t - 19, t - 13, healthy(default_topo), None, (), "lb01")
    word, why = frame(default_topo, polled=hung).verdict
    assert word == "unknown" and why == ["the lab's status is 19 s old (the last ask has not "
                                         "come back)"]


def test_what_a_known_fault_means_is_no_hole(default_topo):
    """A crashed LB cannot be asked, and a stopped HAProxy has no backends: that is what
    the fault means (degraded), not a hole in the view (unknown)."""
    st = healthy(default_topo)
    lb02 = node(st, "lb02")
    lb02.state, lb02.holds_vip, lb02.daemons = "crashed", False, None
    lb02.error = "daemons: not asked, the node is crashed"
    st.backends["lb02"] = Backends(None, "not asked, the node is crashed")
    p = Polled(99, 99.5, st, None, ("lb02 is crashed",), "lb01")
    assert frame(default_topo, polled=p).verdict == ("degraded", ["lb02 is crashed"])
    st = healthy(default_topo)
    node(st, "lb02").daemons["haproxy"] = Daemon(False, None)
    st.backends["lb02"] = Backends(None, "nc: /run/haproxy/admin.sock: Connection refused")
    p = Polled(99, 99.5, st, None, ("haproxy is not running on lb02",), "lb01")
    assert frame(default_topo, polled=p).verdict[0] == "degraded"
    # ... but an HAProxy that runs and cannot be asked is a hole.
    st.backends["lb01"] = Backends(None, "SSH connection refused")
    p = Polled(99, 99.5, st, None, ("haproxy is not running on lb02",), "lb01")
    assert frame(default_topo, polled=p).verdict[0] == "unknown"


# -- one kind's view ---------------------------------------------------------------------------
def test_kind_view_outages_and_strip():
    now = 100.0
    recs = ([rec(80 + i * 0.1) for i in range(10)] + [rec(81 + i * 0.1, ok=False)
                                                      for i in range(20)]
            + [rec(83 + i * 0.1) for i in range(10)])
    v = view("api", recs, now)
    assert v.served is None, "the latest probe is 16 s old: nothing is known of now"
    assert v.failing_since is None
    assert v.last_outage is not None and v.last_outage.failed == 20
    assert v.last_outage.seconds == pytest.approx(2.0)
    # 0.5 s columns from 70 s: 80.0-80.5 is column 20.
    assert v.cells[19] == "" and v.cells[20] == "ok" and v.cells[22] == "fail"
    assert v.cells[25] == "fail" and v.cells[26] == "ok" and v.cells[-1] == ""
    ongoing = recs + [rec(99.5 + i * 0.1, ok=False) for i in range(4)]
    v = view("api", ongoing, now)
    assert v.served is False and v.failing_since == pytest.approx(99.5)
    assert v.last_outage is not None and v.last_outage.failed == 20, "the one that ended"


def test_a_column_with_any_failure_is_failed():
    cells = watch.probe_cells([rec(0.1), rec(0.2, ok=False), rec(0.3)], 0.0, 0.5, 2)
    assert cells == ("fail", "")


# -- events, from a timeline driven by hand ------------------------------------------------------
class FakeProber:
    timeout = 0.5


def fake_watch(default_topo) -> tuple[watch.Watch, Timeline]:
    lab = types.SimpleNamespace(topo=default_topo, vip=str(default_topo.vip),
                                prober=FakeProber())
    w = watch.Watch(lab, interval=INTERVAL, window=30, columns=60)  # type: ignore[arg-type]
    tl = Timeline(INTERVAL, kinds=("api",))
    w.timeline, w.kinds, w.started = tl, ("api",), 0.0
    return w, tl


def test_events_say_what_changed_and_when(default_topo, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(watch.time, "monotonic", lambda: clock[0])
    w, tl = fake_watch(default_topo)

    def run(until: float, ok: bool, holder: str) -> None:
        t = clock[0]
        while t < until:
            tl.records.append(rec(t, ok=ok, via="192.168.0.102" if holder == "lb02"
                                  else "192.168.0.101"))
            for lb in ("lb01", "lb02"):
                tl.holdings.append(Holding(t, lb, lb == holder))
            t = round(t + INTERVAL, 3)
            clock[0] = t
            if round(t * 10) % 3 == 0:  # a frame every 0.3 s
                w.frame()

    run(2.0, True, "lb01")
    run(5.0, False, "lb01")
    run(5.5, False, "lb02")
    run(8.0, True, "lb02")
    texts = [(round(e.t, 1), e.text) for e in w.frame().events]
    assert texts == [
        (0.0, "api: served via lb01 → k8s-master-01"),
        (0.0, "VIP: on lb01"),
        (2.0, "api: FAILING (connect: ConnectionRefusedError: refused)"),
        (5.0, "VIP: on lb02"),
        (5.5, "api: served again via lb02 → k8s-master-01 after 3.50 s (35 probes failed)"),
    ]


def test_unknown_holders_are_an_event_too(default_topo, monkeypatch):
    clock = [10.0]
    monkeypatch.setattr(watch.time, "monotonic", lambda: clock[0])
    w, tl = fake_watch(default_topo)
    for i in range(20):
        t = 9.0 + i * 0.05
        tl.holdings += [Holding(t, "lb01", True), Holding(t, "lb02", False)]
    w.frame()
    tl.holdings.append(Holding(10.1, "lb01", None, "cannot stream: refused"))
    clock[0] = 10.2
    f = w.frame()
    assert f.holders is None
    assert f.events[-1].text == "VIP: unknown (an LB could not be asked)"
    assert round(f.events[-1].t, 2) == 10.1


def test_a_long_watch_forgets_what_is_out_of_the_window(default_topo, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(watch.time, "monotonic", lambda: clock[0])
    w, tl = fake_watch(default_topo)
    tl.records += [rec(t / 10) for t in range(10000)]
    tl.holdings += [Holding(t / 10, "lb01", True) for t in range(10000)]
    w.frame()
    assert min(r.t for r in tl.records) >= 1000 - 30 - 10
    assert min(h.t for h in tl.holdings) >= 1000 - 30 - 10


def test_changes_between_two_statuses(default_topo):
    """Events from diffing successive statuses: nodes, daemons, VRRP, backends."""
    from lab.vrrp import VrrpState

    before = healthy(default_topo)
    after = healthy(default_topo)
    node(after, "lb02").state = "frozen"
    node(after, "lb01").daemons["haproxy"] = Daemon(False, None)
    node(after, "lb01").vrrp = VrrpState("VI_1", "BACKUP", 100, 100, 101, 1.7e9, 1, 1)
    for s in after.backends["lb01"].servers:
        if s.server == "k8s-master-01" and s.proxy == "k8s-api-server":
            s.status, s.up = "DOWN", False
    assert watch.status_changes(before, after) == [
        ("node", "lb01: haproxy stopped"),
        ("vrrp", "lb01: VRRP MASTER 102 → BACKUP 100"),
        ("node", "lb02: running → frozen"),
        ("backend", "lb01: k8s-api-server/k8s-master-01 DOWN (DOWN)"),
    ]
    prio = healthy(default_topo)
    node(prio, "lb01").vrrp = VrrpState("VI_1", "MASTER", 100, 100, 0, 1.7e9, 1, 0)
    assert watch.status_changes(before, prio) == [
        ("vrrp", "lb01: effective priority 102 → 100")]


def test_what_a_status_could_not_ask_is_no_change(default_topo):
    before = healthy(default_topo)
    after = healthy(default_topo)
    node(after, "lb01").vrrp = None
    node(after, "lb01").daemons = None
    after.backends["lb01"] = Backends(None, "SSH refused")
    assert watch.status_changes(before, after) == []
    assert watch.status_changes(None, after) == []


def test_live_vip_overrides_the_polled_one(default_topo):
    st = watch.with_live_vip(healthy(default_topo), ["lb02"])
    assert (st.vip_holders, st.vip_unknown) == (["lb02"], [])
    assert node(st, "lb01").holds_vip is False and node(st, "lb02").holds_vip is True
    st = watch.with_live_vip(healthy(default_topo), None)
    assert st.vip_holders == [] and st.vip_unknown == ["lb01", "lb02"]
    assert node(st, "client").holds_vip is None
    crashed = healthy(default_topo)
    node(crashed, "lb02").state = "crashed"
    st = watch.with_live_vip(crashed, None)
    assert st.vip_unknown == ["lb01"] and node(st, "lb02").holds_vip is False


def test_watch_refuses_nonsense_settings(default_topo):
    lab = types.SimpleNamespace(topo=default_topo, vip="x", prober=FakeProber())
    with pytest.raises(HalabError, match="above 0"):
        watch.Watch(lab, interval=0)  # type: ignore[arg-type]


# -- the drawing -------------------------------------------------------------------------------
def draw(f: Frame, width: int = 200, height: int = 80, **kw) -> str:
    c = Console(width=width, height=height, record=True, color_system=None,
                file=open("/dev/null", "w"))
    c.print(screen.render(f, width, height, **kw))
    return c.export_text()


def outage_frame(topo) -> Frame:
    t = 100.0
    kinds = {"api": view("api", [rec(t - 3), *[rec(t - 2 + i / 10, ok=False)
                                                for i in range(15)]], t),
             "https": view("https", [rec(t - 0.2, "https")], t),
             "http": view("http", [rec(t - 0.2, "http")], t)}
    cells = tuple([["lb01"]] * 50 + [[]] * 5 + [["lb01", "lb02"]] * 3 + [None] * 2)
    events = tuple(watch.Event(60.0 + i, "api", f"event {i}") for i in range(30)) + (
        watch.Event(98.0, "api", "api: FAILING (connect: x)"),)
    return dataclasses.replace(frame(topo, kinds=kinds, holders=["lb01", "lb02"]),
                               vip_cells=cells, events=events)


def test_the_screen_in_words(default_topo):
    text = draw(outage_frame(default_topo))
    assert " OUTAGE " in text and "api: failing for 2.0 s" in text
    assert "1" * 50 + "_____!!!??" in text
    assert "SPLIT BRAIN: lb01 and lb02" in text
    assert "FAILING 2.0 s (connect: ConnectionRefusedError: refused)" in text
    assert "ok 100% 5 ms via lb01→k8s-master-01" in text
    assert "t+  38.00 s  api: FAILING (connect: x)" in text
    lb01 = next(line for line in text.splitlines() if line.startswith("lb01 "))
    assert lb01.split() == ["lb01", "holds", "up", "MASTER", "102", "UP", "9/9"]
    assert "lab halab" in text and "k8s-master-07" in text, "the graph is drawn"
    assert "k8s-master-07" not in draw(outage_frame(default_topo), show_graph=False)


def test_80x24_fits_and_leaves_out_what_is_least_needed(default_topo):
    """Over SSH in an 80x24 terminal: no line wider than 80 columns, no more than 24 lines;
    the drawing goes first, then older events; the verdict, the strips, the LBs stay."""
    f = outage_frame(default_topo)
    f = dataclasses.replace(f, vip_cells=f.vip_cells[-screen.strip_columns(80):],
                            kinds={k: dataclasses.replace(
                                v, cells=v.cells[-screen.strip_columns(80):])
                                for k, v in f.kinds.items()})
    text = draw(f, 80, 24)
    lines = text.rstrip("\n").splitlines()
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    assert len(lines) <= 24, len(lines)
    assert lines[0].startswith(" OUTAGE ") and "VIP 192.168.0.203" in lines[0]
    assert any(line.startswith("VIP ") for line in lines)
    assert any(line.startswith("lb02 ") and "BACKUP 101" in line for line in lines)
    assert "api: FAILING (connect: x)" in text, "the newest event stays"
    assert "event 0" not in text, "the oldest events go"
    assert "k8s-master-07" not in text, "no room for the drawing"
    assert "Ctrl-C quits" in lines[-1]


def test_an_lb_that_cannot_be_asked_reads_unknown_with_the_reason(default_topo):
    st = healthy(default_topo)
    lb01 = node(st, "lb01")
    lb01.vrrp, lb01.error = None, "VRRP: cannot ask keepalived on lb01: SSH refused"
    st.backends["lb01"] = Backends(None, "SSH refused")
    f = frame(default_topo, polled=Polled(99, 99.5, st, None, (), "lb01"))
    text = draw(f, 80, 24)
    row = next(line for line in text.splitlines() if line.startswith("lb01 "))
    assert row.split()[3:] == ["unknown", "unknown"]
    assert " UNKNOWN " in text
    assert "lb01: could not be asked: VRRP: cannot ask keepalived on lb01" in text
    st = healthy(default_topo)
    node(st, "lb02").daemons["keepalived"] = Daemon(False, None)
    node(st, "lb02").vrrp = None
    f = frame(default_topo, polled=Polled(99, 99.5, st, None, ("keepalived is not running "
                                                               "on lb02",), "lb01"))
    row = next(line for line in draw(f).splitlines() if line.startswith("lb02 "))
    assert "keepalived stopped" in row and "not running" in row


def test_columns_before_the_watch_began_are_not_unknown(default_topo):
    f = dataclasses.replace(frame(default_topo), started=100.0 - 10,
                            vip_cells=tuple([None] * 40 + [["lb01"]] * 20))
    assert screen.vip_strip(f).plain == "·" * 40 + "1" * 20


def test_stale_arp_is_named(default_topo):
    p = Polled(99, 99.5, healthy(default_topo), None, (), "lb01")
    f = frame(default_topo, holders=["lb02"], polled=p)
    assert screen.arp_now(f).plain == ("the client sends the VIP's packets to lb01, which "
                                       "does not hold it")
    lines = screen.summary_lines(f)
    assert lines[0].startswith("steady\t") and lines[1] == "VIP\ton lb02"
    assert lines[-1].startswith("ARP\tthe client sends the VIP's packets to lb01, which")


# -- an ask that gets stuck ----------------------------------------------------------------------
class StuckTransport:
    def __init__(self, released) -> None:
        self.released = released

    def close(self) -> None:
        self.released.set()  # what closing a hung SSH connection does to the command in it


def test_a_stuck_ask_is_given_up_and_asked_again_on_new_connections(default_topo,
                                                                    monkeypatch):
    """A node that vanished mid-command: no answer ever comes on that connection. The
    watch gives the ask up (closing its connections), asks again on a Lab of its own, and
    says so; the deadline doubles while asks keep being given up."""
    import threading

    monkeypatch.setattr(watch, "ASK_DEADLINE_S", 0.2)
    siblings: list[types.SimpleNamespace] = []

    def sibling(lab):
        released = threading.Event()
        node_ = types.SimpleNamespace(transport=StuckTransport(released))
        s = types.SimpleNamespace(topo=default_topo, vip=str(default_topo.vip),
                                  nodes={"lb02": node_}, released=released,
                                  provider=types.SimpleNamespace(
                                      node_state=lambda name: "running"))
        siblings.append(s)
        return s

    def gather(lab):
        if lab is siblings[0]:
            lab.released.wait(30)  # stuck until its connections are closed
            raise HalabError("lost the SSH connection to lb02")
        return healthy(default_topo)

    monkeypatch.setattr(watch, "_sibling", sibling)
    monkeypatch.setattr(watch.status, "gather", gather)
    monkeypatch.setattr(watch.steady, "problems", lambda lab: [])
    monkeypatch.setattr(watch.Watch, "_arp", lambda self, lab: ("lb01", None))
    w, _ = fake_watch(default_topo)
    w.poll_every = 0.05
    assert w.ask_deadline() == pytest.approx(0.2)
    poller = threading.Thread(target=w._poll_loop, daemon=True)
    poller.start()
    try:
        w.wait_polled(timeout=10)
    finally:
        w._stop.set()
        poller.join(5)
    assert len(siblings) >= 2 and siblings[0].released.is_set()
    assert w._polled is not None and w._polled.status is not None
    [given_up] = [e.text for e in w._pending]
    assert given_up.startswith("watch: asking the lab took over ")
    assert given_up.endswith(" s; asking again on new connections")
    w._given_up = 2
    assert w.ask_deadline() == pytest.approx(max(0.2, 3 * w.last_poll_s) * 4)
    w._given_up = 20
    assert w.ask_deadline() == watch.ASK_DEADLINE_MAX_S


# -- the command ---------------------------------------------------------------------------------
def _halab(*args: str, cwd):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_halab_watch_of_a_lab_that_is_not_up(tmp_path, default_text):
    (tmp_path / "lab.yaml").write_text(default_text.replace("name: halab", "name: notup"))
    p = _halab("watch", "--once", cwd=tmp_path)
    assert p.returncode == 4 and "not up" in p.stderr and p.stdout == ""
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("option", ["--interval", "--poll", "--window"])
def test_halab_watch_refuses_a_pace_of_zero(tmp_path, default_text, option):
    (tmp_path / "lab.yaml").write_text(default_text.replace("name: halab", "name: notup"))
    p = _halab("watch", option, "0", cwd=tmp_path)
    assert p.returncode == 2 and option in p.stderr and "Traceback" not in p.stderr


def test_an_ask_is_given_up_when_a_node_goes_down_under_it(default_topo, monkeypatch):
    import threading

    released = threading.Event()
    states = {"lb02": "running"}
    lab = types.SimpleNamespace(
        topo=default_topo, provider=types.SimpleNamespace(
            node_state=lambda name: states.get(name, "running")))
    asker = threading.Thread(target=lambda: released.wait(30), daemon=True)
    asker.start()
    w, _ = fake_watch(default_topo)
    threading.Timer(0.3, lambda: states.update(lb02="crashed")).start()
    t0 = time.monotonic()
    why = w._wait(asker, lab)  # type: ignore[arg-type]
    assert why == "lb02 went down while the lab was being asked"
    assert time.monotonic() - t0 < w.ask_deadline(), "given up on evidence, not the clock"
    released.set()
