"""A node of a running lab: its name and address, commands over its transport, its daemons.

Every provider hands back the same ``Node``; nothing above this layer knows whether the
node is a set of namespaces, a VM or a real machine.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from lab.services import ServiceManager
from lab.topology import Node as NodeSpec
from lab.topology import Role
from lab.transport import Result, Transport, put_files, quote_command

if TYPE_CHECKING:
    import testinfra.host


class Node:
    def __init__(self, spec: NodeSpec, transport: Transport, services: ServiceManager | None,
                 ssh_config: Path | None) -> None:
        self.spec = spec
        self.transport = transport
        self._services = services
        self._ssh_config = ssh_config

    def __repr__(self) -> str:
        return f"<Node {self.name} {self.address}>"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def address(self) -> str:
        return str(self.spec.address)

    @property
    def roles(self) -> list[Role]:
        return list(self.spec.roles)

    def has(self, role: Role) -> bool:
        return role in self.spec.roles

    @property
    def managed(self) -> bool:
        """Does this node run daemons halab manages (every node but the client)?"""
        return self._services is not None

    @property
    def services(self) -> ServiceManager:
        if self._services is None:
            raise NotImplementedError(f"{self.name} runs no managed daemons")
        return self._services

    # -- commands: run() never raises on exit codes, check_output() does ---------------------
    def run(self, command: str, *args: object, timeout: float | None = 60) -> Result:
        return self.transport.run(quote_command(command, *args), timeout=timeout)

    def run_expect(self, codes: Iterable[int], command: str, *args: object) -> Result:
        __tracebackhide__ = True
        return self.run(command, *args).expect(self.name, codes)

    def check_output(self, command: str, *args: object) -> str:
        __tracebackhide__ = True
        return self.run_expect([0], command, *args).stdout.rstrip("\n")

    # -- files --------------------------------------------------------------------------------
    def put(self, path: str, data: str | bytes, mode: int = 0o644) -> bool:
        """Write a file if its content or mode differs; True when something changed."""
        return bool(self.put_many([(path, data, mode)]))

    def put_many(self, files: Iterable[tuple[str, str | bytes, int]]) -> list[str]:
        """Write the files whose content or mode differ; one round trip to compare them all.
        Returns the paths written."""
        wanted = [(p, d.encode() if isinstance(d, str) else d, m) for p, d, m in files]
        if not wanted:
            return []
        paths = " ".join(shlex.quote(p) for p, _, _ in wanted)
        # One line per existing file: "<sha256> <mode> <path>"; missing files print nothing.
        out = self.run(f"for f in {paths}; do [ -f \"$f\" ] && "
                       "echo \"$(sha256sum < \"$f\" | cut -d' ' -f1) $(stat -c %a \"$f\") $f\";"
                       " done; true").stdout
        have = {}
        for line in out.splitlines():
            digest, mode, path = line.split(" ", 2)
            have[path] = (digest, int(mode, 8))
        changed = [(path, raw, mode) for path, raw, mode in wanted
                   if have.get(path) != (hashlib.sha256(raw).hexdigest(), mode)]
        put_files(self.transport, changed)
        return [path for path, _, _ in changed]

    def read(self, path: str) -> str | None:
        r = self.run("cat %s", path)
        return r.stdout if r.ok else None

    def mac(self, interface: str) -> str:
        return self.check_output("cat /sys/class/net/%s/address", interface).strip()

    # -- testinfra -------------------------------------------------------------------------
    @cached_property
    def host(self) -> testinfra.host.Host:
        """This node as a pytest-testinfra host, over the same SSH path as everything else."""
        from lab.transport import testinfra_host

        if self._ssh_config is None:
            raise NotImplementedError(f"{self.name} is not reached over SSH")
        return testinfra_host(self.name, self._ssh_config)

    def close(self) -> None:
        self.transport.close()
