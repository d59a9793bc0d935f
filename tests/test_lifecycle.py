"""A lab's life: up, down, and clean after the worst kind of interruption.

These bring up labs of their own (other names, the same addresses: every lab lives in
namespaces of its own) beside the session's lab, and never touch it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.providers.netns import netns_list, netns_pids
from lab.wait import until

pytestmark = [pytest.mark.needs_lab]
ROOT = Path(__file__).resolve().parents[1]


def _lab_file(tmp_path: Path, name: str) -> Path:
    text = (ROOT / "lab.yaml").read_text().replace("name: halab", f"name: {name}")
    f = tmp_path / "lab.yaml"
    f.write_text(text)
    return f


def _halab(*args: str, cwd: Path, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, **kw)


def _ours(prefix: str) -> list[str]:
    return [ns for ns in netns_list() if ns.startswith(prefix)]


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def require_root():
    if os.geteuid() != 0:
        pytest.skip("needs root")


def test_clean_after_up_is_sigkilled_halfway(tmp_path, require_root):
    lab_file = _lab_file(tmp_path, "killed")
    prefix = "halab-killed-"
    up = subprocess.Popen([sys.executable, "-m", "lab", "up", "-f", str(lab_file)],
                          cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Kill it once daemons run inside the lab: namespaces, PID 1s and sshd exist.
        until("the interrupted lab to have processes",
              lambda: any(netns_pids(ns) for ns in _ours(prefix)), timeout=30, interval=0.01)
        time.sleep(0.3)
    finally:
        up.send_signal(signal.SIGKILL)
        up.wait()
    pids = {p for ns in _ours(prefix) for p in netns_pids(ns)}
    assert pids, "the test should interrupt a lab that has started processes"
    p = _halab("clean", "-f", str(lab_file), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert _ours(prefix) == []
    # Dead processes whose parent (here the killed `up`) is gone wait as zombies for the
    # host's init to reap them: they hold nothing but a PID.
    assert [pid for pid in pids if _running(pid)] == []
    assert not (tmp_path / ".halab" / "killed").exists()


def test_up_then_down_leaves_nothing_running(tmp_path, require_root):
    lab_file = _lab_file(tmp_path, "updown")
    p = _halab("up", "-f", str(lab_file), cwd=tmp_path)
    assert p.returncode == 0, p.stderr + p.stdout
    assert len(_ours("halab-updown-")) == 7  # six nodes and the switch
    p = _halab("exec", "-f", str(lab_file), "client", "--", "sh", "-c", "ip route; exit 3",
               cwd=tmp_path)
    assert p.returncode == 3, "exec passes the exit code through"
    assert "default" not in p.stdout, "no lab namespace has a default route"
    p = _halab("up", "-f", str(lab_file), cwd=tmp_path)
    assert p.returncode == 4 and "already up" in p.stderr
    p = _halab("down", "-f", str(lab_file), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert _ours("halab-updown-") == []
    _halab("clean", "-f", str(lab_file), cwd=tmp_path)
