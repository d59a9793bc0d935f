"""Labs never hurt each other, and halab trusts nothing it did not make (issue 10).

One lab of its own (`ttrust`, the same addresses as every lab, in namespaces of its own),
brought up by two `halab up` at once; then what a second folder of the same name, a
changed host key and a dead HAProxy may and may not do to it. Never the session's lab."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.claim import RUN_DIR
from lab.providers.netns import netns_list
from lab.state import LabState

pytestmark = [pytest.mark.needs_lab, pytest.mark.xdist_group("trust")]  # one lab, ttrust
ROOT = Path(__file__).resolve().parents[1]
NAME = "ttrust"
PREFIX = f"halab-{NAME}-"


def _lab_file(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    f = folder / "lab.yaml"
    f.write_text((ROOT / "lab.yaml").read_text().replace("name: halab", f"name: {NAME}"))
    return f


def _halab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=180)


def _namespaces() -> dict[str, int]:
    """The lab's namespaces by name, with their inode: a namespace made again differs."""
    return {ns: os.stat(f"/run/netns/{ns}").st_ino for ns in netns_list()
            if ns.startswith(PREFIX)}


@pytest.fixture(scope="module")
def folder_a(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    a = tmp_path_factory.mktemp("a")
    lab_file = _lab_file(a)
    assert not _namespaces(), f"a lab named {NAME} already runs here: `halab clean` it first"
    # Two `halab up` of the same lab at once: one builds it, the other waits for it and
    # then finds it up. Neither may remove what the other made.
    ups = [subprocess.Popen([sys.executable, "-m", "lab", "up", "-f", str(lab_file)], cwd=a,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for _ in range(2)]
    try:
        done: dict[int, tuple[int, str]] = {}
        seen: dict[str, int] = {}
        deadline = time.monotonic() + 240
        while len(done) < 2 and time.monotonic() < deadline:
            now = _namespaces()
            if len(now) == 7 and not seen:
                seen = now  # the lab's namespaces, all made: none may be made again
            for i, p in enumerate(ups):
                if i not in done and p.poll() is not None:
                    out, err = p.communicate()
                    done[i] = (p.returncode, out + err)
            time.sleep(0.05)
        assert len(done) == 2, "both `halab up` should have ended"
        codes = sorted(rc for rc, _ in done.values())
        outputs = "\n---\n".join(o for _, o in done.values())
        assert codes == [0, 4], outputs
        loser = next(o for rc, o in done.values() if rc == 4)
        assert "busy" in loser and "waiting" in loser and "already up" in loser, loser
        assert "Traceback" not in outputs
        assert len(seen) == 7 and _namespaces() == seen, "the second up removed nothing"
        yield a, lab_file
    finally:
        for p in ups:
            if p.poll() is None:
                p.kill()  # our own child, by its PID
                p.wait()
        _halab("clean", "-f", str(lab_file), cwd=a)
    assert not _namespaces()


def test_two_concurrent_ups_one_builds_the_other_waits(folder_a):
    a, lab_file = folder_a
    owner = (RUN_DIR / f"{NAME}.owner").read_text()
    assert str(a) in owner
    p = _halab("status", "-f", str(lab_file), cwd=a)
    assert p.returncode == 0 and "lb01" in p.stdout, p.stderr


@pytest.mark.parametrize("command", ["up", "down", "clean"])
def test_a_same_named_lab_of_another_folder_is_left_alone(folder_a, tmp_path, command):
    a, lab_file = folder_a
    before = _namespaces()
    other = _lab_file(tmp_path / "b")
    p = _halab(command, "-f", str(other), cwd=other.parent)
    assert p.returncode == 4, p.stdout + p.stderr
    assert f"from another folder, {a}" in p.stderr and f"halab down -f {lab_file}" in p.stderr
    assert "Traceback" not in p.stderr and p.stderr.count("\n") == 1
    assert _namespaces() == before, f"`halab {command}` of another folder touched the lab"
    assert _halab("status", "-f", str(lab_file), cwd=a).returncode == 0


def test_a_changed_host_key_is_refused(folder_a, tmp_path):
    a, lab_file = folder_a
    state = LabState(a, NAME)
    known = state.known_hosts.read_text()
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True)
    lb01 = next(line for line in known.splitlines() if line.endswith(" lb01"))
    forged = f"{lb01.split()[0]} {' '.join(other.with_suffix('.pub').read_text().split()[:2])}"
    state.known_hosts.write_text(known.replace(lb01, forged))
    try:
        # OpenSSH with the lab's ssh_config (ProxyCommand: from the lab's client namespace)
        p = subprocess.run(["ssh", "-F", str(state.ssh_config), "-o", "BatchMode=yes",
                            "lb01", "true"], capture_output=True, text=True, timeout=30)
        assert p.returncode == 255 and "Host key verification failed" in p.stderr, p.stderr
        p = subprocess.run(["ssh", "-F", str(state.ssh_config), "-o", "BatchMode=yes",
                            "lb02", "true"], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr  # the other nodes' keys still match
        # and halab's own transport (Fabric): status says why lb01 could not be asked
        p = _halab("status", "-f", str(lab_file), cwd=a)
        assert "another host key than the one halab made" in p.stdout, p.stdout
        assert "Traceback" not in p.stdout + p.stderr
    finally:
        state.known_hosts.write_text(known)


def test_testinfra_reaches_a_node_with_its_key_checked(folder_a):
    from lab.lab import Lab

    a, lab_file = folder_a
    lab = Lab.open(lab_file)
    try:
        host = lab.node("lb02").host
        assert host.check_output("hostname") == "lb02"
        assert host.backend.client.get_host_keys().lookup("192.168.0.102") is not None
    finally:
        lab.close()


def test_status_with_haproxy_dead_is_a_status(folder_a):
    a, lab_file = folder_a
    p = _halab("fault", "kill", "lb01", "-p", "service=haproxy", "-f", str(lab_file), cwd=a)
    assert p.returncode == 0, p.stderr
    try:
        p = _halab("status", "-f", str(lab_file), cwd=a)
        assert p.returncode == 0, p.stderr
        assert "Traceback" not in p.stdout + p.stderr
        lb01 = next(line for line in p.stdout.splitlines() if line.startswith("lb01\t"))
        assert "haproxy (stopped)" in lb01, p.stdout
    finally:
        _halab("fault", "kill", "lb01", "--undo", "-p", "service=haproxy", "-f",
               str(lab_file), cwd=a)


def test_down_of_the_owner_releases_the_name(folder_a):
    a, lab_file = folder_a
    p = _halab("down", "-f", str(lab_file), cwd=a)
    assert p.returncode == 0, p.stderr
    assert not _namespaces()
    assert not (RUN_DIR / f"{NAME}.owner").exists()
