"""`halab status --watch` (`halab watch`) and `halab graph` on the real lab, broken the way
real outages break it: every word the live view can say (steady, degraded, outage,
unknown; a split brain, a stale ARP entry, a backend DOWN, an LB that forwards nothing,
VRRP as keepalived reports it) is seen to come out, and the healthy lab in the same run
is seen as steady.

The watch runs on a Lab object of its own (the CLI's situation: another process), while
the test breaks the lab through the session's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lab import faults, graph, observe, sabotage, screen, timing
from lab.graph import State
from lab.lab import Lab
from lab.wait import until
from lab.watch import STALE_POLLS, Frame, Watch
from provision import names

pytestmark = [pytest.mark.needs_lab]
ROOT = Path(__file__).resolve().parents[1]
POLL = 1.0  # the watch's own pace of asking; not a promise of the lab's


@pytest.fixture
def own_lab(lab, lab_file) -> Iterator[Lab]:
    other = Lab.open(lab_file, lab.provider.name)
    try:
        yield other
    finally:
        other.prober.close()
        other.close()


@contextmanager
def watching(lab: Lab) -> Iterator[Watch]:
    with Watch(lab, interval=0.1, poll=POLL) as w:
        w.wait_polled()
        yield w


def _explain(f: Frame) -> str:
    lines = screen.summary_lines(f) + [screen.event_line(f, e) for e in f.events[-15:]]
    return "\n".join(lines)


def seen(w: Watch, what: str, pred: Callable[[Frame], bool], lab_s: float) -> Frame:
    """The first frame for which ``pred`` holds, within ``lab_s`` (what the lab's config
    gives it) plus the watch's own way of learning it: a few of its asks, as long as they
    take on this machine now. Fails with what the watch showed last."""
    start = time.monotonic()
    f = w.frame()
    while not pred(f):
        # An ask in flight when a node crashed waits for the watch to reset it.
        allowed = lab_s + (STALE_POLLS + 1) * max(POLL, w.last_poll_s) + w.ask_deadline()
        if time.monotonic() - start > allowed:
            pytest.fail(f"the watch never showed {what} within {allowed:.1f} s; it "
                        "showed:\n" + _explain(f), pytrace=False)
        time.sleep(0.1)
        f = w.frame()
    return f


def fresh(w: Watch, after: float) -> Callable[[Frame], bool]:
    """The frame's status was asked after ``after``: it can know of what happened then."""
    return lambda f: f.polled is not None and f.polled.at > after


def texts(f: Frame) -> list[str]:
    return [e.text for e in f.events]


def live_graph(f: Frame) -> graph.Graph:
    return graph.build(f.topo, f.status, screen.latest_probes(f))


# -- healthy ----------------------------------------------------------------------------------
def test_a_steady_lab_is_steady(steady, own_lab):
    master, backup = steady.topo.master_lb.name, steady.topo.best_backup_lb.name
    with watching(own_lab) as w:
        f = seen(w, "a steady lab", lambda f: f.verdict[0] == "steady", 0)
        assert f.holders == [master]
        assert all(k.served for k in f.kinds.values())
        assert f.polled is not None and f.polled.arp == master
        assert "lab: steady" in texts(f) and f"VIP: on {master}" in texts(f)
        g = live_graph(f)
        assert {n.state for n in g.nodes} == {State.OK}, [(n.id, n.state) for n in g.nodes]
        assert g.edge("vip", master).state is State.OK
        assert g.edge("vip", backup).state is State.IDLE
        assert {e.label for e in g.edges if e.src in (master, backup) and not e.vrrp} \
            == {"UP"}
        assert " STEADY " in _draw(f)


def _draw(f: Frame, width: int = 200, height: int = 80) -> str:
    from rich.console import Console

    c = Console(width=width, height=height, record=True, color_system=None,
                file=open("/dev/null", "w"))
    c.print(screen.render(f, width, height))
    return c.export_text()


def lb_row(f: Frame, lb: str) -> list[str]:
    """The LB's row of the 80x24 screen: LB, VIP, daemons, VRRP, backends."""
    line = next(x for x in _draw(f, 80, 24).splitlines() if x.startswith(f"{lb} "))
    cuts = [0, 7, 13, 32, 44, len(line)]  # the screen's columns: 6, 5, 18, 11, the rest
    return [line[a:b].strip() for a, b in zip(cuts, cuts[1:], strict=False)]


