"""The host machine: running its tools, and checking that the lab can be built here."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence

from lab import packages
from lab.errors import CommandError, PrerequisiteError


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise PrerequisiteError(
            f"{what} needs root: it creates network namespaces and starts daemons inside "
            "them. Run it with sudo (e.g. `sudo .venv/bin/halab up`), or as root."
        )


# What installs a provider's packages, for the error messages.
SETUP_TARGET = {"netns": "make setup", "vagrant": "make setup-vagrant"}


def missing_message(provider: str, missing: Sequence[packages.Need]) -> str:
    """One paragraph: which commands are missing, their packages, and the command to run."""
    pkgs = list(dict.fromkeys(n.package for n in missing))
    cmds = ", ".join(f"{n.name} ({n.package})" for n in missing)
    return (f"this machine lacks what the {provider} lab runs: {cmds}. Install "
            f"{'it' if len(pkgs) == 1 else 'them'} with `apt-get install "
            f"{' '.join(pkgs)}` (or `{SETUP_TARGET.get(provider, 'make setup')}`, which "
            "installs everything halab needs from its registry, lab/packages.py), then run "
            "the command again; `halab doctor` checks it all.")


def require_tools(provider: str, which: packages.Which = shutil.which) -> None:
    """Every command the provider's lab runs, from the registry; all missing named at once."""
    missing = packages.missing([provider], which)
    if missing:
        raise PrerequisiteError(missing_message(provider, missing))


def sh(argv: Sequence[str], check: bool = True, input: str | None = None,
       timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a host command; a failure names the command and what it printed."""
    p = subprocess.run(list(argv), capture_output=True, text=True, input=input,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise CommandError("this host", shlex.join(argv), p.returncode, p.stdout, p.stderr)
    return p


def sysctl_path(name: str) -> str:
    return "/proc/sys/" + name.replace(".", "/")


def raise_sysctls(wanted: dict[str, int]) -> list[tuple[str, int, int]]:
    """Raise each of the machine's integer sysctls to at least the value wanted (never
    lower one: a machine set higher keeps its own); return (name, old, new) of those
    raised. Not persistent: the caller sets them again each time it needs them."""
    raised = []
    for name, value in wanted.items():
        path = sysctl_path(name)
        try:
            with open(path) as f:
                old = int(f.read().split()[0])
            if old >= value:
                continue
            with open(path, "w") as f:
                f.write(str(value))
        except OSError as e:
            raise PrerequisiteError(
                f"cannot set the kernel setting {name} to {value} ({e.strerror}); set it by "
                f"hand (`sysctl -w {name}={value}`) and run the command again") from None
        raised.append((name, old, value))
    return raised


def mem_available_kb() -> int:
    """What the kernel says it could give to new work without swapping."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    raise PrerequisiteError("this kernel's /proc/meminfo has no MemAvailable (Linux < 3.14)")
