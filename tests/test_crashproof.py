"""`halab clean` after the worst interruptions: `halab up` SIGKILLed at random moments (20
of them, from the first namespace to the last daemon), and Ctrl-C (SIGINT to the process
group, as a terminal sends it) to `halab up`, `halab chaos` and a pytest run.

After each, `halab clean -f` must leave nothing of the lab: no namespace, no /run/netns
entry, no mount, no process (found by the lab's network namespaces and by its state
folder on their command lines), no link; `state.json` must parse whenever it exists; and a
new `halab up` must work. The kill moments come from a seed, printed: replay a failure with
HALAB_CRASH_SEED=<seed>.

A lab of its own (`scrash`), beside the session's; the session's lab is never touched.
Select it alone with `-m crashproof` (~3 minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.providers.netns import netns_list
from lab.providers.netns.services import pid_ns, processes_in
from lab.wait import until

# One lab name (`scrash`) for every test here: one worker runs them, one after another.
pytestmark = [pytest.mark.needs_lab, pytest.mark.crashproof, pytest.mark.xdist_group("crashproof")]
ROOT = Path(__file__).resolve().parents[1]
NAME = "scrash"
PREFIX = f"halab-{NAME}-"
KILLS = 20


@dataclass
class Crash:
    file: Path
    state_dir: Path
    up_s: float  # a whole `halab up`, measured on this machine now


def _halab(crash: Crash, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", *args, "-f", str(crash.file)],
                          cwd=crash.file.parent, capture_output=True, text=True,
                          timeout=timeout)


def _terminal() -> None:
    """In the child: SIGINT as at a terminal. A run started in the background by a
    non-interactive shell (`cmd &`, CI) inherits SIGINT ignored, and Python then never
    raises KeyboardInterrupt: the Ctrl-C would test nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _popen(argv: list[str], cwd: Path, **kw) -> subprocess.Popen[str]:
    # A session of its own: SIGINT goes to its whole process group, as a terminal's Ctrl-C
    # does, and never to this pytest.
    return subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_terminal, **kw)


def _spawn(crash: Crash, *args: str) -> subprocess.Popen[str]:
    return _popen([sys.executable, "-m", "lab", *args, "-f", str(crash.file)],
                  crash.file.parent, stderr=subprocess.PIPE)


def _net_inodes() -> dict[int, str]:
    """The lab's network namespaces as they exist now, by inode: a process may outlive the
    name (the /run/netns entry) of its namespace."""
    out = {}
    for ns in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
        if ns.startswith(PREFIX):
            try:
                out[os.stat(f"/run/netns/{ns}").st_ino] = ns
            except OSError:
                pass
    return out


def _alive(pid: str) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie holds nothing but its PID


def leftovers(crash: Crash, inodes: dict[int, str]) -> list[str]:
    """Everything of the lab still on the machine, described."""
    found = [f"namespace {ns}" for ns in netns_list() if ns.startswith(PREFIX)]
    if os.path.isdir("/run/netns"):
        found += [f"/run/netns/{e}" for e in os.listdir("/run/netns") if e.startswith(PREFIX)]
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point.startswith(str(crash.state_dir)) or point.startswith(f"/run/netns/{PREFIX}"):
            found.append(f"mount {point}")
    state = str(crash.state_dir).encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid() or not _alive(pid):
            continue
        try:
            net = os.stat(f"/proc/{pid}/ns/net").st_ino
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if net in inodes or state in cmd:
            argv = cmd.replace(b"\0", b" ").decode(errors="replace")[:80]
            found.append(f"process {pid} ({argv}) in {inodes.get(net, 'the root namespace')}")
    ports = {"lb01", "lb02", "k8s-master-01", "k8s-master-02", "k8s-master-07", "client"}
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found += [f"link {ln.split(':')[1].strip()} in the root namespace"
              for ln in links.splitlines() if ln.split(":")[1].strip().split("@")[0] in ports]
    if crash.state_dir.exists():
        found.append(f"state folder {crash.state_dir}")
    return found


