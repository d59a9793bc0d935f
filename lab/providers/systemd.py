"""Daemons on a node that runs systemd (VMs, real hosts), driven over the node's transport.

Each halab unit becomes /etc/systemd/system/<name>.service (overriding a packaged unit of the
same name, e.g. Debian's haproxy.service) with `Restart=no`, so that a daemon a test kills
stays dead until the test brings it back. The unit's description is also kept as JSON in
/etc/halab/units/, which is how `installed()` tells halab's units from the system's.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence

from lab.clock import NodeClock
from lab.errors import HalabError
from lab.services import ServiceState, Unit
from lab.transport import Result, Transport, put_files, quote_command

UNITS_DIR = "/etc/halab/units"


class SystemdServices:
    def __init__(self, node: str, transport: Transport) -> None:
        self.node = node
        self.transport = transport
        self.clock = NodeClock(lambda cmd: self._run(cmd).stdout)

    def _run(self, command: str, *args: object, check: bool = True) -> Result:
        r = self.transport.run(quote_command(command, *args), timeout=120)
        return r.expect(self.node) if check else r

    def install(self, unit: Unit) -> bool:
        return bool(self.install_many([unit]))

    def install_many(self, units: Sequence[Unit]) -> list[str]:
        """Every unit of a node in three round trips, with one `daemon-reload`: under TCG a
        reload runs systemd's generators for 3-8 s, and `systemctl enable` alone reloads
        once more, so a unit each cost a load balancer 28 s of its 37 s provisioning."""
        want: dict[str, tuple[str, str]] = {}
        for unit in units:
            want[unit.name] = (unit.to_systemd(), unit.to_json())
        if not want:
            return []
        paths = [p for name in want for p in self._paths(name)]
        have = self._run("; ".join(["cat %s 2>/dev/null; echo; echo ---halab---"] * len(paths)),
                         *paths, check=False).stdout.split("\n---halab---\n")
        changed = [name for i, (name, texts) in enumerate(want.items())
                   if have[2 * i:2 * i + 2] != list(texts)]
        if not changed:
            return []
        put_files(self.transport, [
            (path, text.encode(), 0o644) for name in changed
            for path, text in zip(self._paths(name), want[name], strict=True)])
        # --no-reload: the one reload before it has loaded the units already.
        self._run("systemctl daemon-reload && systemctl enable --no-reload --quiet"
                  + " %s" * len(changed), *changed)
        return changed

    @staticmethod
    def _paths(name: str) -> tuple[str, str]:
        return f"/etc/systemd/system/{name}.service", f"{UNITS_DIR}/{name}.json"

    def uninstall(self, name: str) -> None:
        self._run("systemctl disable --now --quiet %s; rm -f %s %s; systemctl daemon-reload",
                  name, *self._paths(name))

    def installed(self) -> list[str]:
        out = self._run("ls %s 2>/dev/null || true", UNITS_DIR).stdout
        return sorted(f.removesuffix(".json") for f in out.split() if f.endswith(".json"))

    def status(self, name: str) -> ServiceState:
        out = self._run("systemctl show -p ActiveState -p MainPID %s", name, check=False).stdout
        fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        pid = int(fields.get("MainPID", "0") or 0)
        active = fields.get("ActiveState") in ("active", "reloading") and pid > 0
        return ServiceState(name, active, pid or None)

    def start(self, name: str) -> float:
        self.clock.to_host_monotonic(time.time())  # calibrated before, not in the way
        # The node's clock just before the start, as for kill(): a fault "daemon back" is
        # timed from when it happened there, not from when the harness asked.
        out = self._run("date +%%s.%%N; systemctl start %s", name).stdout
        return self.clock.to_host_monotonic(float(out.split()[0]))

    def stop(self, name: str, timeout: float = 10.0) -> None:
        self._run("systemctl stop %s", name)

    def restart(self, name: str) -> None:
        self._run("systemctl restart %s", name)

    def log_mark(self) -> object:
        return self._run("date +%s.%N").stdout.strip()  # the node's clock, for journalctl

    def logs_since(self, mark: object, lines: int = 15) -> dict[str, str]:
        return {u: self._run("journalctl --no-pager -o short-precise -u %s --since @%s -n %s",
                             u, str(mark).split(".")[0], lines, check=False).stdout
                for u in self.installed()}

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> float:
        if not self.status(name).active:
            raise HalabError(f"{name} is not running on {self.node}: nothing to signal")
        self.clock.to_host_monotonic(time.time())  # calibrated before, not in the way
        # The main process only, by its PID: like a crash of the daemon, not of its whole
        # cgroup. The node's clock just before the signal, from the shell's own `kill`: when
        # the fault took effect. (`date; systemctl kill` read it 0.09-0.18 s early under
        # TCG, systemctl's own start.)
        out = self._run('pid=$(systemctl show -p MainPID --value %s); [ "${pid:-0}" -gt 0 ] '
                        '|| exit 3; date +%%s.%%N; kill -s %s "$pid"',
                        name, sig.name.removeprefix("SIG")).stdout
        return self.clock.to_host_monotonic(float(out.split()[0]))
