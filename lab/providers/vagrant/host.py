"""The machine that runs the VMs: a libvirt of the lab's own, or this machine's.

Isolated (tests, CI, machines whose traffic must stay in the lab): a network namespace
`halab-<lab>-host` with a private mount namespace in which /etc/libvirt, /run/libvirt,
/var/lib/libvirt, /var/log/libvirt and /var/cache/libvirt are folders of the lab's state.
virtlogd and libvirtd run there, so do dnsmasq, qemu and vagrant: every bridge, lease,
domain definition and disk the lab makes lives in its own namespace and folder, and
`halab clean` removes it all by killing the namespace's processes and deleting the folder.
libvirt-python reaches that libvirtd through its socket in the state folder.

System (a user's own workstation): qemu:///system as it is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from lab.errors import HalabError
from lab.wait import until

PRIVATE_DIRS = ("etc", "run", "lib", "log", "cache")
MOUNTS = {"etc": "/etc/libvirt", "run": "/run/libvirt", "lib": "/var/lib/libvirt",
          "log": "/var/log/libvirt", "cache": "/var/cache/libvirt"}


def system_libvirt_running() -> bool:
    sock = Path("/run/libvirt/libvirt-sock")
    if not sock.exists():
        return False
    import socket

    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(str(sock))
        return True
    except OSError:
        return False
    finally:
        s.close()


class IsolatedHost:
    def __init__(self, netns: str, root: Path) -> None:
        self.netns = netns
        self.root = root  # the lab's vagrant folder

    @property
    def libvirt_dir(self) -> Path:
        return self.root / "libvirt"

    @property
    def socket(self) -> Path:
        return self.libvirt_dir / "run" / "libvirt-sock"

    @property
    def uri(self) -> str:
        """For this process (root namespace): the private libvirtd's socket."""
        return f"qemu:///system?socket={self.socket}"

    # vagrant runs inside the host's namespaces, where the socket is at its usual place.
    guest_uri = "qemu:///system"

    def _pid_file(self, name: str) -> Path:
        return self.root / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        try:
            pid = int(self._pid_file(name).read_text())
            os.kill(pid, 0)
            if os.stat(f"/proc/{pid}/ns/net").st_ino != os.stat(
                    f"/run/netns/{self.netns}").st_ino:
                return None
            return pid
        except (OSError, ValueError):
            return None

    def enter(self) -> list[str]:
        """The prefix that runs a command inside the host (network + mount namespaces)."""
        init = self.pid("init")
        if init is None:
            raise HalabError(f"the lab's libvirt host ({self.netns}) is not running; "
                             "`halab up --provider vagrant` starts it")
        return ["nsenter", "-t", str(init), "-n", "-m"]

    def start(self) -> None:
        for d in PRIVATE_DIRS:
            (self.libvirt_dir / d).mkdir(parents=True, exist_ok=True)
        etc = self.libvirt_dir / "etc"
        if not (etc / "libvirtd.conf").exists():
            shutil.copytree("/etc/libvirt", etc, dirs_exist_ok=True)
            # The lab's own qemu runs as root: its disks live in the lab's state folder,
            # wherever the checkout is, and no other VM shares this libvirtd.
            with open(etc / "qemu.conf", "a") as f:
                f.write('\n# halab: private libvirtd of one lab\nuser = "root"\ngroup = "root"\n'
                        'security_driver = "none"\n')
        subprocess.run(["ip", "netns", "add", self.netns], check=True, capture_output=True)
        subprocess.run(["ip", "-n", self.netns, "link", "set", "lo", "up"], check=True)
        mounts = " && ".join(f"mount --bind {self.libvirt_dir / d} {MOUNTS[d]}"
                             for d in PRIVATE_DIRS)
        log = open(self.root / "host.log", "ab")
        p = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "unshare", "--mount", "--propagation", "private",
             "--", "/bin/sh", "-c", f"mkdir -p {' '.join(MOUNTS.values())} && {mounts} && "
             "exec sleep infinity"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        self._pid_file("init").write_text(str(p.pid))
        until("the libvirt host's namespaces", lambda: self._mounted(p.pid), timeout=10,
              interval=0.05)
        for daemon in ("virtlogd", "libvirtd"):
            # Their PID files in the private /run/libvirt: no clash with a system libvirtd.
            dp = subprocess.Popen([*self.enter(), daemon, "--pid-file",
                                   f"/run/libvirt/{daemon}.pid"], stdin=subprocess.DEVNULL,
                                  stdout=log, stderr=log, start_new_session=True)
            self._pid_file(daemon).write_text(str(dp.pid))
        until(f"libvirtd's socket {self.socket}", self.socket.exists, timeout=30)

    def _mounted(self, pid: int) -> bool:
        try:
            return "/var/cache/libvirt" in Path(f"/proc/{pid}/mounts").read_text()
        except OSError:
            raise HalabError(
                f"the libvirt host namespace died; see {self.root / 'host.log'}") from None

    def running(self) -> bool:
        return all(self.pid(n) is not None for n in ("init", "libvirtd"))
