"""A lab: its topology, the provider that realises it, and its nodes.

``Lab`` is what the CLI, the pytest plugin and the chaos runner hold. It brings a lab up
(provider, then provisioning) and hands out Nodes and the client-side Prober.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

from lab import inputs, topology
from lab.claim import Claim
from lab.errors import HalabError, LabFileError, LabStateError, PrerequisiteError
from lab.node import Node
from lab.probes import Prober
from lab.providers.base import Provider
from lab.state import LabState
from lab.system import require_root
from lab.timings import span
from lab.topology import Role, Topology

PROVIDERS = ("netns", "vagrant", "hosts")
# The checkout (or installed package) halab runs from: the nodes run scripts from it.
CHECKOUT = Path(__file__).resolve().parents[1]


def provider_class(name: str) -> type[Provider]:
    if name == "netns":
        from lab.providers.netns import NetnsProvider

        return NetnsProvider
    if name == "vagrant":
        from lab.providers.vagrant import VagrantProvider

        return VagrantProvider
    if name in PROVIDERS:
        raise HalabError(f"the {name} provider is not available in this version of halab; "
                         "use `--provider netns` (the embedded lab)")
    raise HalabError(f"unknown provider '{name}'; choose one of {', '.join(PROVIDERS)}")


def _stderr(msg: str) -> None:
    # A command that waits must say why, or it looks hung (in pytest, in a script).
    sys.stderr.write(f"halab: {msg}\n")
    sys.stderr.flush()


def clean_prefix(prefix: str) -> list[str]:
    """What every provider finds of labs named with ``prefix``, removed without state."""
    removed = []
    for name in ("netns", "vagrant"):
        removed += provider_class(name).clean(prefix)
    return removed


class Lab:
    def __init__(self, topo: Topology, root: Path, provider: str | None = None,
                 lab_file: Path | None = None) -> None:
        self.topo = topo
        self.state = LabState(root, topo.name)
        # Which folder owns the lab's name on this machine, and the lock of its commands.
        self.claim = Claim(self.state, lab_file)
        recorded = self.state.read().get("provider")
        name = provider or recorded or topo.provider
        if recorded and provider and recorded != provider and self.state.read().get(
                "phase") == "up":
            raise LabStateError(f"lab '{topo.name}' is up with the {recorded} provider, not "
                                f"{provider}; `halab down` first, or drop --provider")
        self.provider: Provider = provider_class(name)(topo, self.state)
        self._nodes: dict[str, Node] = {}

    @classmethod
    def open(cls, lab_file: str | Path = topology.DEFAULT_LAB_FILE,
             provider: str | None = None) -> Lab:
        path = Path(lab_file)
        topo = topology.load(path)
        inputs.check_folder(path.resolve().parent, "the lab file's folder", LabFileError)
        inputs.check_folder(CHECKOUT, "halab's own folder", PrerequisiteError)
        return cls(topo, path.resolve().parent, provider, path)

    # -- lifecycle ---------------------------------------------------------------------------
    def up(self, progress: Callable[[str], None] | None = None) -> None:
        # Waiting for another command's lock is said even by a caller that wants no progress
        # (the pytest plugin): otherwise it looks hung.
        note = progress or _stderr
        progress = progress or (lambda _: None)
        # Root and every command of the provider's lab, from the registry (lab/packages.py,
        # the nodes' daemons included): before anything is built.
        with span("prerequisites: root, every command of the provider"):
            self.provider.check()
        with self.claim.lock("up", note):
            self.claim.refuse_if_elsewhere("bring up")
            # Before anything is built: a crash from here on leaves a lab this folder owns.
            self.claim.take(self.provider.name)
            with span(f"{self.provider.name}: the nodes up, sshd answering"):
                self.provider.up(progress)
            try:
                with span("provisioning: every node's files and daemons"):
                    self.provision(progress)
            except BaseException:
                self.close()
                self.provider.down()
                raise

    def provision(self, progress: Callable[[str], None] = lambda _: None) -> list:
        import provision

        return provision.provision(self.topo, self.state, self.nodes.values(), progress)

    def down(self, notice: Callable[[str], None] = _stderr) -> None:
        require_root(f"taking lab '{self.topo.name}' down")
        with self.claim.lock("down", notice):
            self.claim.refuse_if_elsewhere("take down")
            self.close()
            self.provider.down()
            self.claim.release()

    def clean(self, notice: Callable[[str], None] = _stderr) -> list[str]:
        """Everything of the lab, found by its prefix (also after a crash), and its state
        folder; what was removed."""
        require_root("halab clean")
        with self.claim.lock("clean", notice):
            self.claim.refuse_if_elsewhere("clean")
            self.close()
            removed = clean_prefix(self.topo.prefix)
            if self.state.dir.exists():
                removed.append(str(self.state.dir))
                self.state.remove()
            self.claim.release()
        return removed

    def is_up(self) -> bool:
        return self.provider.is_up()

    def require_up(self) -> None:
        if not self.is_up():
            raise LabStateError(f"lab '{self.topo.name}' is not up; run `halab up` "
                                "(or `make lab-up`) first")

    # -- nodes -------------------------------------------------------------------------------
    def node(self, name: str) -> Node:
        if name not in self._nodes:
            try:
                self.topo.node(name)
            except KeyError:
                raise HalabError(f"no node '{name}' in lab '{self.topo.name}'; nodes: "
                                 + ", ".join(n.name for n in self.topo.nodes)) from None
            self._nodes[name] = self.provider.node(name)
        return self._nodes[name]

    @property
    def nodes(self) -> dict[str, Node]:
        return {n.name: self.node(n.name) for n in self.topo.nodes}

    def with_role(self, role: Role) -> list[Node]:
        return [self.node(n.name) for n in self.topo.nodes_with(role)]

    @property
    def load_balancers(self) -> list[Node]:
        return self.with_role(Role.LOADBALANCER)

    @property
    def masters(self) -> list[Node]:
        return self.with_role(Role.CONTROL_PLANE)

    @property
    def client(self) -> Node:
        return self.node(self.topo.client.name)

    @property
    def vip(self) -> str:
        return str(self.topo.vip)

    @cached_property
    def prober(self) -> Prober:
        return Prober(self.provider.client_netns(), self.vip, self.state.pki / "ca.crt")

    def close(self) -> None:
        for n in self._nodes.values():
            n.close()
        self._nodes.clear()
