"""Daemons inside an embedded lab node, managed from the host.

A daemon is started with nsenter into the node's namespaces and detached (setsid -f), so
that it is reparented to the node's PID 1, which reaps it. Its in-node PID goes to
/run/halab/pids/<unit>.pid; every signal is then sent by PID from the host, after mapping
the in-node PID to the host's (NSpid in /proc). Its output goes to the lab's state folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from lab import inputs
from lab.errors import HalabError, LabStateError
from lab.inputs import TOKEN
from lab.services import ServiceState, Unit
from lab.wait import until

UNITS_DIR = "etc/halab/units"
PIDS_DIR = "run/halab/pids"


def pid_ns(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return None


def processes_in(ns_inode: int) -> dict[int, int]:
    """Every live process in a PID namespace: {pid inside: pid on the host}."""
    found: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        hostpid = int(entry.name)
        try:
            if os.stat(f"/proc/{hostpid}/ns/pid").st_ino != ns_inode:
                continue
            status = Path(f"/proc/{hostpid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("State", "").strip().startswith("Z"):
            continue  # a zombie is dead, whatever `kill -0` says
        nspid = fields.get("NSpid", "").split()
        if nspid:
            found[int(nspid[-1])] = hostpid
    return found


def descendants(pid: int) -> list[int]:
    """``pid``'s children, theirs, and so on (the kernel's per-thread children lists): a
    node's few processes, where a scan of /proc would read every process of the machine."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue  # gone meanwhile
        for task in tasks:
            try:
                kids = [int(k) for k in
                        Path(f"/proc/{parent}/task/{task}/children").read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def _inner_pid(hostpid: int) -> int | None:
    """The PID a live process has in its own (innermost) PID namespace; None for a zombie
    or a process that is gone."""
    try:
        status = Path(f"/proc/{hostpid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if fields.get("State", "").strip().startswith("Z"):
        return None
    nspid = fields.get("NSpid", "").split()
    return int(nspid[-1]) if nspid else None


class NetnsServices:
    def __init__(self, node: str, init_pid: Callable[[], int | None], log_dir: Path) -> None:
        self.node = node
        self._init_pid = init_pid
        self.log_dir = log_dir

    # -- the node's view -------------------------------------------------------------------
    def _init(self) -> int:
        pid = self._init_pid()
        if pid is None:
            raise LabStateError(f"{self.node} is not running (crashed or never booted); "
                                "`halab status` shows the lab, `halab up` brings it up")
        return pid

    def _root(self) -> Path:
        """The node's file system as its processes see it, from the host."""
        return Path(f"/proc/{self._init()}/root")

    def _file(self, folder: str, name: str, suffix: str) -> Path:
        """A unit's file in the node; a unit name is a single path component, never a way
        to another folder (a unit file names a command that runs as root)."""
        if not TOKEN.fullmatch(name):
            raise HalabError(f"{inputs.quote(name)} is not a unit name (letters, digits, "
                             "._+-); `halab status` lists the node's daemons")
        return self._root() / folder / f"{name}{suffix}"

    def _unit(self, name: str) -> Unit:
        try:
            return Unit.from_json(self._file(UNITS_DIR, name, ".json").read_text())
        except FileNotFoundError:
            raise HalabError(f"{self.node} has no service '{name}'; it has: "
                             f"{', '.join(self.installed()) or 'none'}") from None

    def _host_pid(self, name: str) -> int | None:
        try:
            inner = int(self._file(PIDS_DIR, name, ".pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        init = self._init()
        # A running daemon is a descendant of the node's PID 1 (it was reparented there
        # when `setsid -f` let go of it): found among the node's few processes. Only a
        # daemon not found there (gone, or a moment after its start) costs a scan of the
        # machine's processes, which a class of labs makes thousands.
        for hostpid in descendants(init):
            if _inner_pid(hostpid) == inner:
                return hostpid
        ns = pid_ns(init)
        return processes_in(ns).get(inner) if ns else None

    # -- ServiceManager -------------------------------------------------------------------
    def install(self, unit: Unit) -> bool:
        path = self._file(UNITS_DIR, unit.name, ".json")
        text = unit.to_json()
        if path.exists() and path.read_text() == text:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return True

    def install_many(self, units: Sequence[Unit]) -> list[str]:
        return [unit.name for unit in units if self.install(unit)]

    def installed(self) -> list[str]:
        d = self._root() / UNITS_DIR
        return sorted(p.stem for p in d.glob("*.json")) if d.exists() else []

    def uninstall(self, name: str) -> None:
        self.stop(name)
        self._file(UNITS_DIR, name, ".json").unlink(missing_ok=True)

    def status(self, name: str) -> ServiceState:
        pid = self._host_pid(name)
        if pid is None:
            return ServiceState(name, False)
        inner = int(self._file(PIDS_DIR, name, ".pid").read_text().strip())
        return ServiceState(name, True, inner)

    def start(self, name: str) -> None:
        if self.status(name).active:
            return
        unit = self._unit(name)
        root = self._root()
        for d in unit.runtime_dirs:
            (root / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
        pidfile = f"/{PIDS_DIR}/{name}.pid"
        self._file(PIDS_DIR, name, ".pid").unlink(missing_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{name}.log", "ab") as log:
            log.write(f"--- halab: starting {name} at {time.strftime('%F %T')}\n".encode())
            log.flush()
            # setsid -f: the daemon leaves nsenter behind and belongs to the node's PID 1.
            subprocess.run(
                ["nsenter", "-t", str(self._init()), "-n", "-p", "-m", "-u", "-i", "--wd=/",
                 "setsid", "-f", "/bin/sh", "-c", f'echo $$ > {pidfile}; exec "$@"',
                 f"halab-{name}", *unit.argv],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=True, timeout=30,
            )
        try:
            until(f"{name} to run on {self.node}", lambda: self.status(name).active,
                  timeout=10, interval=0.02)
        except HalabError:
            tail = self._log_tail(name)
            raise HalabError(f"{name} did not start on {self.node}; its log "
                             f"({self.log_dir / (name + '.log')}) ends with:\n{tail}") from None

    def log_mark(self) -> object:
        return {p.stem: p.stat().st_size for p in self.log_dir.glob("*.log")}

    def logs_since(self, mark: object, lines: int = 15) -> dict[str, str]:
        sizes = mark if isinstance(mark, dict) else {}
        out = {}
        for p in sorted(self.log_dir.glob("*.log")):
            try:
                with open(p, "rb") as f:
                    f.seek(sizes.get(p.stem, 0))
                    new = f.read().decode(errors="replace")
            except OSError:
                continue
            if new.strip():
                out[p.stem] = "\n".join(new.splitlines()[-lines:])
        return out

    def _log_tail(self, name: str, lines: int = 10) -> str:
        try:
            return "\n".join((self.log_dir / f"{name}.log").read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> float:
        pid = self._host_pid(name)
        if pid is None:
            raise HalabError(f"{name} is not running on {self.node}: nothing to signal")
        t = time.monotonic()  # the signal goes from this host: it takes effect now
        os.kill(pid, sig)
        return t

    def stop(self, name: str, timeout: float = 10.0) -> None:
        pid = self._host_pid(name)
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        try:
            until(f"{name} to stop on {self.node}", lambda: not self.status(name).active,
                  timeout=timeout, interval=0.02)
        except HalabError:
            pid = self._host_pid(name)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
            until(f"{name} to die on {self.node}", lambda: not self.status(name).active,
                  timeout=5, interval=0.02)

    def restart(self, name: str) -> None:
        self.stop(name)
        self.start(name)
