"""`halab doctor` and `halab up`'s check: what is missing, with its package, and exit 3.

The machine is faked: ``which`` says which commands exist, ``run`` answers the kernel
probes, ``euid`` says whether we are root. No root, no namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from lab import doctor, packages
from lab.errors import PrerequisiteError
from lab.system import require_tools

ROOT = Path(__file__).resolve().parents[2]


def which_without(*gone: str):
    def which(cmd: str) -> str | None:
        return None if cmd in gone else f"/usr/bin/{cmd}"
    return which


class FakeKernel:
    """Answers the doctor's probes and records them; ``fail`` maps a word of the argv to
    the (exit code, message) it gets."""

    def __init__(self, fail: dict[str, tuple[int, str]] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail or {}

    def __call__(self, argv: Sequence[str], stdin: str = "") -> tuple[int, str]:
        self.calls.append(list(argv))
        for word, answer in self.fail.items():
            if word in argv:
                return answer
        return 0, ""


def everything_present(monkeypatch) -> None:
    # The registry's path-needs (sshd, Python.h, ...) are files: present on this fake machine.
    monkeypatch.setattr(packages.glob, "glob", lambda pattern: [pattern])


def test_a_ready_machine_passes_with_netem_as_a_warning(monkeypatch):
    everything_present(monkeypatch)
    kernel = FakeKernel({"netem": (2, "Error: Specified qdisc kind is unknown.")})
    r = doctor.diagnose("netns", which=which_without(), run=kernel, euid=lambda: 0)
    assert r.ok and r.missing_packages == []
    by = {c.name: c for c in r.checks}
    assert by["tc netem"].status == "warning" and "sch_netem" in by["tc netem"].detail
    assert by["nftables"].status == "ok" and by["network namespaces"].status == "ok"
    text = r.render()
    assert "can run the netns lab (1 warning above)" in text
    assert "MISSING" not in text


def test_a_missing_package_is_named_with_its_apt_get_command(monkeypatch):
    everything_present(monkeypatch)
    r = doctor.diagnose("netns", which=which_without("nft", "ping"), run=FakeKernel(),
                        euid=lambda: 0)
    assert not r.ok
    assert r.missing_packages == ["nftables", "iputils-ping"]
    text = r.render()
    assert "MISSING  nft" in text and "nftables" in text
    assert "apt-get install nftables iputils-ping" in text and "make setup" in text
    # nft is not there: its kernel probe is skipped, not failed.
    assert {c.name: c.status for c in r.checks}["nftables"] == "skipped"
    data = json.loads(r.to_json())
    assert data["ok"] is False and data["install"] == "apt-get install nftables iputils-ping"
    assert {"name": "nft", "status": "missing", "package": "nftables"}.items() <= \
        next(c for c in data["checks"] if c["name"] == "nft").items()


def test_vagrant_names_dnsmasq_and_its_own_setup_target(monkeypatch):
    everything_present(monkeypatch)
    monkeypatch.setattr(doctor, "_vagrant_extras", lambda: [])
    r = doctor.diagnose("vagrant", which=which_without("dnsmasq"), run=FakeKernel(),
                        euid=lambda: 0)
    assert r.missing_packages == ["dnsmasq-base"]
    assert "make setup-vagrant" in r.advice()
    assert all(c.name != "nftables" for c in r.checks)  # the VM host needs no nft


def test_not_root_fails_and_skips_the_kernel():
    kernel = FakeKernel()
    r = doctor.diagnose("netns", which=which_without(), run=kernel, euid=lambda: 1000)
    assert not r.ok
    assert {c.name: c.status for c in r.checks}["root"] == "failed"
    assert kernel.calls == []  # nothing probed without root
    assert "needs root" in r.render()


def test_nftables_the_kernel_refuses_is_a_failure(monkeypatch):
    everything_present(monkeypatch)
    kernel = FakeKernel({"nft": (1, "Error: Could not process rule: Operation not supported")})
    r = doctor.diagnose("netns", which=which_without(), run=kernel, euid=lambda: 0)
    assert not r.ok and r.missing_packages == []
    assert "Operation not supported" in r.advice()


def test_the_scratch_namespace_is_ours_and_removed(monkeypatch):
    everything_present(monkeypatch)
    kernel = FakeKernel()
    doctor.diagnose("netns", which=which_without(), run=kernel, euid=lambda: 0)
    adds = [c for c in kernel.calls if c[:3] == ["ip", "netns", "add"]]
    dels = [c for c in kernel.calls if c[:3] == ["ip", "netns", "del"]]
    assert len(adds) == 1 and adds[0][3].startswith("halab-doctor-")
    assert dels == [["ip", "netns", "del", adds[0][3]]]
    assert kernel.calls[-1] == dels[0]  # removed last, after every probe in it


def test_the_scratch_namespace_is_removed_when_a_probe_raises(monkeypatch):
    everything_present(monkeypatch)
    calls: list[list[str]] = []

    def run(argv: Sequence[str], stdin: str = "") -> tuple[int, str]:
        calls.append(list(argv))
        if "nft" in argv:
            raise RuntimeError("boom")
        return 0, ""

    with pytest.raises(RuntimeError):
        doctor.diagnose("netns", which=which_without(), run=run, euid=lambda: 0)
    assert calls[-1][:3] == ["ip", "netns", "del"]


def test_require_tools_is_the_registry_and_exits_3():
    with pytest.raises(PrerequisiteError) as e:
        require_tools("netns", which=which_without("nft", "tini"))
    msg = str(e.value)
    assert e.value.exit_code == 3
    assert "nft (nftables)" in msg and "tini (tini)" in msg
    assert "apt-get install tini nftables" in msg and "make setup" in msg and "\n" not in msg
    with pytest.raises(PrerequisiteError, match="make setup-vagrant"):
        require_tools("vagrant", which=which_without("dnsmasq"))


def _halab(*args: str, cwd: Path, path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path}
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True,
                          text=True, cwd=cwd, env={**env, "PYTHONPATH": str(ROOT)})


def test_doctor_cli_exits_3_and_names_packages_on_a_bare_path(tmp_path):
    p = _halab("doctor", cwd=tmp_path, path=str(tmp_path))
    assert p.returncode == 3, p.stdout + p.stderr
    assert "apt-get install" in p.stdout and "nftables" in p.stdout
    assert "Traceback" not in p.stdout + p.stderr
    data = json.loads(_halab("doctor", "--json", cwd=tmp_path, path=str(tmp_path)).stdout)
    assert data["ok"] is False and "iproute2" in data["missing_packages"]


def test_doctor_cli_refuses_an_unknown_provider(tmp_path):
    p = _halab("doctor", "--provider", "hosts", cwd=tmp_path, path=str(tmp_path))
    assert p.returncode == 2 and "netns, vagrant" in p.stderr


def test_up_refuses_before_building_anything(tmp_path, default_text):
    (tmp_path / "lab.yaml").write_text(default_text.replace("name: halab", "name: nopkg"))
    p = _halab("up", cwd=tmp_path, path=str(tmp_path))
    assert p.returncode == 3, p.stdout + p.stderr
    out = p.stdout + p.stderr
    assert "Traceback" not in out
    assert ("apt-get install" in p.stderr and "nftables" in p.stderr) or "needs root" in out
    assert not (tmp_path / ".halab").exists()  # nothing half built
