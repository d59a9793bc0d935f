"""The systemd service manager (VMs, real hosts) against a fake transport."""

from __future__ import annotations

import re
import signal
import time

from lab.providers.systemd import SystemdServices
from lab.services import Unit
from lab.transport import Result

UNIT = Unit("haproxy", ("/usr/sbin/haproxy", "-db", "-f", "/etc/haproxy/haproxy.cfg"),
            "HAProxy", ("/run/haproxy",))


class FakeHost:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.commands: list[str] = []
        self.active = False

    def run(self, command: str, timeout: float | None = 60) -> Result:
        self.commands.append(command)
        if command.startswith("cat "):
            paths = re.findall(r"cat (\S+) 2>/dev/null", command)
            text = "\n---halab---\n".join(self.files.get(p, b"").decode() for p in paths)
            return Result(command, 0, text, "")
        if command.startswith("systemctl show"):
            return Result(command, 0, f"ActiveState={'active' if self.active else 'failed'}\n"
                          f"MainPID={'42' if self.active else '0'}\n", "")
        if command.startswith("date ") or "; date +%s.%N;" in command:
            # The node's clock runs 100 s ahead of this host's.
            return Result(command, 0, f"{time.time() + 100:.6f}\n", "")
        return Result(command, 0, "", "")

    def put(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self.files[path] = data

    def close(self) -> None:
        pass


def test_install_writes_a_unit_once_and_enables_it():
    host = FakeHost()
    svc = SystemdServices("lb01", host)
    assert svc.install(UNIT)
    text = host.files["/etc/systemd/system/haproxy.service"].decode()
    assert "ExecStart=/usr/sbin/haproxy -db -f /etc/haproxy/haproxy.cfg" in text
    assert "Restart=no" in text
    assert any("systemctl daemon-reload && systemctl enable" in c for c in host.commands)
    host.commands.clear()
    assert not svc.install(UNIT)
    assert not any("daemon-reload" in c for c in host.commands)


def test_a_nodes_units_cost_one_systemd_reload():
    """Under TCG a reload costs 3-8 s and `systemctl enable` does one more of its own: the
    units of a node are written together and reloaded once (the load balancer's provisioning
    went from 37 s, 28 s of it in four reloads, to 25 s; a master from 23 s to 12.5 s)."""
    host = FakeHost()
    svc = SystemdServices("lb01", host)
    other = Unit("keepalived", ("/usr/sbin/keepalived", "-n"), "keepalived")
    assert svc.install_many([UNIT, other]) == ["haproxy", "keepalived"]
    assert "/etc/systemd/system/keepalived.service" in host.files
    assert "/etc/halab/units/haproxy.json" in host.files
    reloads = [c for c in host.commands if "daemon-reload" in c]
    assert reloads == ["systemctl daemon-reload && systemctl enable --no-reload --quiet "
                       "haproxy keepalived"]
    # One changed of two: only that one is written and enabled.
    host.commands.clear()
    changed = Unit("keepalived", ("/usr/sbin/keepalived", "-n", "-l"), "keepalived")
    assert svc.install_many([UNIT, changed]) == ["keepalived"]
    assert [c for c in host.commands if "daemon-reload" in c] == [
        "systemctl daemon-reload && systemctl enable --no-reload --quiet keepalived"]
    host.commands.clear()
    assert svc.install_many([UNIT, changed]) == []
    assert not any("daemon-reload" in c for c in host.commands)


def test_kill_signals_the_main_process_only():
    host = FakeHost()
    host.active = True
    before = time.monotonic()
    at = SystemdServices("lb01", host).kill("haproxy", signal.SIGKILL)
    assert host.commands[-1] == ('pid=$(systemctl show -p MainPID --value haproxy); '
                                 '[ "${pid:-0}" -gt 0 ] || exit 3; date +%s.%N; '
                                 'kill -s KILL "$pid"')
    # The node's own moment of the signal, mapped onto this host's clock: its 100 s lead
    # is taken out.
    assert before - 0.5 < at < time.monotonic() + 0.5


def test_status_reads_systemd():
    host = FakeHost()
    svc = SystemdServices("lb01", host)
    assert not svc.status("haproxy").active
    host.active = True
    assert svc.status("haproxy").pid == 42


def test_logs_since_asks_the_journal_from_the_mark_on():
    host = FakeHost()
    svc = SystemdServices("lb01", host)
    host.run = lambda c, timeout=60: (host.commands.append(c) or Result(
        c, 0, "1764130000.123\n" if c.startswith("date") else
        ("haproxy.json\n" if c.startswith("ls") else "a line\n"), ""))
    mark = svc.log_mark()
    logs = svc.logs_since(mark, lines=5)
    assert logs == {"haproxy": "a line\n"}
    assert any(c.startswith("journalctl") and "-u haproxy --since @1764130000 -n 5" in c
               for c in host.commands)
