"""Daemons on a node, behind one interface for every provider.

A ``Unit`` says what a daemon is (the foreground command line, the runtime folders it
needs), much as a systemd unit file does. Provisioning installs units; faults and tests
start, stop and signal them by name. Each provider brings its ``ServiceManager``: the
embedded lab runs the command inside the node's namespaces, a VM hands it to systemd.
No manager restarts a daemon on its own: a daemon a test kills stays dead until the test
(or its clean-up) brings it back.
"""

from __future__ import annotations

import json
import shlex
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Unit:
    name: str
    argv: tuple[str, ...]
    description: str = ""
    # Folders under /run the daemon expects (systemd's RuntimeDirectory=).
    runtime_dirs: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "argv": list(self.argv),
                           "description": self.description,
                           "runtime_dirs": list(self.runtime_dirs)}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Unit:
        d = json.loads(text)
        return cls(d["name"], tuple(d["argv"]), d.get("description", ""),
                   tuple(d.get("runtime_dirs", ())))

    def to_systemd(self) -> str:
        """The same unit for a node that runs systemd."""
        dirs = " ".join(d.removeprefix("/run/") for d in self.runtime_dirs)
        return (
            "[Unit]\n"
            f"Description={self.description or self.name} (halab)\n"
            # Not before the lab NIC has its address: keepalived binds its unicast source
            # once at start and never retries (seen after a VM's power cut).
            "Wants=network-online.target\nAfter=network-online.target\n\n"
            "[Service]\n"
            f"ExecStart={shlex.join(self.argv)}\n"
            + (f"RuntimeDirectory={dirs}\nRuntimeDirectoryPreserve=yes\n" if dirs else "")
            # No Restart=: a daemon a test kills must stay dead until the test revives it.
            + "Restart=no\n\n"
            "[Install]\n"
            "WantedBy=multi-user.target\n"
        )


@dataclass(frozen=True)
class ServiceState:
    name: str
    active: bool
    pid: int | None = None  # as the node sees it

    def __str__(self) -> str:
        return f"{self.name}: {'running' if self.active else 'stopped'}" + (
            f" (pid {self.pid})" if self.pid else "")


class ServiceManager(Protocol):
    """What every provider offers for daemons on one node."""

    def install(self, unit: Unit) -> bool:
        """Record the unit on the node and enable it at boot; True when it changed."""
        ...

    def install_many(self, units: Sequence[Unit]) -> list[str]:
        """``install`` for every unit of a node at once; the names of those that changed."""
        ...

    def installed(self) -> list[str]: ...

    def uninstall(self, name: str) -> None:
        """Stop the unit and remove it: what a node's roles no longer run."""
        ...

    def start(self, name: str) -> float | None:
        """Start the daemon; where the node's clock tells when it started better than the
        harness's (an SSH round trip away), that moment on this host's monotonic clock."""

    def stop(self, name: str, timeout: float = 10.0) -> None: ...

    def restart(self, name: str) -> None: ...

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> float:
        """Send a signal to the daemon's main process and nothing else; return when it
        went out, on this host's monotonic clock (the node's own moment, mapped)."""
        ...

    def status(self, name: str) -> ServiceState: ...

    def log_mark(self) -> object:
        """Where the daemons' logs stand now; ``logs_since`` shows what came after it."""
        ...

    def logs_since(self, mark: object, lines: int = 15) -> dict[str, str]:
        """Each daemon's log written after ``mark`` (its last ``lines``), by unit: this
        node's, this run's, never another lab's or an earlier run's."""
        ...
