"""Every external command halab and its nodes run, and the Debian package that ships it.

The one list of what a machine needs: `scripts/setup-debian.sh` installs from it,
`halab doctor` and the providers' checks (`halab up`) test it, `box/build.sh` puts the VM
nodes' part into the box. Packages were confirmed with `dpkg -S` on Debian 12.

This module must run with the system's plain `python3` before any virtualenv exists
(setup-debian.sh calls `python3 -m lab.packages`): standard library only, no import of
the rest of halab.

Scopes (where a command runs, and for what):

    netns      the embedded lab: the harness on this machine, and the nodes, which run this
               machine's own binaries (their /etc and /var are overlays of this machine's)
    vagrant    the VM lab's host side: vagrant, libvirt, qemu, the box build, libvirt-python
    guest      inside a VM node: baked into the box by box/build.sh
    tests      what only the test suite runs on this machine (`make test` installs it,
               `make setup` does not): the headless browser of the web page's test
    ci         what `.ci/run` needs on the CI machine to build a pristine Debian root

Not here: what the kubeadm control plane installs inside its VMs (containerd, kubeadm,
from the network: provision/kubeadm.py's own steps).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

SCOPES = ("netns", "vagrant", "guest", "tests", "ci")
# What `halab up --provider P` and `halab doctor --provider P` check.
PROVIDERS = ("netns", "vagrant")


@dataclass(frozen=True)
class Need:
    """One command (a name looked up on PATH, or an absolute path, glob allowed) and its
    package. ``why`` is what breaks without it: it is what `halab doctor` prints."""

    command: str
    package: str
    why: str
    scopes: frozenset[str]
    label: str = ""  # how a person calls it, where the command is a path
    # Other commands of the same package that halab runs: covered by this entry (the
    # package is all or nothing), not checked one by one.
    also: tuple[str, ...] = ()

    @property
    def is_path(self) -> bool:
        return self.command.startswith("/")

    @property
    def name(self) -> str:
        return self.label or os.path.basename(self.command)


def _need(command: str, package: str, why: str, *scopes: str, label: str = "",
          also: tuple[str, ...] = ()) -> Need:
    unknown = set(scopes) - set(SCOPES)
    assert not unknown, f"unknown scope {unknown} for {command}"
    return Need(command, package, why, frozenset(scopes), label, also)


NEEDS: tuple[Need, ...] = (
    # -- the harness itself: a virtualenv with the project ------------------------------------
    _need("python3", "python3", "the harness (make setup's virtualenv)", "netns", "vagrant"),
    _need("/usr/lib/python3*/ensurepip/__init__.py", "python3-venv",
          "`python3 -m venv` in make setup", "netns", "vagrant", label="python3 -m venv"),
    _need("make", "make", "the README's commands (make demo, make test)", "netns", "vagrant"),
    _need("dpkg-query", "dpkg", "set-up asks which packages are installed", "netns", "vagrant",
          "ci"),
    # -- namespaces, links and the nodes' init ------------------------------------------------
    _need("ip", "iproute2", "namespaces, veths, the lab bridge, addresses, `ip neigh`",
          "netns", "vagrant", "guest"),
    _need("tc", "iproute2", "tc netem: the loss, delay and jitter faults", "netns", "guest"),
    _need("ss", "iproute2", "testinfra's socket checks on the nodes; provisioning waits "
          "for each daemon to listen; the HAProxy watcher (keepalived.track_file) asks "
          "whether :6443 listens", "netns", "guest"),
    _need("tar", "tar", "provisioning writes a node's files in one round trip", "netns",
          "guest"),
    _need("unshare", "util-linux", "a node's PID, mount, UTS and IPC namespaces; the VM "
          "lab's private libvirt host", "netns", "vagrant", "ci", also=("pivot_root",)),
    _need("nsenter", "util-linux", "running commands and daemons inside a node",
          "netns", "vagrant"),
    _need("setsid", "util-linux", "daemons detached to the node's PID 1", "netns"),
    _need("mount", "mount", "a node's /etc and /var overlays and its own /run",
          "netns", "vagrant", "ci"),
    _need("umount", "mount", "a node detaches the host's /run/netns entries it was born "
          "with (each would keep a lab's namespaces alive)", "netns"),
    _need("hostname", "hostname", "each node's own host name", "netns"),
    _need("tini", "tini", "the nodes' PID 1, which reaps killed daemons", "netns"),
    # -- faults inside the nodes --------------------------------------------------------------
    _need("nft", "nftables", "the partition (split brain) and packet-loss faults",
          "netns", "guest"),
    _need("ping", "iputils-ping", "the link and partition fault tests", "netns", "guest"),
    _need("curl", "curl", "the kubeadm HA guide's keepalived check (profile kubeadm-guide) "
          "asks the API through HAProxy", "netns", "guest"),
    _need("killall", "psmisc", "keepalived's check script `killall -0 haproxy` (the guide's)",
          "netns", "guest"),
    _need("pgrep", "procps", "waiting for a daemon's last process to exit; the rogue-router "
          "exercise's keepalived stopped by name inside its node", "netns", "guest",
          also=("pkill",)),
    _need("ps", "procps", "testinfra's process checks", "netns", "guest"),
    # -- seeing the lab ---------------------------------------------------------------------
    _need("dot", "graphviz", "`halab graph --out lab.svg|.png` renders the topology",
          "netns", "vagrant"),
    _need("tmux", "tmux", "the live view's test drives `halab status --watch` in a real "
          "80x24 terminal", "netns"),
    # -- SSH: Fabric and testinfra reach every node the same way -----------------------------
    _need("/usr/sbin/sshd", "openssh-server", "sshd in every node", "netns", "guest"),
    _need("/usr/lib/openssh/sftp-server", "openssh-sftp-server",
          "Fabric's file uploads (provisioning)", "netns", "guest"),
    _need("ssh", "openssh-client", "`halab ssh`, and vagrant's SSH to the VMs",
          "netns", "vagrant"),
    _need("ssh-keygen", "openssh-client", "the lab's key and the nodes' host keys",
          "netns", "vagrant", "guest"),
    _need("nc", "netcat-openbsd", "SSH's ProxyCommand through the client namespace, "
          "waiting for sshd, HAProxy's stats socket", "netns", "vagrant", "guest"),
    # -- the roles' daemons -------------------------------------------------------------------
    _need("/usr/sbin/haproxy", "haproxy", "the load balancers", "netns", "guest"),
    _need("/usr/sbin/keepalived", "keepalived", "VRRP and the VIP", "netns", "guest"),
    _need("/usr/sbin/nginx", "nginx", "the API server and ingress stand-ins", "netns", "guest"),
    _need("openssl", "openssl", "the tests read certificates on the masters", "netns", "guest"),
    _need("sudo", "sudo", "vagrant's `vagrant` user becomes root", "guest"),
    _need("systemctl", "systemd", "the VM nodes' daemons are systemd units; journalctl "
          "gives a failed test their logs", "guest", also=("journalctl",)),
    # Essential packages (always there); listed so that the registry covers what runs.
    _need("sh", "dash", "every command on a node runs through /bin/sh", "netns", "guest"),
    _need("timeout", "coreutils", "bounded commands in tests; stat, sha256sum for testinfra",
          "netns", "guest", also=("cat", "chmod", "cp", "cut", "date", "dirname", "env", "ls",
                                  "mkdir", "rm", "sleep", "sha256sum", "stat", "touch")),
    _need("grep", "grep", "reading qdiscs and daemon output on the nodes", "netns", "guest"),
    _need("sed", "sed", "the sabotage suite breaks a node's config in place", "netns",
          "guest"),
    # -- `halab ui`, the classroom web page ---------------------------------------------------
    _need("dot", "graphviz", "the topology picture on `halab ui`'s page", "netns", "vagrant"),
    _need("chromium", "chromium", "the web page's test: a real, headless browser",
          "tests"),
    _need("chromedriver", "chromium-driver", "the web page's test: selenium drives Chromium",
          "tests"),
    # -- the VM lab's host --------------------------------------------------------------------
    _need("vagrant", "vagrant", "the VM lab's lifecycle", "vagrant"),
    _need("/usr/share/vagrant-plugins/plugins.d/vagrant-libvirt.json", "vagrant-libvirt",
          "vagrant's libvirt provider", "vagrant", label="vagrant-libvirt"),
    _need("libvirtd", "libvirt-daemon", "the lab's private libvirt", "vagrant"),
    _need("virtlogd", "libvirt-daemon", "libvirt's log daemon (qemu's console logs)",
          "vagrant"),
    _need("/etc/libvirt/libvirtd.conf", "libvirt-daemon-system",
          "libvirt's default configuration, copied into the lab's private host", "vagrant"),
    _need("/etc/libvirt/qemu.conf", "libvirt-daemon-system",
          "libvirt's qemu driver settings (the lab's host adds its own)", "vagrant"),
    _need("qemu-system-x86_64", "qemu-system-x86", "the VMs", "vagrant"),
    _need("qemu-img", "qemu-utils", "libvirt's disk volumes; the box's qcow2 image", "vagrant"),
    _need("dnsmasq", "dnsmasq-base", "libvirt starts one for every network it creates",
          "vagrant"),
    # libvirt-python (pip) compiles against Debian's libvirt. (Python.h itself ships in
    # libpython3.11-dev; python3-dev follows Debian's default Python.)
    _need("/usr/include/libvirt/libvirt.h", "libvirt-dev", "building libvirt-python",
          "vagrant"),
    _need("pkg-config", "pkgconf", "building libvirt-python (finds libvirt)", "vagrant"),
    _need("gcc", "gcc", "building libvirt-python", "vagrant"),
    _need("/usr/include/python3*/Python.h", "python3-dev", "building libvirt-python",
          "vagrant", label="Python.h"),
    # box/build.sh: the offline Debian 12 box, from Debian packages.
    _need("debootstrap", "debootstrap", "the box's root file system", "vagrant", "ci"),
    _need("/usr/share/keyrings/debian-archive-keyring.gpg", "debian-archive-keyring",
          "debootstrap checks Debian's signatures", "vagrant", "ci", label="archive keyring"),
    _need("extlinux", "extlinux", "the box's boot loader", "vagrant"),
    _need("/usr/lib/EXTLINUX/mbr.bin", "syslinux-common", "the box's MBR", "vagrant"),
    _need("mkfs.ext4", "e2fsprogs", "the box's file system", "vagrant", also=("dumpe2fs",)),
    _need("sfdisk", "fdisk", "the box's partition table", "vagrant"),
    _need("losetup", "mount", "mapping the box's partition", "vagrant"),
    # -- CI: the pristine Debian root ---------------------------------------------------------
    _need("git", "git", "CI clones the checkout into the pristine root", "ci"),
)


def needs(*scopes: str) -> list[Need]:
    """The needs of any of ``scopes``, in the registry's order."""
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(SCOPES)}")
    return [n for n in NEEDS if n.scopes & set(scopes)]


