"""How commands reach a node: SSH through Fabric, or a local namespace for the client.

All transports share one tiny interface: ``run(command) -> Result`` never raises on a
non-zero exit; a node that cannot be reached at all raises ``TransportError``.
"""

from __future__ import annotations

import io
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lab.errors import TransportError


@dataclass(frozen=True)
class Result:
    command: str
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


class Transport(Protocol):
    def run(self, command: str, timeout: float | None = 60) -> Result: ...

    def put(self, path: str, data: bytes, mode: int = 0o644) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SshHost:
    alias: str
    hostname: str
    key: Path
    proxy_command: str | None
    user: str = "root"
    port: int = 22


def write_ssh_config(path: Path, hosts: Sequence[SshHost]) -> None:
    """One file for `ssh -F`, Fabric and testinfra alike: the same path for all three."""
    blocks = []
    for h in hosts:
        lines = [
            f"Host {h.alias}",
            f"  HostName {h.hostname}",
            f"  Port {h.port}",
            f"  User {h.user}",
            f"  IdentityFile {h.key}",
            "  IdentitiesOnly yes",
            # Host keys are made afresh with every lab, like Vagrant's boxes.
            "  StrictHostKeyChecking no",
            "  UserKnownHostsFile /dev/null",
            "  LogLevel ERROR",
            "  ControlMaster no",
            "  ControlPersist no",
        ]
        if h.proxy_command:
            lines.append(f"  ProxyCommand {h.proxy_command}")
        blocks.append("\n".join(lines))
    path.write_text("\n\n".join(blocks) + "\n")


def fabric_connection(alias: str, ssh_config: Path, connect_timeout: float = 10):  # noqa: ANN201
    """A (not yet opened) fabric.Connection to ``alias`` as the lab's ssh_config describes it;
    fabric is imported here, lazily: it is slow to import."""
    from fabric import Config, Connection

    cfg = Config(runtime_ssh_path=str(ssh_config))
    cfg.load_ssh_config()
    return Connection(alias, config=cfg, connect_timeout=connect_timeout,
                      connect_kwargs={"allow_agent": False, "look_for_keys": False})


class FabricTransport:
    """SSH to a node through the lab's ssh_config; connects lazily, reconnects when dropped."""

    def __init__(self, alias: str, ssh_config: Path) -> None:
        self.alias, self.ssh_config = alias, ssh_config
        self._conn = None

    def _connection(self):  # noqa: ANN202 - fabric.Connection
        if self._conn is None:
            self._conn = fabric_connection(self.alias, self.ssh_config)
        return self._conn

    def _open(self):  # noqa: ANN202
        conn = self._connection()
        try:
            if not conn.is_connected:
                conn.open()
        except (TimeoutError, OSError, EOFError) as e:
            self.close()
            raise TransportError(f"cannot reach {self.alias} over SSH ({e}); is the lab up? "
                                 "`halab status` shows what runs") from None
        except Exception as e:  # paramiko's SSHException and friends
            self.close()
            raise TransportError(f"cannot reach {self.alias} over SSH: {e}") from None
        return conn

    def run(self, command: str, timeout: float | None = 60) -> Result:
        conn = self._open()
        try:
            r = conn.run(command, hide=True, warn=True, in_stream=False, timeout=timeout)
        except (OSError, EOFError) as e:
            self.close()
            raise TransportError(f"lost the SSH connection to {self.alias}: {e}") from None
        return Result(command, r.exited, r.stdout, r.stderr)

    def put(self, path: str, data: bytes, mode: int = 0o644) -> None:
        conn = self._open()
        parent = str(Path(path).parent)
        conn.run(f"mkdir -p {shlex.quote(parent)}", hide=True, in_stream=False)
        conn.put(io.BytesIO(data), remote=path)
        conn.sftp().chmod(path, mode)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


class LocalTransport:
    """Runs commands through a local prefix, e.g. `ip netns exec halab-x-client`."""

    def __init__(self, prefix: Sequence[str], name: str) -> None:
        self.prefix, self.name = list(prefix), name

    def run(self, command: str, timeout: float | None = 60) -> Result:
        try:
            p = subprocess.run([*self.prefix, "/bin/sh", "-c", command], capture_output=True,
                               text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except FileNotFoundError as e:
            raise TransportError(f"cannot run commands on {self.name}: {e}") from None
        if p.returncode == 255 and "Cannot open network namespace" in p.stderr:
            raise TransportError(f"{self.name} is gone: {p.stderr.strip()}")
        return Result(command, p.returncode, p.stdout, p.stderr)

    def put(self, path: str, data: bytes, mode: int = 0o644) -> None:
        q = shlex.quote(path)
        cmd = f"mkdir -p \"$(dirname {q})\" && cat > {q} && chmod {mode:o} {q}"
        p = subprocess.run([*self.prefix, "/bin/sh", "-c", cmd], input=data,
                           capture_output=True)
        if p.returncode:
            raise TransportError(f"cannot write {path} on {self.name}: {p.stderr.decode()}")

    def close(self) -> None:
        pass