# -- outage, then degraded: the headline failover ---------------------------------------------
@pytest.mark.disruptive
def test_haproxy_crash_is_an_outage_then_degraded_on_the_backup(steady, own_lab):
    lab = steady
    master, backup = lab.topo.master_lb.name, lab.topo.best_backup_lb.name
    if not timing.haproxy_crash_fails_over(lab.topo):
        pytest.skip("this lab's check weights never let the backup outrank the master")
    bound = timing.haproxy_crash(lab.topo).with_margin
    with watching(own_lab) as w:
        seen(w, "a steady lab", lambda f: f.verdict[0] == "steady", 0)
        at = faults.kill(lab, master, names.HAPROXY_UNIT)
        f = seen(w, "an outage", lambda f: f.verdict[0] == "outage", bound)
        # Each kind probes in a thread of its own: whichever failed first says so.
        assert any(line.split(":")[0] in w.kinds and "failing for" in line
                   for line in f.verdict[1]), f.verdict
        f = seen(w, f"the VIP on {backup}, the client served and the status asked since",
                 lambda f: f.holders == [backup] and f.verdict[0] != "outage"
                 and fresh(w, at)(f) and f.polled.arp == backup, bound)
        word, why = f.verdict
        assert word == "degraded", _explain(f)
        assert f"haproxy is not running on {master}" in why
        t = texts(f)
        assert any(x.startswith("api: FAILING") for x in t)
        assert f"VIP: on {backup}" in t
        assert any(x.startswith(f"api: served again via {backup}") for x in t)
        assert f"{master}: haproxy stopped" in t
        g = live_graph(f)
        assert g.node(master).state is State.DOWN
        assert "stopped: haproxy" in g.node(master).notes
        assert {(e.state, e.label) for e in g.edges if e.src == master and not e.vrrp} \
            == {(State.OFF, "haproxy stopped")}
        assert g.edge("vip", backup).state is State.OK
        assert g.node("vip").notes == (f"on {backup}",)
        assert " DEGRADED " in _draw(f)
        # VRRP as keepalived reports it: the backup MASTER, lb01 BACKUP, each with the
        # effective priority its check leaves it.
        def reported(f: Frame, lb: str, state: str) -> bool:
            n = next(n for n in f.status.nodes if n.name == lb) if f.status else None
            return n is not None and n.vrrp is not None and n.vrrp.state == state

        # Each LB's keepalived is asked at its own moment: both tell once both have moved.
        f = seen(w, f"keepalived reporting {backup} MASTER and {master} BACKUP",
                 lambda f: reported(f, backup, "MASTER") and reported(f, master, "BACKUP"),
                 timing.node_crash(lab.topo).with_margin)
        assert lb_row(f, backup)[3].startswith("MASTER ")
        assert lb_row(f, master)[3].startswith("BACKUP ")
        assert any(x.startswith(f"{backup}: VRRP BACKUP") and "→ MASTER" in x
                   for x in texts(f)), _explain(f)
        assert "keepalived: MASTER" in " ".join(live_graph(f).node(backup).notes)


