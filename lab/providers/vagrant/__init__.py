"""The VM provider: one libvirt VM per node, from the top-level Vagrantfile and lab.yaml.

python-vagrant drives the lifecycle (up, status, destroy); libvirt-python does what only
the hypervisor can: power cut, freeze, a NIC's link state, domain state. The client is not
a VM: it is the machine running the VMs (its lab bridge carries the client's address), in
the isolated mode a namespace of the lab's own. Nodes are reached exactly as in the
embedded lab: SSH as root with the lab's key, to their lab address, from the client.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab.errors import HalabError, LabStateError, PrerequisiteError
from lab.node import Node
from lab.providers.base import Progress, Provider, _quiet
from lab.providers.netns import netns_list, remove_netns
from lab.providers.systemd import SystemdServices
from lab.providers.vagrant import spec as vspec
from lab.providers.vagrant.host import IsolatedHost, system_libvirt_running
from lab.system import require_root, require_tools
from lab.topology import Role
from lab.transport import FabricTransport, LocalTransport, SshHost, write_ssh_config
from lab.wait import until

REPO_VAGRANTFILE = Path(__file__).resolve().parents[3] / "Vagrantfile"
TCG_WRAPPER = """#!/bin/sh
# QEMU's TCG translation cache defaults to 1 GiB per VM: cap it so that a 512 MiB guest
# costs ~450 MB of host memory instead of ~1.5 GB (libvirt passes `-accel tcg`).
for a do shift; [ "$prev" = "-accel" ] && [ "$a" = "tcg" ] && a="tcg,tb-size=128"
  set -- "$@" "$a"; prev="$a"; done
