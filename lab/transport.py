"""How commands reach a node: SSH through Fabric, or a local namespace for the client.

All transports share one tiny interface: ``run(command) -> Result`` never raises on a
non-zero exit (``Result.expect`` does, with the one ``CommandError``); a node that cannot
be reached at all raises ``TransportError``; ``stream(command)`` follows a long-running
command line by line (the VIP watch). Quoting happens here and nowhere else.
"""

from __future__ import annotations

import functools
import io
import os
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
from lab.state import atomic_write


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
    host_key: str  # the node's public host key as halab made it: "ssh-ed25519 AAAA..."
    user: str = "root"
    port: int = 22


def _known_name(h: SshHost) -> str:
    # What ssh and paramiko look the key up by: the HostName, "[host]:port" off port 22.
    return h.hostname if h.port == 22 else f"[{h.hostname}]:{h.port}"


def write_ssh_config(path: Path, known_hosts: Path, hosts: Sequence[SshHost]) -> None:
    """One file for `ssh -F`, Fabric and testinfra alike: the same path for all three, and
    the known_hosts beside it that pins every node's host key. halab made those keys, so
    nothing is learnt on first use: a node that answers with another key is refused."""
    atomic_write(known_hosts, "".join(
        f"{_known_name(h)} {' '.join(h.host_key.split()[:2])} {h.alias}\n"
        for h in hosts).encode(), 0o644)
    blocks = []
    for h in hosts:
        lines = [
            f"Host {h.alias}",
            f"  HostName {h.hostname}",
            f"  Port {h.port}",
            f"  User {h.user}",
            f"  IdentityFile {h.key}",
            "  IdentitiesOnly yes",
            "  StrictHostKeyChecking yes",
            f"  UserKnownHostsFile {known_hosts}",
            # Only the lab's own record: another lab on the same addresses (a classroom)
            # has other keys, and the machine's files know none of them.
            "  GlobalKnownHostsFile /dev/null",
            "  LogLevel ERROR",
            "  ControlMaster no",
            "  ControlPersist no",
        ]
        if h.proxy_command:
            lines.append(f"  ProxyCommand {h.proxy_command}")
        blocks.append("\n".join(lines))
    atomic_write(path, ("\n\n".join(blocks) + "\n").encode(), 0o644)


@functools.cache
def _ending_proxy() -> type:
    """paramiko's ProxyCommand, except that the proxy's exit ends the connection. paramiko
    5.1's recv() loops for ever on the b"" a finished `nc` gives: every connection whose
    proxy died (a node's sshd killed, a Ctrl-C, a lab taken down under it) kept a thread
    spinning on a core, and a command begun on it waited out open_channel's hour (seen:
    the parallel suite hung in faults.restore, three workers burning CPU on dead proxies).
    Returning what was read, b"" at the end, is what a socket does: paramiko's packetizer
    then raises EOFError and the transport closes."""
    import select
    import time

    import paramiko

    class EndingProxyCommand(paramiko.ProxyCommand):
        def recv(self, size: int) -> bytes:
            buffer = b""
            start = time.time()
            try:
                while len(buffer) < size:
                    wait = None
                    if self.timeout is not None:
                        wait = self.timeout - (time.time() - start)
                        if wait <= 0:
                            if buffer:
                                return buffer
                            raise TimeoutError()
                    r, _, _ = select.select([self.process.stdout], [], [], wait)
                    if r:
                        chunk = os.read(self.process.stdout.fileno(), size - len(buffer))
                        if not chunk:
                            return buffer  # the proxy is gone: the end of the stream
                        buffer += chunk
                return buffer
            except OSError as e:
                if isinstance(e, TimeoutError):
                    raise
                raise paramiko.ProxyCommandFailure(" ".join(self.cmd), e.strerror) from None

    return EndingProxyCommand


def fabric_connection(alias: str, ssh_config: Path, connect_timeout: float = 10):  # noqa: ANN201
    """A (not yet opened) fabric.Connection to ``alias`` as the lab's ssh_config describes it,
    host key checking included (Fabric's own default accepts any key); fabric is imported
    here, lazily: it is slow to import."""
    import paramiko
    from fabric import Config, Connection

    cfg = Config(runtime_ssh_path=str(ssh_config), overrides={"runners": {"remote": _remote()}})
    cfg.load_ssh_config()
    conn = Connection(alias, config=cfg, connect_timeout=connect_timeout,
                      connect_kwargs={"allow_agent": False, "look_for_keys": False})
    if isinstance(conn.gateway, str):
        command = conn.gateway

        def open_gateway() -> object:  # Fabric's own, with a proxy whose exit ends it
            cfg = paramiko.SSHConfig()
            cfg.parse(io.StringIO(f"Host {conn.host}\n    ProxyCommand {command}"))
            return _ending_proxy()(cfg.lookup(conn.host)["proxycommand"])

        conn.open_gateway = open_gateway  # type: ignore[method-assign]
    if conn.ssh_config.get("stricthostkeychecking", "").lower() == "yes":
        # As `ssh -F` does with the same file: only the keys recorded there, none learnt.
        # (A lab made before halab recorded host keys says "no" and stays as it was.)
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        for known in conn.ssh_config.get("userknownhostsfile", "").split():
            try:
                conn.client.get_host_keys().load(known)
            except FileNotFoundError:
                pass  # then no key is known, and every connection is refused, saying so
    return conn