# -- degraded: a backend DOWN ------------------------------------------------------------------
@pytest.mark.disruptive
def test_a_dead_apiserver_is_degraded_and_its_edges_down(steady, own_lab):
    lab = steady
    m = lab.masters[0].name
    bound = timing.backend_down(lab.topo).with_margin
    with watching(own_lab) as w:
        seen(w, "a steady lab", lambda f: f.verdict[0] == "steady", 0)
        faults.kill(lab, m, names.APISERVER_UNIT)

        def down_everywhere(f: Frame) -> bool:
            if f.status is None:
                return False
            g = live_graph(f)
            return all(g.edge(lb.name, m).state is State.DOWN for lb in lab.load_balancers)

        f = seen(w, f"{m}'s API server DOWN on every LB, the client served",
                 lambda f: down_everywhere(f) and f.verdict[0] == "degraded", bound)
        assert f"{names.APISERVER_UNIT} is not running on {m}" in f.verdict[1]
        g = live_graph(f)
        for lb in lab.load_balancers:
            assert g.edge(lb.name, m).label == f":{names.PORTS[names.API_PROXY]} DOWN"
            others = [x.name for x in lab.masters if x.name != m]
            assert all(g.edge(lb.name, o).state is State.OK for o in others)
        assert g.node(m).state is State.DOWN
        assert f"{m}: {names.APISERVER_UNIT} stopped" in texts(f)
        assert ":6443 DOWN" in _draw(f)
        for lb in lab.load_balancers:
            assert f"{lb.name}: {names.API_PROXY}/{m} DOWN" in " ".join(texts(f)), _explain(f)
            assert lb_row(f, lb.name)[4] == f"DOWN {m}:{names.PORTS[names.API_PROXY]}"


# -- degraded: a load balancer down ------------------------------------------------------------
@pytest.mark.disruptive
def test_a_backup_cut_off_is_down_and_forwards_nothing(steady, own_lab):
    """The backup's cable pulled. (Not a crash: on a machine whose root runs `pyenv init` in
    every shell, a crash that SIGKILLs a node's shell mid-`pyenv rehash` leaves pyenv's lock
    behind, and every SSH command on the machine then waits 60 s for it; the watch asks the
    node every second, so a crash under it hits that window. The crash's own display is the
    same rule, unit-tested in test_graph.py: a node that is down forwards nothing.)"""
    lab = steady
    backup = lab.topo.best_backup_lb.name
    with watching(own_lab) as w:
        seen(w, "a steady lab", lambda f: f.verdict[0] == "steady", 0)
        at = time.monotonic()
        faults.link_down(lab, backup)
        f = seen(w, f"{backup} cut off, asked since",
                 lambda f: fresh(w, at)(f) and f.verdict[0] == "degraded", 0)
        assert f"{backup} is link-down" in f.verdict[1], _explain(f)
        assert f"{backup}: running → link-down" in texts(f), _explain(f)
        g = live_graph(f)
        assert g.node(backup).state is State.DOWN and g.node(backup).notes[0] == "link-down"
        assert g.edge("vip", backup).state is State.OFF
        assert {(e.state, e.label) for e in g.edges if e.src == backup and not e.vrrp} == {
            (State.OFF, f"{backup} link-down")}
        assert lb_row(f, backup)[2:] == ["link-down", "link-down", "off"]


# -- unknown: the client's probes stopped ------------------------------------------------------
@pytest.mark.disruptive
def test_a_dead_probe_thread_is_unknown_never_fine(steady, own_lab, monkeypatch):
    """The watch's own probing breaks: what the client sees is no longer known."""
    real, calls = own_lab.prober.probe, []

    def dying(*a, **kw):
        calls.append(1)
        if len(calls) > 30:
            raise RuntimeError("the prober broke")
        return real(*a, **kw)

    monkeypatch.setattr(own_lab.prober, "probe", dying)
    with watching(own_lab) as w:
        f = seen(w, "unknown", lambda f: f.verdict[0] == "unknown", 0)
        assert any("probe thread died" in x for x in f.verdict[1]), _explain(f)
        f = seen(w, "every kind's probes stale", lambda f: all(
            k.served is None for k in f.kinds.values()), 0)
        assert f.verdict[0] == "unknown"
        assert g_client(f) is State.UNKNOWN


def g_client(f: Frame) -> State:
    return live_graph(f).edge(f.topo.client.name, graph.VIP_ID).state


# -- keepalived stopped: what keepalived says, or why it says nothing --------------------------
@pytest.mark.disruptive
def test_keepalived_stopped_on_the_backup_is_said_so(steady, own_lab):
    lab = steady
    backup = lab.topo.best_backup_lb.name
    with watching(own_lab) as w:
        seen(w, "a steady lab", lambda f: f.verdict[0] == "steady", 0)
        assert lb_row(w.frame(), backup)[3] == f"BACKUP {_effective(lab, backup)}"
        at = time.monotonic()
        faults.stop(lab, backup, names.KEEPALIVED_UNIT)
        f = seen(w, "keepalived stopped on the backup, asked since",
                 lambda f: fresh(w, at)(f) and f.verdict[0] == "degraded", 0)
        assert f"keepalived is not running on {backup}" in f.verdict[1]
        row = lb_row(f, backup)
        assert row[2:4] == ["keepalived stopped", "not running"], row
        assert f"{backup}: keepalived stopped" in texts(f)