def packages(*scopes: str) -> list[str]:
    """The Debian packages of ``scopes``, each once, in the registry's order."""
    return list(dict.fromkeys(n.package for n in needs(*scopes)))


def package_of(command: str) -> str:
    """The package that ships ``command``: a name, or a path (matched by its name)."""
    name = os.path.basename(command)
    for n in NEEDS:
        if command == n.command or name == os.path.basename(n.command) or name in n.also:
            return n.package
    raise KeyError(f"{command!r} is not in halab's registry (lab/packages.py)")


Which = Callable[[str], "str | None"]


def present(need: Need, which: Which = shutil.which) -> bool:
    if need.is_path:
        return bool(glob.glob(need.command))
    return which(need.command) is not None


def missing(scopes: Iterable[str], which: Which = shutil.which) -> list[Need]:
    """The needs of ``scopes`` whose command is not on this machine."""
    return [n for n in needs(*scopes) if not present(n, which)]


def installed(package: str) -> bool:
    """Whether dpkg has ``package`` installed (what setup-debian.sh installs by)."""
    p = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True,
                       text=True)
    return p.returncode == 0 and "install ok installed" in p.stdout


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python3 -m lab.packages",
        description="The Debian packages halab needs, from its registry (lab/packages.py).")
    ap.add_argument("--provider", "--scope", dest="scopes", action="append", choices=SCOPES,
                    help="netns (default), vagrant, guest (inside VMs), tests or ci; "
                    "repeatable")
    ap.add_argument("--missing", action="store_true",
                    help="only the packages dpkg does not have installed")
    ap.add_argument("--commands", action="store_true",
                    help="a table: command, package, scopes, why")
    args = ap.parse_args(argv)
    scopes = args.scopes or ["netns"]
    if args.commands:
        for n in needs(*scopes):
            print(f"{n.command:58} {n.package:26} {','.join(sorted(n.scopes)):24} {n.why}")
        return 0
    pkgs = packages(*scopes)
    if args.missing:
        pkgs = [p for p in pkgs if not installed(p)]
    for p in pkgs:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
