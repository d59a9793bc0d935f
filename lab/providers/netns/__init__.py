"""The embedded provider: every node is a set of Linux namespaces on this machine.

Layout of a lab named NAME (every object carries the prefix `halab-NAME-`):

    halab-NAME-switch       network namespace holding the bridge br0 (the lab's LAN)
    halab-NAME-<node>       a node's network namespace; its eth1 is a veth into br0.
                            Inside it, PID 1 (tini) owns private PID, mount, UTS and IPC
                            namespaces: /etc and /var overlays, its own /run, sshd.
    halab-NAME-client       the operator's desk: a network namespace only; probes and SSH
                            start here.

No lab namespace has a default route: nothing a node sends can leave the lab's bridge.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from lab.errors import HalabError, LabStateError, PrerequisiteError
from lab.node import Node
from lab.providers.base import Progress, Provider, _quiet
from lab.providers.netns.services import NetnsServices, pid_ns, processes_in
from lab.services import Unit
from lab.system import require_root, require_tools, sh
from lab.timings import span
from lab.topology import SWITCH_BRIDGE, Role, switch_port
from lab.transport import LocalTransport, SshHost, write_ssh_config
from lab.wait import until
from provision import names

INIT_SCRIPT = Path(__file__).with_name("node-init.sh")
BRIDGE = SWITCH_BRIDGE  # named in lab.topology, which refuses node names that collide


def netns_list() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_pids(ns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def add_netns(ns: str) -> None:
    """A network namespace with its loopback up and nothing else: no link, no route."""
    sh(["ip", "netns", "add", ns])
    sh(["ip", "-n", ns, "link", "set", "lo", "up"])


_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def inside(ns: str) -> Iterator[None]:
    """This thread, and every thread and process it starts meanwhile, in network namespace
    ``ns`` (setns moves only the calling thread); back to its own namespace afterwards."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


def remove_netns(ns: str) -> None:
    """Kill what lives in a namespace of ours (by PID), then delete the namespace."""
    for _ in range(50):
        pids = netns_pids(ns)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def each(fn: Callable[[str], object], names: Sequence[str]) -> None:
    """``fn`` for every name at once, one thread each: a node's boot and its sshd are mostly
    waiting (fork, exec, mounts), so the lab's nodes overlap. The first error is raised."""
    if not names:
        return
    with ThreadPoolExecutor(len(names), thread_name_prefix="netns") as pool:
        for _ in pool.map(fn, names):
            pass


def mac_for(address: str) -> str:
    """A stable, locally administered MAC from the IPv4 address: readable in `ip neigh`."""
    return "02:42:" + ":".join(f"{int(o):02x}" for o in address.split("."))