def _effective(lab, lb: str) -> int:
    """The effective priority keepalived should report with its check passing."""
    spec = lab.topo.node(lb)
    check = lab.topo.keepalived.check
    return spec.vrrp.priority + max(0, check.weight if check is not None else 0)


# -- unknown: an LB that cannot be asked -------------------------------------------------------
@pytest.mark.disruptive
def test_an_lb_that_cannot_be_asked_is_unknown_never_fine(steady, own_lab):
    """lb01's sshd gone (its management access lost), the watch started after: it can
    neither stream lb01's VIP samples nor ask its status. Unknown, frame after frame."""
    lab = steady
    master = lab.topo.master_lb.name
    faults.kill(lab, master, "ssh", signal.SIGKILL)
    lab.node(master).close()
    with watching(own_lab) as w:
        end = time.monotonic() + 3 * POLL
        words = set()
        f = w.frame()
        while time.monotonic() < end:
            f = w.frame()
            words.add(f.verdict[0])
            time.sleep(0.2)
        assert words == {"unknown"}, _explain(f)
        assert f.holders is None
        assert any("who holds the VIP is unknown" in x for x in f.verdict[1])
        assert "VIP: unknown (an LB could not be asked)" in texts(f)
        row = lb_row(f, master)
        assert row[1] == "?" and row[3:] == ["unknown", "unknown"], row
        assert any(x.startswith(f"{master}: could not be asked:") and "VRRP: cannot ask "
                   "keepalived" in x for x in f.verdict[1]), _explain(f)
        g = live_graph(f)
        # lb01 is down (its sshd is known to be stopped) and its VIP unknown: never fine.
        assert g.node(master).state in (State.DOWN, State.UNKNOWN)
        assert "VIP: ?" in g.node(master).notes and "stopped: ssh" in g.node(master).notes
        assert g.node("vip").state is State.UNKNOWN
        assert g.edge("vip", master).state is State.UNKNOWN
        assert " UNKNOWN " in _draw(f)


# -- a split brain -----------------------------------------------------------------------------
@pytest.mark.disruptive
def test_a_split_brain_is_seen_and_named(steady, own_lab):
    lab = steady
    master, backup = lab.topo.master_lb.name, lab.topo.best_backup_lb.name
    bound = timing.node_crash(lab.topo).with_margin
    with watching(own_lab) as w:
        seen(w, "a steady lab", lambda f: f.verdict[0] == "steady", 0)
        at = time.monotonic()
        faults.partition(lab, master, backup)
        f = seen(w, "the VIP on both LBs, asked since",
                 lambda f: f.holders == [master, backup] and fresh(w, at)(f), bound)
        # lab.steady names the partition first (the cause); the strip shows the split.
        assert f.verdict[0] in ("degraded", "outage"), _explain(f)
        assert f.polled is not None and f.polled.problems, _explain(f)
        assert f"VIP: on {master} and {backup} (split brain)" in texts(f)
        assert screen.holders_now(f).plain == f"SPLIT BRAIN: {master} and {backup}"
        assert "!" in screen.vip_strip(f).plain
        g = live_graph(f)
        assert g.node("vip").state is State.DOWN
        assert g.node("vip").notes == (f"split brain: {master}, {backup}",)


