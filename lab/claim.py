"""Who may act on lab NAME on this machine: the folder that owns it, one command at a time.

A lab's name is the machine's namespace prefix (`halab-NAME-`), so two lab files of the
same name in different folders would act on the same namespaces: `up`'s clean-up of
leftovers, `down` and `clean` of one would destroy the other. So:

- **The owner.** `up` records the lab file's folder in `/run/halab/NAME.owner` before it
  builds anything; `up`, `down` and `clean` from any other folder refuse while that folder
  still records the lab as up (or being made), and say which folder owns it. `down` and
  `clean` of the owner remove the record. /run is a tmpfs: emptied at boot, as the
  namespaces and processes a lab is made of are, so a claim never outlives its lab by a
  reboot; a claim whose folder no longer records a running lab (taken down, cleaned, the
  folder deleted) is stale and ignored.
- **The lock.** `up`, `down` and `clean` hold `flock` on `/run/halab/NAME.lock` (by name,
  not by folder: same-named labs of two folders share it); a second command waits for the
  first, saying who holds it. The kernel drops the lock when its holder dies, even by
  SIGKILL: nothing to clean after a crash.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from lab.errors import HalabError, LabStateError
from lab.state import LabState, atomic_write, check_trusted

RUN_DIR = Path("/run/halab")
# Phases (state.json) in which a folder's lab exists on the machine, or may (an `up`
# killed halfway leaves "creating" and its namespaces).
LIVE_PHASES = ("creating", "up")

# Locks this process holds, by lab name: a command that calls another (up's failure path
# takes the lab down) must not wait for itself (flock locks per open file, not per process).
_held: dict[str, int] = {}
_held_guard = threading.Lock()


@dataclass(frozen=True)
class Owner:
    folder: str  # the lab file's folder, absolute and resolved
    lab_file: str  # as given to halab, absolute
    provider: str
    pid: int
    since: float


def _run_dir() -> Path:
    try:
        RUN_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    except PermissionError:
        raise LabStateError(f"cannot write {RUN_DIR}, where halab records which folder owns "
                            "each lab and locks it: run halab as root") from None
    check_trusted(RUN_DIR, "where halab records labs' owners and locks")
    return RUN_DIR


class Claim:
    """Lab ``state.name`` as seen from the folder of ``lab_file``."""

    def __init__(self, state: LabState, lab_file: Path | None = None) -> None:
        self.state, self.name = state, state.name
        self.folder = str(state.root)
        self.lab_file = str(lab_file.resolve()) if lab_file else f"{self.folder}/lab.yaml"

    @property
    def owner_file(self) -> Path:
        return RUN_DIR / f"{self.name}.owner"

    @property
    def lock_file(self) -> Path:
        return RUN_DIR / f"{self.name}.lock"

    # -- the lock ------------------------------------------------------------------------------
    @contextmanager
    def lock(self, doing: str, note: Callable[[str], None]) -> Iterator[None]:
        """Hold the lab's lock for ``doing`` ("up", "down", "clean"); wait, saying so, while
        another command holds it."""
        with _held_guard:
            again = _held.get(self.name, 0)
            _held[self.name] = again + 1
        if again:
            try:
                yield
            finally:
                with _held_guard:
                    _held[self.name] -= 1
            return
        fd = -1
        try:
            _run_dir()
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode(errors="replace").strip()
                note(f"lab '{self.name}' is busy: {holder or 'another halab command'} is "
                     "working on it; waiting for it to finish (Ctrl-C gives up)")
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"`halab {doing}` (pid {os.getpid()}) from {self.folder}".encode(),
                      0)
            yield
        finally:
            if fd >= 0:
                os.close(fd)  # the lock goes with its last descriptor
            with _held_guard:
                _held[self.name] -= 1
                if not _held[self.name]:
                    del _held[self.name]

    # -- the owner -----------------------------------------------------------------------------
    def owner(self) -> Owner | None:
        try:
            return Owner(**json.loads(self.owner_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def elsewhere(self) -> Owner | None:
        """The owner of this lab's name, when it is another folder whose lab still runs."""
        o = self.owner()
        if o is None or o.folder == self.folder:
            return None
        try:
            phase = LabState(Path(o.folder), self.name).read().get("phase")
        except HalabError:
            return o  # its folder cannot be trusted to say: the lab is not ours to touch
        return o if phase in LIVE_PHASES else None

    def refuse_if_elsewhere(self, doing: str) -> None:
        o = self.elsewhere()
        if o is None:
            return
        raise LabStateError(
            f"refusing to {doing} lab '{self.name}': a lab of that name runs on this machine "
            f"from another folder, {o.folder} (lab file {o.lab_file}, {o.provider} provider, "
            f"up since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(o.since))}), and "
            f"lab names are the machine's namespace prefixes (halab-{self.name}-...). It is "
            f"not this folder's ({self.folder}) to touch: act on it from its own folder "
            f"(`halab down -f {o.lab_file}`), or give this lab another `name:` in "
            f"{self.lab_file}.")

    def take(self, provider: str) -> None:
        """Record this folder as the owner (under the lock, before anything is built)."""
        _run_dir()
        atomic_write(self.owner_file, json.dumps(asdict(Owner(
            self.folder, self.lab_file, provider, os.getpid(), time.time()))).encode())

    def release(self) -> None:
        """Forget the owner if it is this folder (under the lock, once the lab is gone)."""
        o = self.owner()
        if o is not None and o.folder == self.folder:
            self.owner_file.unlink(missing_ok=True)


def release_all() -> None:
    """Forget every lab's owner: `halab clean --all` has removed every lab, whatever its
    name and folder."""
    if RUN_DIR.is_dir():
        for f in RUN_DIR.glob("*.owner"):
            f.unlink(missing_ok=True)