def state_parses(crash: Crash) -> None:
    f = crash.state_dir / "state.json"
    try:
        text = f.read_text()
    except FileNotFoundError:
        return
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        pytest.fail(f"state.json torn after the interruption ({e}): {text[:200]!r}")


def clean_and_check(crash: Crash, what: str) -> None:
    state_parses(crash)
    inodes = _net_inodes()
    p = _halab(crash, "clean")
    assert p.returncode == 0, f"after {what}: halab clean failed: {p.stderr}"
    left = leftovers(crash, inodes)
    assert left == [], f"after {what}, halab clean left: {left}"


@pytest.fixture(scope="module")
def crash(tmp_path_factory) -> Iterator[Crash]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    d = tmp_path_factory.mktemp("crash")
    f = d / "lab.yaml"
    f.write_text((ROOT / "lab.yaml").read_text().replace("name: halab", f"name: {NAME}"))
    c = Crash(f, d / ".halab" / NAME, 0.0)
    _halab(c, "clean")
    t0 = time.monotonic()
    p = _halab(c, "up")
    c.up_s = time.monotonic() - t0
    assert p.returncode == 0, p.stderr + p.stdout
    try:
        yield c
    finally:
        _halab(c, "clean")


def _up_fully(crash: Crash) -> None:
    p = _halab(crash, "up")
    assert p.returncode == 0, f"a new `halab up` after clean failed: {p.stderr}{p.stdout}"


@pytest.fixture
def cleaned(crash) -> Iterator[Crash]:
    """Each test ends with the lab cleaned, also when it failed halfway: the next one
    starts from nothing."""
    yield crash
    _halab(crash, "clean")


def _nodes_pin_no_netns(crash: Crash) -> None:
    """A node's mount namespace is a copy of the host's: the /run/netns entries in it keep
    every lab's network namespaces (their bridges, links, addresses) alive after `halab
    clean` deleted their names, for as long as the node lives."""
    nodes = json.loads((crash.state_dir / "state.json").read_text())["nodes"]
    for node, rec in nodes.items():
        pinned = [ln.split()[4] for ln in
                  Path(f"/proc/{rec['init']}/mountinfo").read_text().splitlines()
                  if ln.split()[4].startswith("/run/netns/")]
        assert pinned == [], f"{node} holds network namespaces by mount: {pinned[:3]}"


def _interrupt(p: subprocess.Popen) -> tuple[str, float]:
    """Ctrl-C to ``p``'s process group, as a terminal sends it; its stderr and how long it
    took to end."""
    os.killpg(p.pid, signal.SIGINT)
    t = time.monotonic()
    _, stderr = p.communicate(timeout=60)
    return stderr, time.monotonic() - t


def test_sigint_chaos_then_clean(crash, cleaned):
    """Ctrl-C while a chaos scenario has HAProxy killed on lb01: the run ends, its fault
    undone (HAProxy runs again), its journal parses, and clean leaves nothing."""
    if _halab(crash, "status").returncode != 0:
        _up_fully(crash)
    _nodes_pin_no_netns(crash)
    report = crash.file.parent / "chaos-report"
    p = _spawn(crash, "chaos", "--iterations", "1", "--seed", "1", "-s", "haproxy-kill",
               "--report", str(report))
    try:
        _read_until(p, "method: kill")
        time.sleep(0.5)  # HAProxy dead, the VIP on its way to lb02
        stderr, took = _interrupt(p)
    finally:
        _kill(p)
    assert p.returncode == 130 and "Traceback" not in stderr, f"exit {p.returncode}: {stderr}"
    assert took < 10, f"Ctrl-C took {took:.1f} s to end halab chaos"
    json.loads((report / "journal.json").read_text())
    # The interrupted run undid its fault: HAProxy runs on lb01 again.
    st = _halab(crash, "status")
    lb01 = next((ln for ln in st.stdout.splitlines() if ln.startswith("lb01")), "")
    daemons = lb01.split("\t")[5] if lb01.count("\t") >= 5 else ""
    assert "haproxy" in daemons and "stopped" not in daemons, (
        f"HAProxy not back on lb01 after Ctrl-C:\n{st.stdout}")
    clean_and_check(crash, "Ctrl-C on halab chaos")