# -- a stale ARP entry -------------------------------------------------------------------------
@pytest.mark.disruptive
def test_a_client_that_never_hears_the_new_holder_is_named(steady, own_lab):
    """The client's ARP for the VIP is lost (a filter that drops it): after the failover it
    goes on sending to the old holder. The watch says so, and that the client is not
    served."""
    lab = steady
    master, backup = lab.topo.master_lb.name, lab.topo.best_backup_lb.name
    lost = sabotage.garp_lost()
    bound = timing.haproxy_crash(lab.topo).with_margin
    with watching(own_lab) as w:
        seen(w, "a steady lab", lambda f: f.verdict[0] == "steady", 0)
        lost.apply(lab)
        try:
            at = faults.kill(lab, master, names.HAPROXY_UNIT)
            f = seen(w, f"the VIP on {backup} and the client's ARP entry asked since",
                     lambda f: f.holders == [backup] and fresh(w, at)(f)
                     and f.polled.arp == master, bound)
            assert screen.arp_now(f).plain == (
                f"the client sends the VIP's packets to {master}, which does not hold it")
            assert f.verdict[0] == "outage", _explain(f)
            assert not any(x.startswith("api: served again") for x in texts(f))
        finally:
            lost.undo(lab)


# -- the commands ------------------------------------------------------------------------------
def _halab(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout)


@pytest.mark.disruptive
def test_halab_watch_and_graph_live_say_what_broke(steady, lab_file, tmp_path):
    """In a pipe: `watch --once` (exit 0 only when steady), `graph`, and a running
    watch that prints one line per change."""
    lab = steady
    backup = lab.topo.best_backup_lb.name
    f = str(lab_file)
    p = _halab("watch", "-f", f, "--once", "--no-graph", "--poll", str(POLL))
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.splitlines()[0] == "steady\t-"

    faults.kill(lab, backup, names.HAPROXY_UNIT)
    p = _halab("watch", "-f", f, "--once", "--poll", str(POLL))
    assert p.returncode == 1, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == f"degraded\thaproxy is not running on {backup}"
    assert f"{backup} DOWN" in p.stdout and "haproxy stopped" in p.stdout, "the graph"
    p = _halab("graph", "-f", f)
    assert p.returncode == 0, p.stderr
    for m in lab.masters:
        assert f'"{backup}" -> "{m.name}" [label="haproxy stopped", color=gray70' in p.stdout

    errors = tmp_path / "watch.stderr"
    # SIGINT as a terminal delivers it: a run started in the background by a
    # non-interactive shell (CI scripts, `cmd &`) inherits SIGINT ignored, and Python then
    # never turns it into KeyboardInterrupt (seen in the pristine root: the watch went on).
    watcher = subprocess.Popen([sys.executable, "-m", "lab", "watch", "-f", f, "--no-graph",
                                "--poll", str(POLL)], stdout=subprocess.PIPE,
                               stderr=errors.open("w"), text=True, cwd=ROOT,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(watcher.stdout or []), daemon=True)
    reader.start()
    try:
        broken = f"lab: not steady: haproxy is not running on {backup}"
        until("the watch to tell what is broken", lambda: broken in "".join(lines),
              timeout=60)
        assert lines[0].startswith(f"# halab watch: lab {lab.topo.name}"), lines
        faults.start(lab, backup, names.HAPROXY_UNIT)
        bound = timing.backend_up(lab.topo).with_margin + 60  # + the watch's asks, loaded

        def told() -> bool:
            # Status and steadiness are asked one after the other: either may tell first.
            text = "".join(lines)
            return (f"{backup}: haproxy started" in text
                    and "lab: steady" in text[text.find(broken):])

        until("the watch to tell that haproxy started and the lab is steady again", told,
              timeout=bound)
        watcher.send_signal(signal.SIGINT)  # how a person ends a watch
        watcher.wait(timeout=60)
        reader.join(timeout=10)  # the one reader of its stdout, to the end
    finally:
        if watcher.poll() is None:
            watcher.kill()  # our own child, by its PID
    out = "".join(lines)
    assert watcher.returncode == 0, errors.read_text()
    events = out.split("# now\n")[0].splitlines()
    first_broken = next(i for i, x in enumerate(events) if x.endswith(broken))
    assert any(x.endswith("lab: steady") for x in events[first_broken:]), out
    assert any(x.endswith(f"{backup}: haproxy started") for x in events), out
    assert out.split("# now\n")[1].splitlines()[0] == "steady\t-", out


# -- at a terminal: 80x24, as over SSH -----------------------------------------------------------
# A tmux server of this test's own (-L): nobody else's sessions, nor another run's (two
# suites, or two pytest-xdist workers, on one machine).
TMUX = f"halab-watch-test-{os.getpid()}"


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-L", TMUX, *args], capture_output=True, text=True,
                          check=True).stdout