exec /usr/bin/qemu-system-x86_64 "$@"
"""
VIR_DOMAIN_RUNNING, VIR_DOMAIN_PAUSED = 1, 3


class VagrantProvider(Provider):
    name = "vagrant"
    settle_s = 300.0  # a crashed VM boots again in ~60 s under TCG, then its daemons start

    # -- places --------------------------------------------------------------------------
    @property
    def dir(self) -> Path:
        return self.state.dir / "vagrant"

    @property
    def mode(self) -> str:
        recorded = self.state.read().get("libvirt")
        if recorded:
            return recorded
        want = self.topo.vagrant.libvirt
        if want == "auto":
            return "system" if system_libvirt_running() else "isolated"
        return want

    @property
    def host(self) -> IsolatedHost:
        return IsolatedHost(f"{self.topo.prefix}host", self.dir)

    def _uri(self) -> str:
        return self.host.uri if self.mode == "isolated" else "qemu:///system"

    _conn_lock = threading.Lock()

    def _conn(self):  # noqa: ANN202 - libvirt.virConnect
        """One connection to the lab's libvirtd, kept while it lives: the VIP watch asks
        for node states several times a second, and a connection per question would load
        a libvirtd that already shares two cores with five emulated VMs."""
        import libvirt

        libvirt.registerErrorHandler(lambda *_: None, None)  # errors come as exceptions
        with self._conn_lock:
            conn = getattr(self, "_cached_conn", None)
            if conn is not None:
                try:
                    if conn.isAlive():
                        return conn
                except libvirt.libvirtError:
                    pass
            try:
                conn = libvirt.open(self._uri())
            except libvirt.libvirtError as e:
                raise LabStateError(f"cannot reach the lab's libvirt ({self._uri()}): {e}; "
                                    "is the lab up? `halab status`") from None
            self._cached_conn = conn
            return conn

    def _domain(self, name: str):  # noqa: ANN202
        import libvirt

        try:
            return self._conn().lookupByName(f"{self.topo.prefix}{name}")
        except libvirt.libvirtError:
            raise LabStateError(f"{name} has no VM; `halab up --provider vagrant`") from None

    def vagrant_env(self) -> dict[str, str]:
        """What vagrant needs to see this lab's VMs: halab's own runs and a person's
        `vagrant status` in the checkout (the Vagrantfile re-runs it with these) alike."""
        return {
            vspec.SPEC_ENV: str(self.dir / "spec.json"),
            "VAGRANT_DOTFILE_PATH": str(self.dir / "dotvagrant"),
            "VAGRANT_DEFAULT_PROVIDER": "libvirt",
            "VAGRANT_CHECKPOINT_DISABLE": "1",
        }

    @property
    def vagrant_exe(self) -> str:
        # Isolated: a wrapper that runs vagrant inside the lab's libvirt host (written by up).
        return str(self.dir / "bin" / "vagrant") if self.mode == "isolated" else "vagrant"

    def spec(self, driver: str, public_key: str) -> dict[str, Any]:
        """lab.yaml resolved for the Vagrantfile, with this lab's places on this machine."""
        uri = self.host.guest_uri if self.mode == "isolated" else "qemu:///system"
        return vspec.build(self.topo, driver=driver, uri=uri, pool_path=self.dir / "pool",
                           emulator=self.dir / "bin" / "qemu-tcg" if driver == "qemu" else None,
                           public_key=public_key, serial_dir=self.dir / "serial",
                           private_key=self.state.key,
                           host_keys={n.name: self.state.host_key_path(n.name)
                                      for n in vspec.vm_nodes(self.topo)})

    def for_vagrantfile(self, lab_file: Path) -> dict[str, Any]:
        """What the top-level Vagrantfile needs when a person runs vagrant in the checkout.

        A lab that is up: its spec, and the vagrant command and environment halab uses, so
        that `vagrant status` and `vagrant ssh NODE` see the same machines (the Vagrantfile
        re-runs itself with them). Otherwise a spec resolved now, for `vagrant validate`
        and `vagrant status`, and why nothing more can be done."""
        spec_file = self.dir / "spec.json"
        if self.is_up() and spec_file.exists():
            return {"lab": self.topo.name, "up": True, "exe": self.vagrant_exe,
                    "env": {**self.vagrant_env(), "HALAB_VAGRANT_SSH": "lab"},
                    "spec": json.loads(spec_file.read_text())}
        driver, _ = vspec.detect_driver(self.topo.vagrant.driver)
        pub = self.state.key.with_suffix(".pub")
        data = self.state.read()
        if data.get("phase") == "up" and data.get("provider") not in (None, self.name):
            why = (f"lab '{self.topo.name}' is up with the {data['provider']} provider: its "
                   f"nodes are not VMs (`halab ssh NODE -f {lab_file}`)")
        elif data.get("phase") == "up" and self.mode == "isolated":
            why = (f"lab '{self.topo.name}' is recorded as up but its libvirt host "
                   f"({self.host.netns}) is not running (a reboot, or killed): `halab clean "
                   f"-f {lab_file}` removes what is left, then `halab up --provider vagrant "
                   f"-f {lab_file}` makes it again")
        else:
            why = (f"lab '{self.topo.name}' is not up with the vagrant provider; `halab up "
                   f"--provider vagrant -f {lab_file}` brings it up (it starts the lab's "
                   "libvirt, writes the spec and the SSH key, then runs vagrant)")
        return {"lab": self.topo.name, "up": False, "message": why,
                "spec": self.spec(driver, pub.read_text() if pub.exists() else "")}

    def _vagrant(self, log: Path | None = None):  # noqa: ANN202 - vagrant.Vagrant
        import vagrant

        env = {**os.environ, **self.vagrant_env(), "VAGRANT_NO_COLOR": "1"}
        kw: dict[str, Any] = {"root": str(REPO_VAGRANTFILE.parent), "env": env,
                              "quiet_stdout": log is None, "quiet_stderr": log is None}
        if log is not None:
            kw["out_cm"] = kw["err_cm"] = vagrant.make_file_cm(str(log), mode="a")
        v = vagrant.Vagrant(**kw)
        if self.mode == "isolated":
            # python-vagrant has no setting for the executable: ours runs vagrant inside the
            # lab's libvirt host (network + mount namespaces).
            v._vagrant_exe = self.vagrant_exe
        return v

    # -- prerequisites ---------------------------------------------------------------------
    def check(self) -> None:
        require_root("the VM lab (libvirt)")
        require_tools(self.name)  # the registry, lab/packages.py: what `halab doctor` checks
        try:
            import libvirt  # noqa: F401
            import vagrant  # noqa: F401
        except ImportError as e:
            raise PrerequisiteError(
                f"the Python module {e.name} is missing; `make setup-vagrant` installs the VM "
                "provider's packages (python-vagrant, libvirt-python)") from None
        boxes = {n.vm.box or self.topo.vagrant.box for n in vspec.vm_nodes(self.topo)}
        listed = subprocess.run(["vagrant", "box", "list"], capture_output=True, text=True,
                                env={**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1"}).stdout
        missing = [b for b in boxes if not any(line.split()[0] == b
                                              for line in listed.splitlines() if line.split())]
        if missing:
            raise PrerequisiteError(
                f"vagrant has no box {', '.join(missing)}; `make box` builds halab/debian12 "
                "from Debian packages (no download), or name a box you have in lab.yaml "
                "(`vagrant: {box: ...}`).")
        if self.mode == "system":
            self._check_subnet_free()

    def _check_subnet_free(self) -> None:
        """On a workstation's own libvirt the lab bridge lands in this host's namespace."""
        out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True,
                             text=True).stdout
        import ipaddress

        net = self.topo.network.subnet
        for line in out.splitlines():
            parts = line.split()
            iface, cidr = parts[1], parts[3]
            if iface.startswith("virbr") and f"{self.topo.prefix}" in iface:
                continue
            if ipaddress.ip_interface(cidr).network.overlaps(net):
                raise PrerequisiteError(
                    f"the lab subnet {net} is already in use on this machine ({iface} has "
                    f"{cidr}). Give the lab another `network.subnet` (and addresses) in "
                    "lab.yaml, or free that interface.")

    # -- lifecycle -------------------------------------------------------------------------
    def is_up(self) -> bool:
        data = self.state.read()
        if data.get("provider") != self.name or data.get("phase") != "up":
            return False
        return self.mode == "system" or self.host.running()

    def up(self, progress: Progress = _quiet) -> None:
        self.check()
        if self.is_up():
            raise LabStateError(f"lab '{self.topo.name}' is already up; `halab down` first")
        self.clean(self.topo.prefix)
        shutil.rmtree(self.dir, ignore_errors=True)
        driver, why = vspec.detect_driver(self.topo.vagrant.driver)
        progress(f"libvirt driver: {driver} ({why})")
        self.state.write({"provider": self.name, "phase": "creating", "lab": self.topo.name,
                          "libvirt": self.mode, "driver": driver})
        try:
            self._build(driver, progress)
        except BaseException:
            self._teardown()
            self.state.update(phase="failed")
            raise
        self.state.update(phase="up", since=time.time())

    def _build(self, driver: str, progress: Progress) -> None:
        key = self.state.ensure_key()
        for n in vspec.vm_nodes(self.topo):
            # Made here, installed by the Vagrantfile's node_setup over vagrant's own channel
            # (the management network): the first connection halab makes is checked too.
            self.state.host_key(n.name)
        for d in ("bin", "pool", "serial", "logs", "dotvagrant"):
            (self.dir / d).mkdir(parents=True, exist_ok=True)
        if self.mode == "system":
            # The machine's libvirt runs qemu as its own user (libvirt-qemu), which must
            # reach the VMs' disks in the pool through the 0700 state folders: search
            # only (x), never list, read or write. The isolated libvirt runs qemu as root.
            for d in (self.state.dir.parent, self.state.dir, self.dir, self.dir / "pool"):
                d.chmod(stat.S_IMODE(d.stat().st_mode) | 0o011)
        spec = self.spec(driver, key.with_suffix(".pub").read_text())
        if spec["emulator"]:
            emulator = Path(spec["emulator"])
            emulator.write_text(TCG_WRAPPER)
            emulator.chmod(0o755)
        if self.mode == "isolated":
            progress(f"libvirt host: namespace {self.host.netns}, private libvirtd")
            self.host.start()
            # vagrant (and the ssh it runs) inside the host's namespaces, via PATH.
            wrapper = self.dir / "bin" / "vagrant"
            # Entering a mount namespace resets the working directory: keep the caller's.
            wrapper.write_text("#!/bin/sh\nexec " + shlex.join(self.host.enter())
                               + " --wd=\"$PWD\" /usr/bin/vagrant \"$@\"\n")
            wrapper.chmod(0o755)
        (self.dir / "spec.json").write_text(json.dumps(spec, indent=2))
        self._make_pool(spec["storage_pool"])
        names = [n["name"] for n in spec["nodes"]]
        # The first VM alone: it creates the networks and uploads the box into the pool;
        # then the rest in parallel, as many at a time as there are cores (under TCG each
        # booting VM keeps a core busy).
        batch = max(1, os.cpu_count() or 1)
        groups = [names[:1]] + [names[i:i + batch] for i in range(1, len(names), batch)]
        for group in groups:
            self._up_group(group, progress)
        self._write_ssh_config()
        for n in vspec.vm_nodes(self.topo):
            progress(f"{n.name}: waiting for sshd on {n.address}")
            self._wait_ssh(str(n.address), n.name, timeout=120)

    def _make_pool(self, pool: dict) -> None:
        conn = self._conn()
        xml = (f"<pool type='dir'><name>{pool['name']}</name><target><path>{pool['path']}"
               "</path></target></pool>")
        conn.storagePoolCreateXML(xml, 0)  # transient: gone with this libvirtd

    def _up_group(self, group: list[str], progress: Progress) -> None:
        errors: dict[str, str] = {}

        def one(name: str) -> None:
            t0 = time.monotonic()
            log = self.dir / "logs" / f"{name}.log"
            progress(f"{name}: vagrant up (log: {log})")
            try:
                self._vagrant(log).up(vm_name=name, provider="libvirt")
                progress(f"{name}: up in {time.monotonic() - t0:.0f} s")
            except Exception as e:  # noqa: BLE001 - reported below with the log's tail
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-12:]) \
                    if log.exists() else ""
                errors[name] = f"{e}\n{tail}"

        threads = [threading.Thread(target=one, args=(n,)) for n in group]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise HalabError("vagrant up failed for " + ", ".join(errors) + ":\n"
                             + "\n".join(f"--- {k}: {v}" for k, v in errors.items()))

    def _client_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.host.netns] if self.mode == "isolated" else []

    def _write_ssh_config(self) -> None:
        proxy = None
        if self.mode == "isolated":
            proxy = f"ip netns exec {self.host.netns} nc %h %p"
        # The host keys halab made and node_setup installed (spec.json names them).
        write_ssh_config(self.state.ssh_config, self.state.known_hosts, [
            SshHost(n.name, str(n.address), self.state.key, proxy,
                    self.state.host_key(n.name).with_suffix(".pub").read_text())
            for n in vspec.vm_nodes(self.topo)])

    def _wait_ssh(self, address: str, node: str, timeout: float) -> None:
        until(f"sshd on {node} ({address}:22)", lambda: subprocess.run(
            [*self._client_prefix(), "nc", "-z", "-w", "1", address, "22"],
            capture_output=True).returncode == 0, timeout=timeout, interval=0.5)

    def down(self) -> None:
        require_root("removing the VM lab")
        if self.state.read().get("provider") == self.name and (self.dir / "spec.json").exists():
            try:
                self._vagrant(self.dir / "logs" / "destroy.log").destroy()
            except Exception:  # noqa: BLE001 - the teardown below removes what is left
                pass
        self._teardown()
        if self.state.exists():
            self.state.update(phase="down")

    def _teardown(self) -> None:
        self.clean(self.topo.prefix)
        shutil.rmtree(self.dir / "libvirt", ignore_errors=True)
        shutil.rmtree(self.dir / "pool", ignore_errors=True)
        shutil.rmtree(self.dir / "dotvagrant", ignore_errors=True)

    @staticmethod
    def _undefine_system(prefix: str) -> list[str]:
        """A workstation's libvirt: destroy and undefine the lab's domains, networks, pool."""
        try:
            import libvirt
        except ImportError:
            return []
        if not system_libvirt_running():
            return []
        libvirt.registerErrorHandler(lambda *_: None, None)
        conn = libvirt.open("qemu:///system")
        gone = []
        for dom in conn.listAllDomains():
            if dom.name().startswith(prefix):
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                                  | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                                  | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
                gone.append(dom.name())
        for pool in conn.listAllStoragePools():
            if pool.name().startswith(prefix):
                for vol in pool.listAllVolumes():
                    vol.delete()
                if pool.isActive():
                    pool.destroy()
                if pool.isPersistent():
                    pool.undefine()
                gone.append(pool.name())
        for net in conn.listAllNetworks():
            if net.name().startswith(prefix):
                if net.isActive():
                    net.destroy()
                if net.isPersistent():
                    net.undefine()
                gone.append(net.name())
        return gone

    @classmethod
    def clean(cls, prefix: str) -> list[str]:
        """The isolated host is a namespace of the lab's: killing its processes (libvirtd,
        qemu, dnsmasq, vagrant) and deleting it removes every VM; its libvirt state lives in
        the lab's folder, which `halab clean` deletes."""
        removed = cls._undefine_system(prefix)
        for ns in netns_list():
            if ns.startswith(prefix) and ns.endswith("-host"):
                remove_netns(ns)
                removed.append(ns)
        return removed

    # -- nodes -----------------------------------------------------------------------------
    def node(self, name: str) -> Node:
        spec = self.topo.node(name)
        if Role.CLIENT in spec.roles:
            return Node(spec, LocalTransport(self._client_prefix(), name), None, None)
        transport = FabricTransport(name, self.state.ssh_config)
        return Node(spec, transport, SystemdServices(name, transport), self.state.ssh_config)

    def exec(self, name: str, argv: Sequence[str], interactive: bool = False) -> int:
        spec = self.topo.node(name)
        if Role.CLIENT in spec.roles:
            return subprocess.run([*self._client_prefix(), *argv]).returncode
        tty = ["-t"] if interactive else []
        return subprocess.run(["ssh", "-F", str(self.state.ssh_config), *tty, name, "--",
                               shlex.join(argv)]).returncode

    def client_netns(self) -> str | None:
        return self.host.netns if self.mode == "isolated" else None

    def wire(self) -> tuple[str | None, str]:
        """The lab network's bridge, whose ports are the VMs' lab NICs (tap devices) and
        which carries the client's address. libvirt named it when vagrant-libvirt created
        the network (virbrN): ask libvirt. It lives where libvirtd runs: the isolated
        host's namespace, or this host's own on a workstation's libvirt.
        Not yet verified on a running VM lab."""
        import libvirt

        try:
            bridge = self._conn().networkLookupByName(f"{self.topo.prefix}lan").bridgeName()
        except libvirt.libvirtError as e:
            raise LabStateError(f"the lab network {self.topo.prefix}lan is not there ({e}); "
                                "is the lab up? `halab status`") from None
        return self.client_netns(), bridge

    # -- faults through the hypervisor ---------------------------------------------------
    def _lan_interface_xml(self, dom) -> str:  # noqa: ANN001
        import xml.etree.ElementTree as ET

        root = ET.fromstring(dom.XMLDesc(0))
        lan = f"{self.topo.prefix}lan"
        for iface in root.findall("./devices/interface"):
            src = iface.find("source")
            if src is not None and src.get("network") == lan:
                return ET.tostring(iface, encoding="unicode")
        raise HalabError(f"{dom.name()} has no NIC on the lab network {lan}")

    def _set_link(self, name: str, state: str) -> None:
        import xml.etree.ElementTree as ET

        import libvirt

        dom = self._domain(name)
        iface = ET.fromstring(self._lan_interface_xml(dom))
        link = iface.find("link")
        if link is None:
            link = ET.SubElement(iface, "link")
        link.set("state", state)
        dom.updateDeviceFlags(ET.tostring(iface, encoding="unicode"),
                              libvirt.VIR_DOMAIN_AFFECT_LIVE)

    def link_down(self, name: str) -> None:
        self._set_link(name, "down")

    def link_up(self, name: str) -> None:
        self._set_link(name, "up")

    def link_is_up(self, name: str) -> bool:
        import xml.etree.ElementTree as ET

        iface = ET.fromstring(self._lan_interface_xml(self._domain(name)))
        link = iface.find("link")
        return link is None or link.get("state", "up") == "up"

    def crash(self, name: str) -> None:
        self._domain(name).destroy()  # libvirt's word for pulling the power cord

    def boot(self, name: str) -> None:
        dom = self._domain(name)
        if not dom.isActive():
            dom.create()
        if not self.link_is_up(name):
            self.link_up(name)
        self._wait_ssh(str(self.topo.node(name).address), name, timeout=300)

    def freeze(self, name: str) -> None:
        self._domain(name).suspend()

    def thaw(self, name: str) -> None:
        self._domain(name).resume()

    def node_state(self, name: str) -> str:
        spec = self.topo.node(name)
        if Role.CLIENT in spec.roles:
            ok = self.mode == "system" or self.host.netns in netns_list()
            return "running" if ok else "absent"
        try:
            dom = self._domain(name)
        except LabStateError:
            return "absent"
        state = dom.state()[0]
        if state == VIR_DOMAIN_PAUSED:
            return "frozen"
        if state != VIR_DOMAIN_RUNNING:
            return "crashed"
        return "running" if self.link_is_up(name) else "link-down"
