from __future__ import annotations

import pytest

from lab.services import Unit
from lab.wait import WaitTimeout, until


def test_until_returns_the_first_truthy_value_without_sleeping():
    seq = iter([0, None, 7])
    slept: list[float] = []
    assert until("x", lambda: next(seq), timeout=10, interval=1, sleep=slept.append) == 7
    assert slept == [1, 1]


def test_until_names_what_it_waited_for_and_the_last_error():
    def boom():
        raise ConnectionRefusedError("nope")

    with pytest.raises(WaitTimeout) as e:
        until("sshd on lb01", boom, timeout=0.3, interval=0.1, sleep=lambda _: None)
    assert "sshd on lb01" in str(e.value) and "nope" in str(e.value)


def test_unit_round_trips_and_renders_for_systemd():
    u = Unit("haproxy", ("/usr/sbin/haproxy", "-db", "-f", "/etc/haproxy/haproxy.cfg"),
             "HAProxy", ("/run/haproxy",))
    assert Unit.from_json(u.to_json()) == u
    text = u.to_systemd()
    assert "ExecStart=/usr/sbin/haproxy -db -f /etc/haproxy/haproxy.cfg" in text
    assert "RuntimeDirectory=haproxy" in text and "Restart=no" in text