def _screen() -> list[str]:
    # -J joins what tmux wrapped: a line longer than the terminal shows as longer here.
    return _tmux("capture-pane", "-p", "-J", "-t", "watch").splitlines()


@pytest.mark.disruptive
def test_status_watch_in_an_80x24_terminal(steady, lab_file):
    """`halab status --watch` in a real 80x24 terminal (tmux): HAProxy SIGKILLed on lb01,
    the screen shows lb02 holding the VIP and says so in an event line within the
    config's bound (plus one redraw); every line fits; Ctrl-C ends it cleanly (exit 0,
    the terminal back, what happened left in it)."""
    lab = steady
    master, backup = lab.topo.master_lb.name, lab.topo.best_backup_lb.name
    command = (f"{sys.executable} -m lab status --watch -f {lab_file}; echo EXIT=$?; "
               "sleep 600")
    _tmux("new-session", "-d", "-s", "watch", "-x", "80", "-y", "24", "-c", str(ROOT),
          command)
    try:
        until("the watch's screen, steady, the VIP on lb01", lambda: any(
            " STEADY " in x for x in _screen()) and any(
            x.startswith("VIP ") and x.rstrip().endswith(f"on {master}") for x in _screen()),
            timeout=60, interval=0.2)
        at = faults.kill(lab, master, names.HAPROXY_UNIT)
        bound = timing.haproxy_crash(lab.topo).with_margin + screen.REFRESH_S
        until(f"the screen to show the VIP on {backup} and say so", lambda: any(
            x.startswith("VIP ") and x.rstrip().endswith(f"on {backup}") for x in _screen())
            and any(x.rstrip().endswith(f"VIP: on {backup}") for x in _screen()),
            timeout=bound, interval=0.1)
        took = time.monotonic() - at
        shown = _screen()
        assert len(shown) <= 24 and max(len(x) for x in shown) <= 80, "\n".join(shown)
        print(f"the screen showed the VIP on {backup} {took:.2f} s after the kill "
              f"(bound {bound:.2f} s)")
        _tmux("send-keys", "-t", "watch", "C-c")
        until("the watch to end on Ctrl-C", lambda: any(x == "EXIT=0" for x in _screen()),
              timeout=30, interval=0.2)
        after = _screen()
        assert not any(" STEADY " in x or " DEGRADED " in x or " OUTAGE " in x
                       for x in after), "the screen stayed: the terminal was not restored"
        assert any(x.rstrip().endswith(f"VIP: on {backup}") for x in after), \
            "what happened stays in the terminal"
    finally:
        subprocess.run(["tmux", "-L", TMUX, "kill-server"], capture_output=True)


# -- the graph of the lab as it is now ---------------------------------------------------------
def _holder_in_svg(svg: str) -> list[str]:
    """The nodes whose box in Graphviz's SVG says it holds the VIP."""
    import re

    return [m.group(1) for m in re.finditer(
        r'<g id="node\d+" class="node">\s*<title>([^<]+)</title>(.*?)</g>', svg, re.S)
        if "holds the VIP" in m.group(2)]


@pytest.mark.disruptive
def test_the_graph_names_the_holder_before_and_after_a_failover(steady, lab_file, tmp_path):
    lab = steady
    master, backup = lab.topo.master_lb.name, lab.topo.best_backup_lb.name
    svg = tmp_path / "lab.svg"
    p = _halab("graph", "-f", str(lab_file), "--out", str(svg))
    assert p.returncode == 0, p.stderr
    assert _holder_in_svg(svg.read_text()) == [master]
    faults.kill(lab, master, names.HAPROXY_UNIT)
    observe.wait_vip(lab, [backup], timeout=timing.haproxy_crash(lab.topo).with_margin)
    p = _halab("graph", "-f", str(lab_file), "--out", str(svg))
    assert p.returncode == 0, p.stderr
    text = svg.read_text()
    assert _holder_in_svg(text) == [backup]
    assert "keepalived: MASTER" in text and "haproxy stopped" in text
