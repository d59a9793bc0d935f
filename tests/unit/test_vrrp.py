"""keepalived's own word on its VRRP instance (lab/vrrp.py): the JSON dumps recorded from
the embedded lab's keepalived 2.2.7 (tests/unit/data/keepalived-*.json), and every way of
asking that cannot tell, which must say unknown with the reason."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from lab import vrrp
from lab.errors import TransportError
from lab.transport import Result
from lab.vrrp import VrrpUnknown
from provision import names

DATA = Path(__file__).resolve().parent / "data"


def dump(name: str) -> str:
    return (DATA / f"keepalived-{name}.json").read_text()


@pytest.mark.parametrize("name,state,effective,base", [
    ("master", "MASTER", 102, 100),  # lb01, its check passing: 100 + weight 2
    ("backup", "BACKUP", 101, 99),  # lb02, its check passing: 99 + 2
    ("check-failed", "BACKUP", 100, 100),  # lb01 after HAProxy was killed: weight lost
])
def test_recorded_dumps(name, state, effective, base):
    [s] = vrrp.parse(dump(name))
    assert (s.instance, s.state, s.effective_priority, s.base_priority) == (
        "VI_1", state, effective, base)
    assert str(s) == f"{state} {effective}"
    assert s.last_transition > 1.6e9 and s.become_master >= 1


def test_the_check_that_failed_handed_the_vip_over():
    [s] = vrrp.parse(dump("check-failed"))
    assert s.release_master == 1, "lb01 released MASTER once its check failed"


@pytest.mark.parametrize("text", ["", "[{\"data\": {\"iname\": \"VI_1\"", "{}",
                                  "[{\"data\": {\"iname\": \"VI_1\", \"state\": \"x\"}}]"])
def test_a_dump_that_does_not_read_is_unknown(text):
    with pytest.raises(VrrpUnknown, match="does not read"):
        vrrp.parse(text)


def test_the_dump_goes_to_the_lb_s_own_folder():
    """Never /tmp: on the embedded lab it is the host's, shared by every LB of every lab."""
    script = vrrp.script()
    assert f"{names.KEEPALIVED_DUMP_DIR}/keepalived.json" in script
    assert "/tmp" not in script
    assert f"cat {names.KEEPALIVED_PIDFILE}" in script


def test_keepalived_s_unit_writes_its_dumps_there():
    from provision import roles

    argv = roles.KEEPALIVED.argv
    assert argv[:2] == ("/usr/bin/env", f"TMPDIR={names.KEEPALIVED_DUMP_DIR}")
    assert names.KEEPALIVED_DUMP_DIR in roles.KEEPALIVED.runtime_dirs
    assert argv[argv.index("-p") + 1] == names.KEEPALIVED_PIDFILE


class Node:
    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.asked = 0

    def run(self, command, timeout=60):
        self.asked += 1
        a = self.answers.pop(0)
        if isinstance(a, Exception):
            raise a
        rc, out = a
        return Result(command, rc, out, "")


def ask(node: Node):
    lab = types.SimpleNamespace(node=lambda name: node)
    return vrrp.ask(lab, "lb01")  # type: ignore[arg-type]


def test_a_dump_caught_mid_write_is_asked_again():
    node = Node((0, dump("master")[:40]), (0, dump("master")))
    assert ask(node).state == "MASTER" and node.asked == 2


@pytest.mark.parametrize("rc,words", [
    (3, "no JSON dump"), (4, "not running"), (5, "could not be signalled"),
    (6, "wrote no dump"), (1, "exited 1")])
def test_what_could_not_be_asked_says_why(rc, words):
    with pytest.raises(VrrpUnknown, match=words):
        ask(Node((rc, "")))


def test_an_lb_that_cannot_be_reached_is_unknown():
    with pytest.raises(VrrpUnknown, match="cannot ask keepalived on lb01: .*refused"):
        ask(Node(TransportError("lb01: SSH connection refused")))


def test_never_a_readable_dump_is_unknown():
    with pytest.raises(VrrpUnknown, match="does not read"):
        ask(Node((0, "["), (0, "["), (0, "[")))


def test_no_instance_is_unknown():
    with pytest.raises(VrrpUnknown, match="no VRRP instance"):
        ask(Node((0, "[]")))