def _ssh_failure(alias: str, e: BaseException) -> TransportError:
    """The one message for an SSH connection that failed, by why."""
    import paramiko

    if isinstance(e, paramiko.BadHostKeyException):
        return TransportError(
            f"{alias} answered with another host key than the one halab made for it "
            f"({e.key.get_name()} {e.key.get_base64()[:16]}..., expected "
            f"{e.expected_key.get_base64()[:16]}...): something else answers at its address, "
            "or the node was made again without halab. Nothing was sent to it. `halab down` "
            "and `halab up` make the lab (and its keys) afresh.")
    if isinstance(e, paramiko.SSHException) and "known_hosts" in str(e):
        return TransportError(
            f"{alias}'s host key is not in the lab's known_hosts, so it cannot be checked and "
            f"halab does not connect ({e}). `halab up` records the keys it makes; a lab made "
            "by hand is not halab's.")
    if isinstance(e, TimeoutError | OSError | EOFError):
        return TransportError(f"cannot reach {alias} over SSH ({e}); is the lab up? "
                              "`halab status` shows what runs")
    return TransportError(f"cannot reach {alias} over SSH: {type(e).__name__}: {e}")


def testinfra_host(alias: str, ssh_config: Path):  # noqa: ANN201 - testinfra.host.Host
    """``alias`` as a pytest-testinfra host over the lab's SSH path, host key checked as
    Fabric's is: testinfra's own paramiko backend accepts any key (WarningPolicy)."""
    import functools

    import testinfra.host
    from testinfra.backend.paramiko import ParamikoBackend

    class _Checked(ParamikoBackend):
        @functools.cached_property
        def client(self):  # noqa: ANN202 - paramiko.SSHClient
            conn = fabric_connection(alias, ssh_config)
            try:
                conn.open()
            except Exception as e:  # noqa: BLE001 - the one message for a failed connection
                conn.close()
                raise _ssh_failure(alias, e) from None
            self._halab_connection = conn  # holds the client's transport open
            return conn.client

    backend = _Checked(alias, ssh_config=str(ssh_config))
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host


def _remote() -> type:
    """Fabric's runner, ended by Ctrl-C at once. Without a PTY Fabric re-raises the
    KeyboardInterrupt, but invoke first joins the command's reader threads, which wait for
    the channel to end: a terminal's Ctrl-C also reaches the SSH proxy (`nc`, in the same
    process group), and a channel whose proxy died never ends. `halab chaos` Ctrl-Ced in a
    wait hung there (tests/test_crashproof.py). Closing the connection ends the channel."""
    from fabric.runners import Remote

    class _Interruptible(Remote):
        def send_interrupt(self, interrupt: KeyboardInterrupt) -> None:
            self.context.client.close()
            raise interrupt

    return _Interruptible


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
        except Exception as e:  # noqa: BLE001 - paramiko's SSHException and friends, OSError
            self.close()
            raise _ssh_failure(self.alias, e) from None
        return conn

    def run(self, command: str, timeout: float | None = 60) -> Result:
        from invoke.exceptions import CommandTimedOut, UnexpectedExit

        conn = self._open()
        try:
            r = conn.run(command, hide=True, warn=True, in_stream=False, timeout=timeout)
        except UnexpectedExit as e:
            # warn=True should keep it away; should it come anyway, a command that ran and
            # exited is a Result like any other, never a lost connection.
            r = e.result
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
            raise TransportError(f"cannot stream: {_ssh_failure(self.alias, e)}") from None
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
            conn, self._conn = self._conn, None
            # A connection still opening (another thread in its handshake or auth) is not
            # connected to Fabric, whose close() then leaves it be: paramiko's client closes
            # it, and that thread's wait ends. Closing over a proxy that died (a Ctrl-C
            # ends `nc` too) raises: the connection is gone all the same, and the caller
            # (the clean-up after a failed `up`) must go on.
            client = getattr(conn, "client", None)
            for close in (conn.close, getattr(client, "close", None)):
                try:
                    if close is not None:
                        close()
                except Exception:  # noqa: BLE001, S110
                    pass


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
