"""How commands reach a node: SSH through Fabric, or a local namespace for the client.

All transports share one tiny interface: ``run(command) -> Result`` never raises on a
non-zero exit (``Result.expect`` does, with the one ``CommandError``); a node that cannot
be reached at all raises ``TransportError``; ``stream(command)`` follows a long-running
command line by line (the VIP watch). Quoting happens here and nowhere else.
"""

from __future__ import annotations

import io
import selectors
import shlex
import subprocess
import tarfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lab.errors import CommandError, TransportError


def quote_command(command: str, *args: object) -> str:
    """`command % args` with every argument shell-quoted: the one place quoting happens."""
    if not args:
        return command
    return command % tuple(shlex.quote(str(a)) for a in args)


@dataclass(frozen=True)
class Result:
    command: str
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def expect(self, node: str, codes: Iterable[int] = (0,)) -> Result:
        """This result, or the one ``CommandError`` when its exit code is not in ``codes``."""
        __tracebackhide__ = True
        if self.rc not in set(codes):
            raise CommandError(node, self.command, self.rc, self.stdout, self.stderr)
        return self


def put_files(transport: Transport, files: Sequence[tuple[str, bytes, int]]) -> None:
    """Write every file (path, content, mode): in one round trip where the transport can
    (``put_files``), else one ``put`` each."""
    many = getattr(transport, "put_files", None)
    if many is not None:
        many(files)
        return
    for path, data, mode in files:
        transport.put(path, data, mode)


def tar_of(files: Sequence[tuple[str, bytes, int]]) -> bytes:
    """The files as a tar archive rooted at /, owned by root, each with its mode."""
    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path, data, mode in files:
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), mode, now
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Stream(Protocol):
    """A command that goes on printing: its lines as they come, until it is closed."""

    def lines(self, idle_timeout: float) -> Iterator[str]:
        """Yields lines; raises TransportError when none came for ``idle_timeout`` s or the
        command or its connection ended."""
        ...

    def close(self) -> None: ...


class Transport(Protocol):
    def run(self, command: str, timeout: float | None = 60) -> Result: ...

    def stream(self, command: str) -> Stream: ...

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
        from invoke.exceptions import CommandTimedOut

        conn = self._open()
        try:
            r = conn.run(command, hide=True, warn=True, in_stream=False, timeout=timeout)
        except CommandTimedOut:
            self.close()
            raise TransportError(f"{self.alias} did not finish `{command}` within {timeout} s "
                                 "(a frozen node, or a command that hangs)") from None
        except (OSError, EOFError) as e:
            self.close()
            raise TransportError(f"lost the SSH connection to {self.alias}: {e}") from None
        except Exception as e:  # paramiko's SSHException and friends: the channel broke
            self.close()
            raise TransportError(f"lost the SSH connection to {self.alias}: {e}") from None
        return Result(command, r.exited, r.stdout, r.stderr)

    def stream(self, command: str) -> Stream:
        # A connection of its own: the stream holds it for as long as it is followed, and
        # closing it must not disturb the commands of whoever else uses this node.
        conn = fabric_connection(self.alias, self.ssh_config, connect_timeout=2)
        try:
            conn.open()
            chan = conn.client.get_transport().open_session()
            chan.exec_command(command)
        except Exception as e:  # noqa: BLE001 - any failure to connect is 'unreachable'
            conn.close()
            raise TransportError(f"cannot stream from {self.alias} over SSH: {e}") from None
        return _SshStream(self.alias, conn, chan)

    def put(self, path: str, data: bytes, mode: int = 0o644) -> None:
        parent = str(Path(path).parent)
        self.run(quote_command("mkdir -p %s", parent)).expect(self.alias)
        conn = self._open()
        try:
            conn.put(io.BytesIO(data), remote=path)
            conn.sftp().chmod(path, mode)
        except Exception as e:  # noqa: BLE001 - sftp's errors are IOError or SSHException
            self.close()
            raise TransportError(f"cannot write {path} on {self.alias}: {e}") from None

    def put_files(self, files: Sequence[tuple[str, bytes, int]]) -> None:
        """Every file in one exec: a tar archive on tar's standard input, where a put each
        costs five round trips (mkdir, SFTP open, write, close, chmod): provisioning a
        master was ~40 of them."""
        if not files:
            return
        archive = tar_of(files)
        conn = self._open()
        what = ", ".join(p for p, _, _ in files)
        try:
            chan = conn.client.get_transport().open_session()
            try:
                # As root, tar keeps the archive's owner and modes; it makes missing folders.
                chan.exec_command("tar -x -f - -C /")
                chan.sendall(archive)
                chan.shutdown_write()
                err = chan.makefile_stderr("rb").read().decode(errors="replace")
                rc = chan.recv_exit_status()
            finally:
                chan.close()
        except Exception as e:  # noqa: BLE001 - paramiko's errors: the connection broke
            self.close()
            raise TransportError(f"cannot write {what} on {self.alias}: {e}") from None
        if rc != 0:
            raise TransportError(f"cannot write {what} on {self.alias}: tar said "
                                 f"{err.strip() or f'exit {rc}'}")

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


class _SshStream:
    def __init__(self, alias: str, conn: object, chan: object) -> None:
        self.alias, self._conn, self._chan = alias, conn, chan

    def lines(self, idle_timeout: float) -> Iterator[str]:
        chan = self._chan
        chan.settimeout(idle_timeout)  # type: ignore[attr-defined]
        try:
            yield from chan.makefile("r")  # type: ignore[attr-defined]
        except TimeoutError:
            raise TransportError(f"{self.alias} said nothing for {idle_timeout:g} s") from None
        except Exception as e:  # noqa: BLE001 - a broken channel, whatever paramiko calls it
            raise TransportError(f"lost the stream from {self.alias}: {e}") from None
        raise TransportError(f"the stream from {self.alias} ended")

    def close(self) -> None:
        try:
            self._conn.close()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001, S110 - closing a dead connection may fail; it is gone
            pass


class _ProcessStream:
    def __init__(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        self.name, self._proc = name, proc

    def lines(self, idle_timeout: float) -> Iterator[str]:
        assert self._proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self._proc.stdout, selectors.EVENT_READ)
        buf = b""
        try:
            while True:
                if not sel.select(idle_timeout):
                    raise TransportError(f"{self.name} said nothing for {idle_timeout:g} s")
                chunk = self._proc.stdout.read1(65536)  # type: ignore[attr-defined]
                if not chunk:
                    raise TransportError(f"the stream from {self.name} ended")
                buf += chunk
                *done, buf = buf.split(b"\n")
                for line in done:
                    yield line.decode(errors="replace") + "\n"
        finally:
            sel.close()

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()  # our own child, by its PID
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


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

    def stream(self, command: str) -> Stream:
        try:
            proc = subprocess.Popen([*self.prefix, "/bin/sh", "-c", command],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                    stdin=subprocess.DEVNULL)
        except FileNotFoundError as e:
            raise TransportError(f"cannot run commands on {self.name}: {e}") from None
        return _ProcessStream(self.name, proc)

    def put(self, path: str, data: bytes, mode: int = 0o644) -> None:
        q = shlex.quote(path)
        cmd = f"mkdir -p \"$(dirname {q})\" && cat > {q} && chmod {mode:o} {q}"
        p = subprocess.run([*self.prefix, "/bin/sh", "-c", cmd], input=data,
                           capture_output=True)
        if p.returncode:
            raise TransportError(f"cannot write {path} on {self.name}: {p.stderr.decode()}")

    def close(self) -> None:
        pass
