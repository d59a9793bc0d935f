"""The state folder is trusted only when nobody else could have touched it; state.json is
written whole, through no link, by any number of writers at once."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lab.errors import PrerequisiteError as UnsafeStateError  # exit 3; its subclass names it
from lab.state import LabState


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def test_state_folder_is_made_0700(tmp_path):
    state = LabState(tmp_path, "tmode")
    state.write({"phase": "up"})
    assert _mode(state.dir) == 0o700
    assert _mode(tmp_path / ".halab") == 0o700
    assert _mode(state.file) & 0o077 == 0


def test_an_existing_state_folder_is_tightened(tmp_path):
    """Made 0755 by an older halab: nobody else may list or read it any more."""
    (tmp_path / ".halab" / "tmode").mkdir(parents=True, mode=0o755)
    os.chmod(tmp_path / ".halab" / "tmode", 0o755)
    LabState(tmp_path, "tmode").write({})
    assert _mode(tmp_path / ".halab" / "tmode") & 0o066 == 0


def test_a_state_folder_that_is_a_link_is_refused_and_not_written_through(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / ".halab").mkdir()
    (tmp_path / ".halab" / "tlink").symlink_to(elsewhere)
    with pytest.raises(UnsafeStateError, match="symbolic link"):
        LabState(tmp_path, "tlink").write({"phase": "up"})
    assert list(elsewhere.iterdir()) == []


def test_a_halab_folder_that_is_a_link_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "tlink").mkdir(parents=True)
    (tmp_path / ".halab").symlink_to(elsewhere)
    with pytest.raises(UnsafeStateError, match="symbolic link"):
        LabState(tmp_path, "tlink").read()


@pytest.mark.parametrize("where", ["lab folder", ".halab", "state folder"])
def test_a_folder_writable_by_others_is_refused(tmp_path, where):
    lab_dir = tmp_path / "lab"
    lab_dir.mkdir()
    state = LabState(lab_dir, "twrite")
    state.write({})
    target = {"lab folder": lab_dir, ".halab": lab_dir / ".halab",
              "state folder": state.dir}[where]
    os.chmod(target, 0o777)
    with pytest.raises(UnsafeStateError, match="writable by everyone") as e:
        state.write({})
    assert str(target) in str(e.value) and "\n" not in str(e.value)


def test_a_sticky_world_writable_lab_folder_is_fine(tmp_path):
    os.chmod(tmp_path, 0o1777)  # like /tmp: others cannot move what is ours
    state = LabState(tmp_path, "tsticky")
    state.write({"phase": "up"})
    assert state.read() == {"phase": "up"}


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder away needs root")
def test_a_folder_owned_by_another_user_is_refused(tmp_path):
    import pwd

    nobody = pwd.getpwnam("nobody")
    state = LabState(tmp_path, "towner")
    state.write({})
    os.chown(state.dir, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(UnsafeStateError, match="owned by nobody"):
        state.write({})


@pytest.mark.skipif(os.geteuid() != 0, reason="planting another user's link needs root")
def test_a_planted_temp_file_link_is_never_written_through(tmp_path):
    """The finding: a link at state.tmp, owned by nobody, made root overwrite its target."""
    import pwd

    nobody = pwd.getpwnam("nobody")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "lab").mkdir()
    state = LabState(tmp_path / "lab", "tplant")
    state.write({"phase": "creating"})
    for name in ("state.tmp", "state.json"):
        link = state.dir / name
        link.unlink(missing_ok=True)
        link.symlink_to(victim)
        os.lchown(link, nobody.pw_uid, nobody.pw_gid)
    state.write({"phase": "up"})
    assert victim.read_text() == "precious\n"
    assert not (state.dir / "state.json").is_symlink()
    assert json.loads((state.dir / "state.json").read_text()) == {"phase": "up"}


def test_concurrent_writers_never_fail_and_readers_never_see_an_empty_record(tmp_path):
    """Two processes writing at once (a provider and a fault) each use their own temp
    file: no FileNotFoundError, and the record read in between is always whole."""
    state = LabState(tmp_path, "tconc")
    state.write({"n": -1})
    writer = (
        "import sys; from pathlib import Path; from lab.state import LabState\n"
        "s = LabState(Path(sys.argv[1]), 'tconc')\n"
        "for i in range(300): s.write({'n': i, 'pad': 'x' * 4000})\n")
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(tmp_path)],
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    empty = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            if state.read() == {}:
                empty.append(1)

    reader = threading.Thread(target=read)
    reader.start()
    errors = [p.communicate()[1] for p in procs]
    stop.set()
    reader.join()
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert empty == []
    assert [f.name for f in state.dir.iterdir()] == ["state.json"]  # no temp file left


def test_cli_refuses_an_unsafe_state_folder_in_one_paragraph(tmp_path, default_text):
    (tmp_path / "lab.yaml").write_text(default_text.replace("name: halab", "name: tunsafe"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / ".halab").mkdir()
    (tmp_path / ".halab" / "tunsafe").symlink_to(elsewhere)
    p = subprocess.run([sys.executable, "-m", "lab", "status"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert p.returncode == 3, p.stderr
    assert "symbolic link" in p.stderr and "Traceback" not in p.stderr
    assert p.stderr.count("\n") == 1


def test_rendered_copies_holding_auth_pass_are_the_owners_alone(tmp_path, default_topo):
    """keepalived.conf carries the VRRP auth_pass; its copy in the state folder must not
    be readable by other users, whatever the modes the folders above it have."""
    from types import SimpleNamespace

    from provision import roles
    from provision.pki import LabPki

    state = LabState(tmp_path, "trender")
    node = SimpleNamespace(spec=default_topo.node("lb01"))
    for svc in roles.loadbalancer(default_topo, node, LabPki(state.pki, default_topo)):
        roles.keep_copy(state.rendered("lb01"), svc)
    conf = state.rendered("lb01") / "etc/keepalived/keepalived.conf"
    assert "auth_pass" in conf.read_text()
    assert _mode(state.dir / "rendered") == 0o700
