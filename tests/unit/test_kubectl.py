"""kubectl as a witness: its kubeconfig, its binary, and its outage arithmetic (no lab)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import kubectl
from lab.kubectl import Attempt


def ok(start: float, dur: float = 0.05) -> Attempt:
    return Attempt(start, start + dur, True, 0, "ok")


def bad(start: float, dur: float = 0.04) -> Attempt:
    return Attempt(start, start + dur, False, 1, "", "connection refused")


def test_the_binary_is_this_environments_never_path(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    exe = kubectl.kubectl_binary()
    assert exe.is_file() and exe != Path("/usr/bin/kubectl")
    assert exe.parent == Path(__import__("sys").executable).parent


def test_kubeconfig_names_the_vip_the_ca_and_a_user():
    cfg = kubectl.kubeconfig("https://192.168.0.203:6443", Path("/s/pki/ca.crt"),
                             Path("/s/c.crt"), Path("/s/c.key"), "halab-x")
    cluster = cfg["clusters"][0]["cluster"]
    assert cluster == {"server": "https://192.168.0.203:6443",
                       "certificate-authority": "/s/pki/ca.crt"}
    assert "insecure-skip-tls-verify" not in cluster
    assert cfg["current-context"] == "halab-x"
    ctx = cfg["contexts"][0]["context"]
    assert ctx == {"cluster": "halab-x", "user": kubectl.USER}


def test_outage_from_the_fault_to_the_first_good_run_after_the_last_bad():
    runs = [ok(0.0), ok(0.1), ok(0.2), bad(1.05), bad(1.1), ok(1.2), bad(1.3), bad(3.0),
            ok(3.6), ok(3.7)]
    assert kubectl.outage_after(runs, 1.0) == pytest.approx(2.6)


def test_no_failure_no_outage():
    assert kubectl.outage_after([ok(0.0), ok(1.0), ok(2.0)], 0.5) == 0.0


def test_never_recovered_is_not_a_number():
    assert kubectl.outage_after([ok(0.0), bad(1.0), bad(2.0)], 0.5) is None


def test_a_run_in_flight_at_the_fault_counts():
    # Started before the fault, failed because of it.
    assert kubectl.outage_after([ok(0.0), bad(0.9, 0.3), ok(1.3)], 1.0) == pytest.approx(0.3)


def test_startup_is_the_median_good_run_before_the_fault():
    runs = [ok(0.0, 0.04), ok(0.1, 0.06), ok(0.2, 0.05), bad(0.3, 0.01), ok(5.0, 1.0)]
    assert kubectl.startup_seconds(runs, before=1.0) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        kubectl.startup_seconds(runs[:2], before=1.0)


def test_loop_check_reports_a_dead_thread_and_gaps():
    loop = kubectl.KubectlLoop(kubectl=None, request_timeout=1.0)  # type: ignore[arg-type]
    loop.error = RuntimeError("boom")
    with pytest.raises(RuntimeError, match="died"):
        loop.check()
    loop = kubectl.KubectlLoop(kubectl=None, request_timeout=1.0)  # type: ignore[arg-type]
    loop._started, loop._stopped = 0.0, 30.0
    loop.attempts = [ok(0.1), ok(0.2)]
    with pytest.raises(RuntimeError, match="gap"):
        loop.check()
    loop.attempts.append(ok(10.0))
    loop.attempts.append(ok(20.0))
    loop.check()


def test_the_runs_around_the_recovery_and_the_tolerance():
    runs = [ok(0.0), bad(1.0), bad(1.05, 1.0), ok(2.05, 0.2), ok(2.3)]
    assert kubectl.around_recovery(runs, 0.5) == (bad(1.05, 1.0), ok(2.05, 0.2))
    assert kubectl.around_recovery([ok(0.0), ok(1.0)], 0.5) == (None, None)
    assert kubectl.around_recovery([ok(0.0), bad(1.0)], 0.5) == (bad(1.0), None)
    # Fast failures and quick runs: one probe interval + kubectl's start-up.
    assert kubectl.agreement_tolerance(0.05, 0.001, 0.06, bad(1.0, 0.04), ok(1.1, 0.05)) \
        == pytest.approx(0.11)
    # A probe that hung at the move makes halab late by its timeout.
    assert kubectl.agreement_tolerance(0.05, 0.5, 0.06, bad(1.0, 0.04), ok(1.1, 0.05)) \
        == pytest.approx(0.56)
    # So does a kubectl run that hung, or a good run slow to start on a busy machine.
    assert kubectl.agreement_tolerance(0.05, 0.0, 0.06, bad(1.0, 1.0), ok(2.0)) \
        == pytest.approx(1.05)
    assert kubectl.agreement_tolerance(0.05, 0.0, 0.06, bad(1.0), ok(1.1, 0.14)) \
        == pytest.approx(0.19)
