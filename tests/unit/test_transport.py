"""The SSH transport checks every node's host key against the lab's known_hosts (halab made
the keys), and whatever Fabric or paramiko raise leaves it as the project's own errors.

The SSH server here is paramiko's, in this process, on 127.0.0.1: no root, no lab."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import paramiko
import pytest

from lab.errors import TransportError
from lab.transport import FabricTransport, SshHost, fabric_connection, write_ssh_config


def _pub(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()} node"


class _Server(paramiko.ServerInterface):
    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED

    def check_channel_env_request(self, channel: paramiko.Channel, name: bytes,
                                  value: bytes) -> bool:
        return True

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        def answer() -> None:
            time.sleep(0.1)  # after the exec request's reply
            channel.sendall(b"hello\n")
            channel.send_exit_status(3)
            channel.close()

        threading.Thread(target=answer, daemon=True).start()
        return True


@pytest.fixture
def sshd():
    """An SSH server on 127.0.0.1 with a host key of its own; yields (port, host key)."""
    host_key = paramiko.Ed25519Key.from_private_key_file(_keyfile("srv"))
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            t = paramiko.Transport(conn)
            t.add_server_key(host_key)
            try:
                t.start_server(server=_Server())
            except (paramiko.SSHException, EOFError, OSError):
                # A client that refused our host key may reset the connection rather than
                # close it; the next client must still be served.
                pass

    threading.Thread(target=serve, daemon=True).start()
    yield lsock.getsockname()[1], host_key
    stop.set()
    lsock.close()


_KEYS: dict[str, str] = {}


def _keyfile(name: str) -> str:
    import subprocess
    import tempfile

    if name not in _KEYS:
        d = tempfile.mkdtemp()
        path = f"{d}/{name}"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
        _KEYS[name] = path
    return _KEYS[name]


def _config(tmp_path: Path, port: int, host_key: str) -> Path:
    cfg = tmp_path / "ssh_config"
    write_ssh_config(cfg, tmp_path / "known_hosts", [
        SshHost("node", "127.0.0.1", Path(_keyfile("user")), None, host_key, port=port)])
    return cfg


def test_ssh_config_pins_the_host_keys_halab_made(tmp_path):
    pub = Path(_keyfile("srv") + ".pub").read_text()
    cfg = _config(tmp_path, 22, pub)
    text = cfg.read_text()
    assert "StrictHostKeyChecking yes" in text
    assert f"UserKnownHostsFile {tmp_path / 'known_hosts'}" in text
    assert "/dev/null" not in text.replace("GlobalKnownHostsFile /dev/null", "")
    assert (tmp_path / "known_hosts").read_text() == (
        f"127.0.0.1 {' '.join(pub.split()[:2])} node\n")
    conn = fabric_connection("node", cfg)
    assert isinstance(conn.client._policy, paramiko.RejectPolicy)
    assert conn.client.get_host_keys().lookup("127.0.0.1") is not None


def test_the_node_with_its_pinned_key_is_reached(tmp_path, sshd):
    port, host_key = sshd
    t = FabricTransport("node", _config(tmp_path, port, _pub(host_key)))
    try:
        r = t.run("anything")
    finally:
        t.close()
    assert (r.rc, r.stdout) == (3, "hello\n")


def test_a_changed_host_key_is_refused(tmp_path, sshd):
    port, _ = sshd
    other = paramiko.Ed25519Key.from_private_key_file(_keyfile("other"))
    t = FabricTransport("node", _config(tmp_path, port, _pub(other)))
    with pytest.raises(TransportError, match="another host key"):
        t.run("anything")
    with pytest.raises(TransportError, match="another host key"):
        t.stream("anything")


def test_an_unknown_host_key_is_refused(tmp_path, sshd):
    port, host_key = sshd
    cfg = _config(tmp_path, port, _pub(host_key))
    (tmp_path / "known_hosts").write_text("")
    with pytest.raises(TransportError, match="not in the lab's known_hosts"):
        FabricTransport("node", cfg).run("anything")


class _FakeConnection:
    is_connected = True

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def run(self, *a, **k):  # noqa: ANN002, ANN003, ANN202
        raise self.exc

    def close(self) -> None:
        pass


def _raising(exc: BaseException) -> FabricTransport:
    t = FabricTransport("lb01", Path("/nonexistent"))
    t._conn = _FakeConnection(exc)
    return t


def test_fabric_and_paramiko_errors_become_the_projects_own():
    from invoke.exceptions import CommandTimedOut, UnexpectedExit
    from invoke.runners import Result as InvokeResult

    failed = InvokeResult(stdout="", stderr="no such file\n", exited=2, command="cat x")
    r = _raising(UnexpectedExit(failed)).run("cat x")
    assert (r.rc, r.stderr) == (2, "no such file\n")  # a command that ran: a Result
    with pytest.raises(TransportError, match="did not finish"):
        _raising(CommandTimedOut(failed, 5)).run("cat x")
    with pytest.raises(TransportError, match="lost the SSH connection"):
        _raising(paramiko.SSHException("channel closed")).run("cat x")


def test_testinfra_checks_the_host_key_too(tmp_path, sshd):
    from lab.transport import testinfra_host

    port, host_key = sshd
    other = paramiko.Ed25519Key.from_private_key_file(_keyfile("other"))
    with pytest.raises(TransportError, match="another host key"):
        testinfra_host("node", _config(tmp_path, port, _pub(other))).run("true")
    (tmp_path / "pinned").mkdir()
    good = testinfra_host("node", _config(tmp_path / "pinned", port, _pub(host_key)))
    assert good.run("anything").stdout == "hello\n"


def test_a_proxy_that_exited_ends_the_connection_instead_of_spinning():
    """paramiko 5.1's ProxyCommand.recv loops for ever on a finished proxy's b"" (a core
    busy per dead connection; a command on it waits open_channel's hour). Ours returns
    the end of the stream at once, which paramiko turns into EOFError."""
    import threading

    from lab.transport import _ending_proxy

    proxy = _ending_proxy()("printf abc")
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.append(proxy.recv(64)), daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "recv() still running on a proxy that exited"
    assert got == [b"abc"]
    assert proxy.recv(64) == b""  # and nothing after the end
    proxy.close()
