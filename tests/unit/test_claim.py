"""A lab's name belongs to one folder on the machine, and one command at a time acts on it
(lab.claim). /run/halab is a folder of the test's here: no root needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab import claim
from lab.errors import LabStateError
from lab.state import LabState


@pytest.fixture(autouse=True)
def run_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "run"
    monkeypatch.setattr(claim, "RUN_DIR", d)
    return d


def _folder(tmp_path: Path, name: str) -> Path:
    d = tmp_path / name
    d.mkdir()
    return d


def _claim(folder: Path, lab: str = "tsame", phase: str | None = "up") -> claim.Claim:
    state = LabState(folder, lab)
    if phase:
        state.write({"phase": phase, "provider": "netns"})
    return claim.Claim(state, folder / "lab.yaml")


def test_another_folder_s_running_lab_is_refused_naming_its_owner(tmp_path):
    a, b = _folder(tmp_path, "a"), _folder(tmp_path, "b")
    _claim(a).take("netns")
    with pytest.raises(LabStateError) as e:
        _claim(b, phase=None).refuse_if_elsewhere("take down")
    msg = str(e.value)
    assert f"from another folder, {a}" in msg and f"halab down -f {a}/lab.yaml" in msg
    assert str(b) in msg and "\n" not in msg
    _claim(a).refuse_if_elsewhere("take down")  # its own folder may


def test_a_claim_whose_folder_no_longer_runs_the_lab_is_stale(tmp_path):
    a, b = _folder(tmp_path, "a"), _folder(tmp_path, "b")
    _claim(a).take("netns")
    LabState(a, "tsame").update(phase="down")
    _claim(b, phase=None).refuse_if_elsewhere("bring up")  # no error
    _claim(a, phase="creating")  # an `up` killed halfway: its namespaces may be there
    with pytest.raises(LabStateError):
        _claim(b, phase=None).refuse_if_elsewhere("bring up")


def test_release_forgets_only_its_own_claim(tmp_path):
    a, b = _folder(tmp_path, "a"), _folder(tmp_path, "b")
    _claim(a).take("netns")
    _claim(b).release()
    assert _claim(a).owner().folder == str(a)
    _claim(a).release()
    assert _claim(a).owner() is None


_HOLDER = """
import sys, time
from pathlib import Path
from lab import claim
from lab.state import LabState
claim.RUN_DIR = Path(sys.argv[1])
c = claim.Claim(LabState(Path(sys.argv[2]), "tsame"))
with c.lock("up", print):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_a_second_command_waits_for_the_lock_and_says_who_holds_it(tmp_path, run_dir):
    a, b = _folder(tmp_path, "a"), _folder(tmp_path, "b")
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run_dir), str(a)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    notes: list[str] = []

    def note(msg: str) -> None:
        notes.append(msg)
        holder.stdin.write("done\n")  # the holder finishes while we wait
        holder.stdin.flush()

    # Same name, another folder: the lock is the name's.
    with _claim(b, phase=None).lock("down", note):
        assert holder.wait(timeout=10) == 0
    assert len(notes) == 1
    assert f"`halab up` (pid {holder.pid}) from {a}" in notes[0] and "waiting" in notes[0]


def test_the_lock_is_reentrant_within_a_command(tmp_path):
    c = _claim(_folder(tmp_path, "a"))
    with c.lock("up", pytest.fail), c.lock("down", pytest.fail):
        pass  # up's failure path takes the lab down: it must not wait for itself
    with c.lock("clean", pytest.fail):
        pass
