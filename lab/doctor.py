"""`halab doctor`: can this machine run a lab of this provider? Say what is missing and how
to get it, before anything is built.

The commands come from the registry (lab/packages.py), exactly those `halab up` refuses to
start without (the providers' check()). On top of them, what no package list can promise:
root, and what the kernel must do: network namespaces, nftables inside one, tc netem (only
a warning: the delay and jitter faults are skipped without it, and packet loss falls back
to nftables), and, for the VM lab, whether KVM is usable (informational: without it VMs run
under software emulation, slowly).

The kernel is probed in a scratch namespace, `halab-doctor-<pid>`, deleted afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Literal

from lab import packages
from lab.system import SETUP_TARGET, missing_message

Status = Literal["ok", "missing", "failed", "warning", "info", "skipped"]
# A check that ends in one of these makes the machine unfit: exit 3.
FATAL: frozenset[str] = frozenset({"missing", "failed"})
SCRATCH_PREFIX = "halab-doctor-"

# A command on the host: (argv, its stdin) -> (exit code, output). Unit tests pass a fake.
Runner = Callable[[Sequence[str], str], tuple[int, str]]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str = ""
    package: str | None = None
    command: str | None = None  # the registry's command (a name or a path), for commands


@dataclass
class Report:
    provider: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.status in FATAL for c in self.checks)

    @property
    def missing_packages(self) -> list[str]:
        return list(dict.fromkeys(c.package for c in self.checks
                                  if c.status == "missing" and c.package))

    def advice(self) -> str:
        """The paragraph that ends the report: what to install, or that all is well."""
        gone = {c.command for c in self.checks if c.status == "missing"}
        missing = [n for n in packages.needs(self.provider) if n.command in gone]
        parts = []
        if missing:
            parts.append(missing_message(self.provider, missing))
        parts += [f"{c.name}: {c.detail}" for c in self.checks
                  if c.status == "failed" and c.package is None]
        if not parts:
            warned = sum(c.status == "warning" for c in self.checks)
            return (f"this machine can run the {self.provider} lab"
                    + (f" ({warned} warning{'s' if warned > 1 else ''} above)." if warned
                       else "."))
        return "\n".join(parts)

    def to_json(self) -> str:
        return json.dumps({
            "provider": self.provider, "ok": self.ok,
            "missing_packages": self.missing_packages,
            "install": (f"apt-get install {' '.join(self.missing_packages)}"
                        if self.missing_packages else None),
            "setup": SETUP_TARGET.get(self.provider),
            "checks": [asdict(c) for c in self.checks],
        }, indent=2)

    def render(self) -> str:
        name_w = max((len(c.name) for c in self.checks), default=0)
        pkg_w = max((len(c.package or "") for c in self.checks), default=0)
        lines = [f"halab doctor: the {self.provider} lab on this machine"]
        for c in self.checks:
            status = c.status.upper() if c.status in FATAL else c.status
            lines.append(f"  {status:8} {c.name:{name_w}}  {c.package or '':{pkg_w}}  "
                         f"{c.detail}".rstrip())
        lines.append(self.advice())
        return "\n".join(lines)


def _run(argv: Sequence[str], stdin: str = "") -> tuple[int, str]:
    try:
        p = subprocess.run(list(argv), capture_output=True, text=True, timeout=30,
                           input=stdin)
    except (OSError, subprocess.TimeoutExpired) as e:
        return 127, str(e)
    return p.returncode, (p.stderr or p.stdout).strip()


def _commands(provider: str, which: packages.Which) -> list[Check]:
    return [Check(n.name, "ok" if packages.present(n, which) else "missing", n.why,
                  n.package, n.command) for n in packages.needs(provider)]


@contextmanager
def scratch_netns(run: Runner) -> Iterator[tuple[str | None, str]]:
    """A network namespace of our own for probing the kernel: (name or None, error)."""
    name = f"{SCRATCH_PREFIX}{os.getpid()}"
    rc, out = run(["ip", "netns", "add", name], "")
    try:
        yield (name, "") if rc == 0 else (None, out)
    finally:
        if rc == 0:
            run(["ip", "netns", "del", name], "")


# Everything the faults ask of nftables: a table, base chains on the input and output
# hooks, address matches, and the random drop of the packet-loss fault.
NFT_PROBE = """table inet halab-doctor {
  chain in { type filter hook input priority -10; ip saddr 192.0.2.1 drop; }
  chain out { type filter hook output priority -5; tcp sport 22 accept;
              oifname "lo" numgen random mod 10000 < 1 drop; }
}
"""


def _kernel(provider: str, run: Runner, have: Callable[[str], bool]) -> list[Check]:
    checks: list[Check] = []
    if not have("ip"):
        return [Check("network namespaces", "skipped", "needs `ip` (iproute2)")]
    with scratch_netns(run) as (ns, err):
        if ns is None:
            return [Check("network namespaces", "failed",
                          f"`ip netns add` failed: {err or 'no reason given'}")]
        checks.append(Check("network namespaces", "ok", "`ip netns add` works"))
        if provider != "netns":
            return checks
        if have("nft"):
            rc, out = run(["ip", "netns", "exec", ns, "nft", "-f", "-"], NFT_PROBE)
            checks.append(Check("nftables", "ok" if rc == 0 else "failed",
                                "tables, hooks and random drops work in a namespace"
                                if rc == 0 else
                                f"the kernel refuses the faults' rules: {out}; the partition "
                                "and packet-loss faults cannot work here"))
        else:
            checks.append(Check("nftables", "skipped", "needs `nft` (nftables)"))
        if have("tc"):
            rc, out = run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo",
                           "root", "netem", "delay", "1ms"], "")
            checks.append(Check("tc netem", "ok" if rc == 0 else "warning",
                                "the kernel has the netem qdisc" if rc == 0 else
                                f"the kernel has no netem qdisc (sch_netem: {out}): the delay "
                                "and jitter faults are skipped, packet loss uses nftables"))
        else:
            checks.append(Check("tc netem", "skipped", "needs `tc` (iproute2)"))
    return checks


def _vagrant_extras() -> list[Check]:
    from lab.providers.vagrant.spec import detect_driver

    driver, why = detect_driver()
    checks = [Check("kvm", "info", f"libvirt driver {driver}: {why}")]
    for module, what in (("libvirt", "libvirt-python"), ("vagrant", "python-vagrant")):
        try:
            __import__(module)
            checks.append(Check(f"python: {module}", "ok", f"{what} in this virtualenv"))
        except ImportError:
            checks.append(Check(f"python: {module}", "failed",
                                f"{what} is not installed in this virtualenv; "
                                "`make setup-vagrant` installs it"))
    return checks


def diagnose(provider: str, which: packages.Which = shutil.which, run: Runner = _run,
             euid: Callable[[], int] = os.geteuid) -> Report:
    """Everything `halab doctor` checks, as data; ``which``, ``run`` and ``euid`` are the
    machine (unit tests pass fakes)."""
    if provider not in packages.PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}")
    report = Report(provider)
    root = euid() == 0
    report.checks.append(Check("root", "ok" if root else "failed",
                               "the lab creates namespaces and starts daemons" if root else
                               "halab needs root: run it with sudo, or as root"))
    commands = _commands(provider, which)
    report.checks += commands
    present = {c.command for c in commands if c.status == "ok"}

    def have(cmd: str) -> bool:
        return cmd in present

    if root:
        report.checks += _kernel(provider, run, have)
    else:
        report.checks.append(Check("kernel", "skipped", "namespaces and nftables are probed "
                                   "as root only"))
    if provider == "vagrant":
        report.checks += _vagrant_extras()
    return report
