"""The lab's state folder: `.halab/<name>/` beside lab.yaml.

It holds what a later command (or `halab clean` after a crash) needs to find the lab
again: which provider made it, the per-lab SSH key, the nodes' host keys and the
known_hosts that pins them, the SSH config, the lab CA, rendered configs and every
daemon's log. `state.json` is written after every change, before the next step starts, so
an interrupted `up` leaves a record of what it had made.

halab runs as root and writes here, so the folder is trusted only when nobody else could
have put anything in it: it, `.halab` and the lab file's folder must be real folders (not
links), owned by this user (or root) and writable by nobody else (a sticky folder such as
/tmp is fine: others cannot move what is ours). Anything else is refused before a byte is
written. The state folder is made 0700, and every file in it is written to a fresh temp
file and renamed into place, so no planted link is ever written through.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from lab.errors import PrerequisiteError

STATE_ROOT = ".halab"
PRIVATE = 0o700


class UnsafeStateError(PrerequisiteError):
    """The state folder (or a folder above it) could be changed by someone else."""


def _owner(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def check_trusted(path: Path, what: str) -> None:
    """Refuse ``path`` (if it exists) when it is a link, not ours, or writable by others.

    Another user who can write a folder halab writes in can swap any file of it for a link
    to /etc/shadow between two of halab's steps; a folder owned by someone else can be
    made so by its owner at any time."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    why = None
    if stat.S_ISLNK(st.st_mode):
        why = f"is a symbolic link (to {os.readlink(path)})"
    elif not stat.S_ISDIR(st.st_mode):
        why = "is not a folder"
    elif st.st_uid not in (os.geteuid(), 0):
        why = f"is owned by {_owner(st.st_uid)}, not by {_owner(os.geteuid())} or root"
    elif st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        who = "everyone" if st.st_mode & 0o002 else "its group"
        why = f"is writable by {who} (mode {stat.S_IMODE(st.st_mode):o}, not sticky)"
    if why:
        raise UnsafeStateError(
            f"refusing to use {path} ({what}): it {why}, so someone else could replace "
            "halab's files there (state, keys, certificates) by links and make halab, "
            "running as root, write wherever they point. Move the lab file to a folder "
            "that only you can write (or fix it: `chown root PATH`, `chmod go-w PATH`, "
            "replace a link by the real folder), then run again.")


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``path`` as a whole or not at all: a fresh temp file beside it (O_EXCL and
    O_NOFOLLOW, created with ``mode``: never readable by others even for an instant),
    fsync'ed, then renamed over ``path``. A reader sees the old content or the new one;
    two writers never share a temp file; a link planted at ``path`` is replaced, never
    followed."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # mkstemp makes 0600; a public file says so here
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class LabState:
    def __init__(self, root: Path, name: str) -> None:
        # The lab file's folder, resolved; below it nothing is resolved, so that a link in
        # .halab is seen (and refused) rather than followed.
        self.root = root.resolve()
        self.dir = self.root / STATE_ROOT / name
        self.name = name

    # -- paths -----------------------------------------------------------------------------
    @property
    def file(self) -> Path:
        return self.dir / "state.json"

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def pki(self) -> Path:
        return self.dir / "pki"

    def rendered(self, node: str) -> Path:
        # The copies of what was sent to the nodes hold secrets (keepalived's auth_pass):
        # their folder is the owner's alone.
        top = self.ensure_dir() / "rendered"
        top.mkdir(mode=PRIVATE, exist_ok=True)
        top.chmod(PRIVATE)
        return top / node

    def node_dir(self, node: str) -> Path:
        return self.dir / "nodes" / node

    def logs(self, node: str) -> Path:
        return self.node_dir(node) / "logs"

    # -- trust -----------------------------------------------------------------------------
    def check(self) -> None:
        """Refuse a state folder someone else could tamper with (see the module's text)."""
        check_trusted(self.root, "the lab file's folder")
        check_trusted(self.root / STATE_ROOT, "the folder of halab's state")
        check_trusted(self.dir, f"lab '{self.name}''s state folder")

    def ensure_dir(self) -> Path:
        """The state folder, checked; made 0700 if new. An existing one loses every read and
        write bit of group and others (an older halab made it 0755); a search bit stays:
        the VM provider under the machine's own libvirt lets qemu, which runs as another
        user there, reach the lab's disks through it."""
        self.check()
        for d in (self.root / STATE_ROOT, self.dir):
            try:
                d.mkdir(mode=PRIVATE)
            except FileExistsError:
                pass
        # A folder made between the check and mkdir by someone else is caught here.
        self.check()
        mode = stat.S_IMODE(os.lstat(self.dir).st_mode)
        if mode & 0o066:
            self.dir.chmod(mode & ~0o066)
        return self.dir

    # -- record ----------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.file.exists()

    def read(self) -> dict[str, Any]:
        self.check()
        try:
            return json.loads(self.file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def write(self, data: dict[str, Any]) -> None:
        self.ensure_dir()
        # A crash leaves the old record or the new one; concurrent writers each their own.
        atomic_write(self.file, json.dumps(data, indent=2, sort_keys=True).encode())

    def update(self, **changes: Any) -> dict[str, Any]:
        data = self.read()
        data.update(changes)
        self.write(data)
        return data

    def remove(self) -> None:
        self.check()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- keys ------------------------------------------------------------------------------
    def _keygen(self, path: Path, comment: str) -> None:
        if shutil.which("ssh-keygen") is None:
            raise PrerequisiteError(
                "ssh-keygen is missing: the lab's SSH keys cannot be made. Install the Debian "
                "package openssh-client (`make setup` installs everything halab needs).")
        path.parent.mkdir(mode=PRIVATE, parents=True, exist_ok=True)
        # ssh-keygen creates the private key with mode 0600 (open(2)'s mode, not a chmod
        # afterwards): never readable by others, whatever the umask.
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                        "-f", str(path)], check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL)

    def ensure_key(self) -> Path:
        """An ed25519 key made for this lab alone (0600); reused while the state folder lives."""
        self.ensure_dir()
        if not self.key.exists():
            self._keygen(self.key, f"halab-{self.name}")
        return self.key

    def host_key_path(self, node: str) -> Path:
        return self.node_dir(node) / "ssh_host_ed25519_key"

    def host_key(self, node: str) -> Path:
        """The private host key of ``node``'s sshd, made here by halab (so that known_hosts
        can pin it before the node first answers); reused while the state folder lives."""
        self.ensure_dir()
        key = self.host_key_path(node)
        if not key.exists():
            self._keygen(key, node)
        return key
