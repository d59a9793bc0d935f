"""What every provider does: make the lab's machines, break them, and hand back Nodes.

A provider knows namespaces or VMs or SSH hosts, and nothing about HAProxy.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import ClassVar

from lab.node import Node
from lab.state import LabState
from lab.topology import Topology

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class Provider(abc.ABC):
    name: ClassVar[str]
    # How long the lab may take to get back to steady state after a fault is undone: the
    # slowest undo is booting a crashed node.
    settle_s: ClassVar[float] = 30.0
    # Exchanges in flight that a preempting return may cut when the wire cannot be heard
    # (with the wire, measure.handover_gap says exactly which probes were in flight when
    # the VIP changed hands): a connection made through the old holder dies when its next
    # packets reach the new holder, which knows nothing of it (no connection sync between
    # the LBs). The prober has one request in flight at a time, so it loses at most one.
    preempt_cuts: ClassVar[int] = 1

    def __init__(self, topo: Topology, state: LabState) -> None:
        self.topo = topo
        self.state = state

    # -- lifecycle ---------------------------------------------------------------------------
    @abc.abstractmethod
    def check(self) -> None:
        """Raise PrerequisiteError when this machine cannot run the lab (before touching it)."""

    @abc.abstractmethod
    def up(self, progress: Progress = _quiet) -> None:
        """Create and boot every node until SSH answers; on failure leave nothing behind."""

    @abc.abstractmethod
    def down(self) -> None:
        """Remove everything this lab created."""

    @abc.abstractmethod
    def is_up(self) -> bool: ...

    @classmethod
    @abc.abstractmethod
    def clean(cls, prefix: str) -> list[str]:
        """Remove every object whose name starts with ``prefix``, with no state to go by;
        return what was removed."""

    # -- nodes -------------------------------------------------------------------------------
    @abc.abstractmethod
    def node(self, name: str) -> Node: ...

    @abc.abstractmethod
    def exec(self, name: str, argv: Sequence[str], interactive: bool = False) -> int:
        """Run ``argv`` on a node, attached to this terminal; return its exit code."""

    @abc.abstractmethod
    def client_netns(self) -> str | None:
        """The network namespace where probes and SSH start (None: this host's own)."""

    def wire(self) -> tuple[str | None, str]:
        """Where the lab's LAN can be listened to: (network namespace, None for this
        host's own; the interface every node's frames cross, e.g. the lab's bridge)."""
        raise NotImplementedError(f"the {self.name} provider cannot show the lab's wire")

    # -- faults: what only the machine layer can do ---------------------------------------
    @abc.abstractmethod
    def link_down(self, name: str) -> None:
        """Pull the node's lab cable: its processes go on, its packets go nowhere."""

    @abc.abstractmethod
    def link_up(self, name: str) -> None: ...

    @abc.abstractmethod
    def crash(self, name: str) -> None:
        """Power cut: link down and every process of the node gone at once."""

    @abc.abstractmethod
    def boot(self, name: str) -> None:
        """Bring a crashed node back (its disk as it was) with its enabled daemons."""

    @abc.abstractmethod
    def freeze(self, name: str) -> None: ...

    @abc.abstractmethod
    def thaw(self, name: str) -> None: ...

    @abc.abstractmethod
    def node_state(self, name: str) -> str:
        """'running', 'frozen', 'crashed', 'link-down' or 'absent'."""