def _read_until(p: subprocess.Popen[str], text: str) -> str:
    seen = ""
    assert p.stdout is not None
    while text not in seen:
        line = p.stdout.readline()
        assert line, f"it ended before {text!r}: {seen}"
        seen += line
    return seen


def _kill(p: subprocess.Popen[str]) -> None:
    if p.poll() is None:
        p.kill()
        p.communicate()


def test_sigint_pytest_then_clean(crash, cleaned):
    """Ctrl-C to a pytest run in the middle of a failover test (HAProxy SIGKILLed on lb01)."""
    _up_fully(crash)
    test = "tests/test_failover.py::test_haproxy_crash_moves_vip_to_backup"
    init = json.loads((crash.state_dir / "state.json").read_text())["nodes"]["lb01"]["init"]
    ns = pid_ns(init)
    assert ns is not None

    def haproxy() -> bool:
        return any(Path(f"/proc/{pid}/comm").read_text().strip() == "haproxy"
                   for pid in processes_in(ns).values() if os.path.exists(f"/proc/{pid}"))

    assert haproxy()
    p = _popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                f"--lab-file={crash.file}", test], ROOT, stderr=subprocess.STDOUT)
    try:
        # The moment to interrupt: the test has killed HAProxy on lb01, the VIP is moving.
        until("the test to kill HAProxy on lb01", lambda: not haproxy() or p.poll() is not None,
              timeout=60, interval=0.02)
        assert p.poll() is None, f"pytest ended before the fault: {p.communicate()[0]}"
        time.sleep(0.5)
        os.killpg(p.pid, signal.SIGINT)
        out, _ = p.communicate(timeout=90)
    finally:
        _kill(p)
    assert p.returncode == 2 and "KeyboardInterrupt" in out, f"pytest exit {p.returncode}: {out}"
    clean_and_check(crash, "Ctrl-C on pytest")


def test_sigint_up_then_clean(crash, cleaned):
    """Ctrl-C to `halab up` halfway: it says so and ends; clean leaves nothing."""
    for delay in (crash.up_s * 0.3, crash.up_s * 0.5, crash.up_s * 0.7):
        p = _spawn(crash, "up")
        try:
            time.sleep(delay)
            stderr, took = _interrupt(p)
        finally:
            _kill(p)
        assert p.returncode == 130 and "Traceback" not in stderr, f"exit {p.returncode}: {stderr}"
        assert took < 5, f"Ctrl-C after {delay:.2f} s took {took:.1f} s to end halab up"
        clean_and_check(crash, f"Ctrl-C on halab up after {delay:.2f} s")


def test_sigkill_up_at_random_moments_then_clean(crash, cleaned):
    """`halab up` SIGKILLed 20 times, anywhere between its start and the lab steady."""
    seed = int(os.environ.get("HALAB_CRASH_SEED") or random.SystemRandom().randrange(10**6))
    rng = random.Random(seed)
    delays = sorted(rng.uniform(0, crash.up_s) for _ in range(KILLS))
    print(f"crash seed {seed} (replay: HALAB_CRASH_SEED={seed}); up takes {crash.up_s:.2f} s; "
          f"kills at {', '.join(f'{d:.2f}' for d in delays)} s")
    for i, delay in enumerate(rng.sample(delays, len(delays)), 1):
        what = f"SIGKILL {i}/{KILLS} at {delay:.2f} s (seed {seed})"
        p = _spawn(crash, "up")
        try:
            time.sleep(delay)
            # An `up` that already ended must have succeeded: the lab after the last clean
            # can be brought up again.
            exited = p.poll()
            p.kill()
            _, stderr = p.communicate(timeout=30)
        finally:
            _kill(p)
        assert exited in (None, 0), f"{what}: `halab up` failed before the kill: {stderr}"
        clean_and_check(crash, what)
    _up_fully(crash)
    clean_and_check(crash, "the last up")