class NetnsProvider(Provider):
    name = "netns"
    # A split brain's heal may leave the client's ARP entry on the other LB until it
    # expires (lab.timing.arp_after_heal, 53 s with Linux's defaults).
    settle_s = 90.0
    # state.json is read, changed and written whole: nodes booting side by side take turns.
    _record_lock = threading.Lock()

    # -- names -----------------------------------------------------------------------------
    def ns(self, node: str) -> str:
        return f"{self.topo.prefix}{node}"

    @property
    def switch(self) -> str:
        return f"{self.topo.prefix}switch"

    def port(self, node: str) -> str:
        return switch_port([n.name for n in self.topo.nodes], node)

    def disk(self, node: str) -> Path:
        return self.state.node_dir(node) / "disk"

    def _init_pid(self, node: str) -> int | None:
        """The host PID of the node's PID 1, if that process is still the node's init."""
        pid = self.state.read().get("nodes", {}).get(node, {}).get("init")
        if not pid:
            return None
        try:
            same_net = (os.stat(f"/proc/{pid}/ns/net").st_ino
                        == os.stat(f"/run/netns/{self.ns(node)}").st_ino)
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if same_net and b"tini" in cmd else None

    def _record_node(self, node: str, **fields: object) -> None:
        with self._record_lock:
            data = self.state.read()
            data.setdefault("nodes", {}).setdefault(node, {}).update(fields)
            self.state.write(data)

    # -- prerequisites ---------------------------------------------------------------------
    def check(self) -> None:
        require_root("the embedded (netns) lab")
        require_tools(self.name)  # the registry, lab/packages.py: what `halab doctor` checks
        if self.topo.kubernetes.control_plane != "standin":
            raise PrerequisiteError(
                "`kubernetes.control_plane: kubeadm` needs real machines with systemd and "
                "internet access (the vagrant provider); the embedded lab runs the API server "
                "stand-in. Set `control_plane: standin` or use `--provider vagrant`.")
        for d in ("/etc", "/var"):
            if str(self.state.dir).startswith(d + "/"):
                raise PrerequisiteError(
                    f"the lab's state folder {self.state.dir} lies under {d}, which every "
                    f"node overlays with its own copy. Move the checkout (or lab.yaml) "
                    f"outside {d} and run again.")

    # -- lifecycle -------------------------------------------------------------------------
    def is_up(self) -> bool:
        data = self.state.read()
        if data.get("provider") != self.name or data.get("phase") != "up":
            return False
        present = set(netns_list())
        return self.switch in present and all(self.ns(n.name) in present
                                              for n in self.topo.nodes)

    def up(self, progress: Progress = _quiet) -> None:
        self.check()
        if self.is_up():
            raise LabStateError(f"lab '{self.topo.name}' is already up; `halab status` shows "
                                "it, `halab down` removes it")
        foreign = [ns for ns in netns_list() if ns.startswith(self.topo.prefix)]
        if foreign and self.state.read().get("provider") != self.name:
            raise LabStateError(
                f"another lab named '{self.topo.name}' runs on this machine (namespaces "
                f"{', '.join(sorted(foreign)[:3])}...), not made from {self.state.dir}. Give "
                "this lab another `name:` in lab.yaml, or remove the other with "
                f"`halab clean` from its folder (or `halab clean -f` this lab file).")
        leftovers = self.clean(self.topo.prefix)
        if leftovers:
            progress(f"removed leftovers of an earlier run: {', '.join(leftovers)}")
        self.state.write({"provider": self.name, "phase": "creating", "lab": self.topo.name,
                          "netns": [], "nodes": {}})
        try:
            self._build(progress)
        except BaseException:
            # Nothing half built stays behind, whatever stopped us (even Ctrl-C).
            self.clean(self.topo.prefix)
            self.state.update(phase="failed")
            raise
        self.state.update(phase="up", since=time.time())

    def _add_ns(self, ns: str) -> None:
        data = self.state.read()
        data["netns"] = [*data.get("netns", []), ns]
        self.state.write(data)  # recorded before it exists: clean finds it even if we die now
        add_netns(ns)

    def _build(self, progress: Progress) -> None:
        with span("keys: the lab's SSH key"):
            key = self.state.ensure_key()
        (self.state.dir / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
        progress("switch: bridge")
        with span("namespaces, links and addresses (every node)"):
            self._add_ns(self.switch)
            sh(["ip", "-n", self.switch, "link", "add", BRIDGE, "type", "bridge"])
            sh(["ip", "-n", self.switch, "link", "set", BRIDGE, "up"])
            iface, plen = self.topo.network.interface, self.topo.prefixlen
            for n in self.topo.nodes:
                progress(f"{n.name}: namespaces and link")
                ns = self.ns(n.name)
                self._add_ns(ns)
                sh(["ip", "link", "add", iface, "address", mac_for(str(n.address)), "netns",
                    ns, "type", "veth", "peer", "name", self.port(n.name), "netns",
                    self.switch])
                sh(["ip", "-n", self.switch, "link", "set", self.port(n.name), "master",
                    BRIDGE, "up"])
                sh(["ip", "-n", ns, "addr", "add", f"{n.address}/{plen}", "dev", iface])
                sh(["ip", "-n", ns, "link", "set", iface, "up"])
        hosts = "".join(f"{n.address} {n.name}\n" for n in self.topo.nodes)
        machines = [n.name for n in self._machines()]

        def disk_and_sshd(name: str) -> None:
            disk = self.disk(name)
            disk.mkdir(parents=True, exist_ok=True)
            (disk / "hosts").write_text(hosts)
            self._write_sshd(name, str(self.topo.node(name).address))

        with span("host keys and sshd configs (every node)"):
            each(disk_and_sshd, machines)
        self._write_ssh_config()

        def boot(name: str) -> None:
            progress(f"{name}: boot")
            with span(f"boot {name}"):
                # sshd only: provisioning, next, starts every daemon in the order the lab
                # needs (masters listening before the load balancers start), which a disk
                # kept from an earlier run would otherwise start all at once.
                self._boot(name, units=False)
            progress(f"{name}: waiting for sshd")
            with span(f"sshd on {name} answers"):
                self._wait_ssh(str(self.topo.node(name).address), name)

        each(boot, machines)

    def _machines(self) -> list:
        return [n for n in self.topo.nodes if Role.CLIENT not in n.roles]

    def _write_sshd(self, node: str, address: str) -> None:
        d = self.state.node_dir(node)
        hostkey = self.state.host_key(node)  # halab's, so known_hosts can pin it
        (d / "sshd_config").write_text(
            f"# sshd of lab node {node} (halab)\n"
            f"ListenAddress {address}\n"
            f"HostKey {hostkey}\n"
            f"AuthorizedKeysFile {self.state.dir / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            # No PAM stack in a namespace node; and the key file lives in the lab's state
            # folder, whose owner and modes sshd's StrictModes would second-guess.
            "UsePAM no\n"
            "StrictModes no\n"
            "UseDNS no\n"
            "PrintMotd no\n"
            "PidFile none\n"
            "Subsystem sftp /usr/lib/openssh/sftp-server\n"
        )

    def _boot(self, node: str, units: bool = True) -> None:
        """Start the node's PID 1 in fresh PID/mount/UTS/IPC namespaces, then sshd and (with
        ``units``) every other daemon installed on it, as a machine's boot does."""
        logs = self.state.logs(node)
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / "init.log", "ab") as log:
            p = subprocess.Popen(
                ["ip", "netns", "exec", self.ns(node),
                 "unshare", "--pid", "--fork", "--mount", "--uts", "--ipc", "--mount-proc",
                 "--propagation", "private", "--",
                 "tini", "--", "/bin/sh", str(INIT_SCRIPT), node, str(self.disk(node))],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )

        def init_child() -> int | None:
            if p.poll() is not None:
                raise HalabError(f"{node}'s init exited {p.returncode}; see {logs}/init.log")
            kids = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
            return int(kids[0]) if kids else None

        init = until(f"{node}'s PID 1", init_child, timeout=10, interval=0.01)
        self._record_node(node, init=init, unshare=p.pid)
        root = Path(f"/proc/{init}/root")
        until(f"{node}'s namespaces to be ready", lambda: (root / "run/halab/ready").exists()
              or p.poll() is not None, timeout=15, interval=0.01)
        if p.poll() is not None:
            raise HalabError(f"{node}'s init exited {p.returncode}; see {logs}/init.log")
        svc = self._services(node)
        svc.install(Unit(names.SSH_UNIT, ("/usr/sbin/sshd", "-D", "-e", "-f",
                                 str(self.state.node_dir(node) / "sshd_config")),
                         "OpenBSD Secure Shell server", ("/run/sshd",)))
        # Like systemd at boot: every enabled unit, sshd first so the node can be reached.
        for name in [names.SSH_UNIT,
                     *[u for u in svc.installed() if u != names.SSH_UNIT and units]]:
            svc.start(name)

    def _wait_ssh(self, address: str, node: str) -> None:
        client = self.ns(self.topo.client.name)
        until(f"sshd on {node} ({address}:22)", lambda: subprocess.run(
            ["ip", "netns", "exec", client, "nc", "-z", "-w", "1", address, "22"],
            capture_output=True).returncode == 0, timeout=20, interval=0.05)

    def _write_ssh_config(self) -> None:
        proxy = f"ip netns exec {self.ns(self.topo.client.name)} nc %h %p"
        write_ssh_config(self.state.ssh_config, self.state.known_hosts, [
            SshHost(n.name, str(n.address), self.state.key, proxy,
                    self.state.host_key(n.name).with_suffix(".pub").read_text())
            for n in self._machines()])

    def down(self) -> None:
        require_root("removing the embedded (netns) lab")
        self.clean(self.topo.prefix)
        if self.state.exists():
            self.state.update(phase="down", nodes={}, netns=[])

    @classmethod
    def clean(cls, prefix: str) -> list[str]:
        removed = []
        for ns in netns_list():
            if ns.startswith(prefix):
                remove_netns(ns)
                removed.append(ns)
        return removed

    # -- nodes -----------------------------------------------------------------------------
    def _services(self, name: str) -> NetnsServices:
        return NetnsServices(name, lambda: self._init_pid(name), self.state.logs(name))

    def node(self, name: str) -> Node:
        spec = self.topo.node(name)
        if Role.CLIENT in spec.roles:
            return Node(spec, LocalTransport(["ip", "netns", "exec", self.ns(name)], name),
                        None, None)
        from lab.transport import FabricTransport

        return Node(spec, FabricTransport(name, self.state.ssh_config), self._services(name),
                    self.state.ssh_config)

    def exec(self, name: str, argv: Sequence[str], interactive: bool = False) -> int:
        spec = self.topo.node(name)
        if Role.CLIENT in spec.roles:
            prefix = ["ip", "netns", "exec", self.ns(name)]
        else:
            init = self._init_pid(name)
            if init is None:
                raise LabStateError(f"{name} is not running; `halab status` shows the lab")
            prefix = ["nsenter", "-t", str(init), "-n", "-p", "-m", "-u", "-i", "--wd=/"]
        return subprocess.run([*prefix, *argv]).returncode

    def client_netns(self) -> str | None:
        return self.ns(self.topo.client.name)

    def wire(self) -> tuple[str | None, str]:
        # Every node's veth is a port of this bridge: on it, every frame of the lab passes.
        return self.switch, BRIDGE

    # -- faults ----------------------------------------------------------------------------
    def _port_cmd(self, name: str, updown: str) -> None:
        sh(["ip", "-n", self.switch, "link", "set", self.port(name), updown])

    def link_down(self, name: str) -> None:
        self._port_cmd(name, "down")

    def link_up(self, name: str) -> None:
        self._port_cmd(name, "up")

    def link_is_up(self, name: str) -> bool:
        out = sh(["ip", "-n", self.switch, "-o", "link", "show", self.port(name)]).stdout
        flags = out.split("<", 1)[1].split(">", 1)[0].split(",") if "<" in out else []
        return "UP" in flags

    def crash(self, name: str) -> None:
        self.link_down(name)
        init = self._init_pid(name)
        if init is not None:
            os.kill(init, signal.SIGKILL)  # the kernel ends the whole PID namespace with it
            until(f"{name} to die", lambda: self._init_pid(name) is None, timeout=5)
        self._record_node(name, init=None)

    def boot(self, name: str) -> None:
        if self._init_pid(name) is None:
            self._boot(name)
        self.link_up(name)

    def _signal_all(self, name: str, sig: signal.Signals) -> list[int]:
        init = self._init_pid(name)
        ns = pid_ns(init) if init else None
        if ns is None:
            raise LabStateError(f"{name} is not running")
        signalled = []
        for hostpid in processes_in(ns).values():
            try:
                os.kill(hostpid, sig)
            except ProcessLookupError:
                # Gone between the listing and the signal (a check script, an SSH session
                # ending): nothing left of it to stop or continue. Seen under a parallel
                # suite, where the moment between the two is longer.
                continue
            signalled.append(hostpid)
        return signalled

    def _until_stopped(self, name: str, pids: list[int], stopped: bool) -> None:
        """A signal takes effect when its process next runs: until then a "frozen" node
        still answers, and a node_state() of "running" would send the harness to ask it
        over SSH just before its sshd stops (a channel that never opens). Seen under the
        sabotage suite on a loaded machine."""
        def done(pid: int) -> bool:
            try:
                state = Path(f"/proc/{pid}/status").read_text().split("State:\t", 1)[1][0]
            except (OSError, IndexError):
                return True  # gone
            return (state == "T") == stopped

        until(f"{name} to {'freeze' if stopped else 'thaw'}",
              lambda: all(done(p) for p in pids), timeout=5, interval=0.005)

    def freeze(self, name: str) -> None:
        self._until_stopped(name, self._signal_all(name, signal.SIGSTOP), stopped=True)

    def thaw(self, name: str) -> None:
        self._until_stopped(name, self._signal_all(name, signal.SIGCONT), stopped=False)

    def node_state(self, name: str) -> str:
        if self.ns(name) not in netns_list():
            return "absent"
        if Role.CLIENT in self.topo.node(name).roles:
            return "running"
        init = self._init_pid(name)
        if init is None:
            return "crashed"
        st = Path(f"/proc/{init}/status").read_text()
        if "State:\tT" in st:
            return "frozen"
        if not self.link_is_up(name):
            return "link-down"
        return "running"
