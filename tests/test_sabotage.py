"""Every verdict, seen to fail: the lab broken the way a real outage breaks it, under the
very checks the failover tests and the chaos scenarios make (test_failover.py and a
healthy run of each scenario here show the same checks pass in the same run).

A sabotaged verdict must be *failed* (or *unknown*, where the observation itself was
broken: never passed) and must name what broke.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest

from lab import failover, faults, measure, observe, sabotage, timing
from lab import steady as steady_state
from lab.chaos import runner, scenario
from lab.sabotage import Sabotage
from provision import names

pytestmark = [pytest.mark.needs_lab, pytest.mark.disruptive, pytest.mark.sabotage]


@pytest.fixture
def broken(steady):
    """Apply sabotages; whatever happens, undo them all and bring the lab back."""
    lab = steady
    applied: list[Sabotage] = []

    def apply(s: Sabotage) -> None:
        applied.append(s)
        s.apply(lab)

    yield apply
    failed = False
    for s in reversed(applied):
        try:
            s.undo(lab)
        except Exception:  # noqa: BLE001 - undo_all below covers what a single undo missed
            failed = True
    faults.restore(lab)
    if failed or steady_state.problems(lab):
        sabotage.undo_all(lab)
    steady_state.wait(lab)


def _lbs(lab):
    return lab.topo.master_lb.name, lab.topo.best_backup_lb.name


def _fails(v: measure.Verdict, *words: str) -> None:
    assert not v.passed, f"a sabotaged lab passed: {v}"
    text = str(v)
    assert any(w in text for w in words), f"the verdict does not name what broke: {v}"


# -- the failover tests --------------------------------------------------------------------
def test_haproxy_crash_fails_when_the_backup_cannot_serve(steady, broken):
    master, backup = _lbs(steady)
    broken(sabotage.backup_cannot_serve(backup))
    v = failover.haproxy_crash(steady)
    assert v.status == "failed"
    _fails(v, "no good api probe")


def test_haproxy_crash_fails_when_gratuitous_arp_is_lost(steady, broken):
    master, backup = _lbs(steady)
    broken(sabotage.garp_lost())
    v = failover.haproxy_crash(steady)
    assert v.status == "failed"
    _fails(v, "no good api probe", "exceeds the bound")


def test_keepalived_stop_fails_when_the_priority_zero_advert_is_lost(steady, broken):
    """The slow path (no priority-0 advert heard): the backup waits its master-down timer,
    which the fast path's bound does not admit."""
    master, backup = _lbs(steady)
    broken(sabotage.priority_zero_lost(backup))
    v = failover.keepalived_stop(steady)
    assert v.status == "failed"
    _fails(v, "beyond the bound", "exceeds the bound")


@pytest.mark.parametrize("fault", ["link cut", "crash"])
def test_master_lost_fails_when_the_backup_cannot_serve(steady, broken, fault):
    master, backup = _lbs(steady)
    broken(sabotage.backup_cannot_serve(backup))
    v = failover.master_lost(steady, fault)
    assert v.status == "failed"
    _fails(v, "no good api probe")


def test_preempt_fails_when_the_returning_master_is_not_heard(steady, broken):
    """The old MASTER comes back, but the client never learns (its gratuitous ARP lost)."""
    master, backup = _lbs(steady)
    broken(sabotage.garp_lost())
    v = failover.preempt_back(steady)
    assert v.status == "failed"
    _fails(v, "no good api probe", "refused", "cut", "exceeds the bound")


def test_preempt_fails_when_the_vip_comes_back_before_haproxy_listens(steady, broken):
    """The returning MASTER's HAProxy exists long before it listens: the guide's check passes,
    the VIP comes back, and new connections are refused until HAProxy is ready."""
    master, backup = _lbs(steady)
    broken(sabotage.slow_haproxy_start(master, seconds=timing.preempt_back(
        steady.topo).with_margin + 2))
    v = failover.preempt_back(steady)
    assert v.status == "failed"
    if steady.topo.keepalived.track_file is not None:
        # The watcher says "serves" only once :6443 listens (profile fast): the VIP waits
        # for HAProxy, so the preemption is late (the slow start is in no bound), never early.
        assert not any(f"the VIP came back to {master}" in r for r in v.reasons), str(v)
        _fails(v, "exceeds the bound", "beyond the bound")
        return
    _fails(v, f"the VIP came back to {master}")


def test_a_dead_probe_thread_is_never_a_pass(steady, broken, monkeypatch):
    lab = steady
    master, backup = _lbs(lab)
    real, calls = lab.prober.probe, []

    def dying(*a, **kw):
        calls.append(1)
        if len(calls) > 10:
            raise RuntimeError("the prober broke")
        return real(*a, **kw)

    monkeypatch.setattr(lab.prober, "probe", dying)
    v = failover.haproxy_crash(lab)
    assert v.status == "unknown"
    _fails(v, "probe thread died")


def test_an_lb_that_cannot_be_asked_is_never_a_pass(steady, broken):
    """lb01's sshd gone (its management access lost): its VIP samples are unknown, and
    "the VIP on lb02 alone" cannot be said."""
    lab = steady
    master, backup = _lbs(lab)
    faults.kill(lab, master, "ssh")
    lab.node(master).close()
    v = failover.haproxy_crash(lab)
    assert v.status == "unknown"
    _fails(v, "could not be asked", "cannot stream")


# -- the chaos scenarios -------------------------------------------------------------------
def _lb_blackhole(lab) -> Sabotage:
    return sabotage.backup_cannot_serve(lab.topo.best_backup_lb.name)


# For each built-in scenario: the sabotage that a real outage would set under it, applied
# at the moment of its first fault (after the steady-state hypothesis held), and what the
# verdict must then name.
SABOTAGES: dict[str, tuple[Callable, tuple[str, ...]]] = {
    "haproxy-kill": (_lb_blackhole, ("no good api probe",)),
    "haproxy-stop": (_lb_blackhole, ("no good api probe",)),
    "keepalived-kill": (_lb_blackhole, ("no good api probe",)),
    "keepalived-stop": (_lb_blackhole, ("no good api probe",)),
    "lb-crash": (_lb_blackhole, ("no good api probe",)),
    "lb-freeze": (_lb_blackhole, ("no good api probe",)),
    "lb-link-down": (_lb_blackhole, ("no good api probe",)),
    "haproxy-restart": (lambda lab: sabotage.broken_haproxy_config(lab.topo.master_lb.name),
                        ("did not start", "no good api probe", "VIP on")),
    "apiserver-kill": (lambda lab: sabotage.health_checks_off(lab.masters[0].name),
                       ("DOWN", "UP", "no good api probe")),
    "apiservers-down-2": (lambda lab: sabotage.health_checks_off(lab.masters[1].name),
                          ("DOWN", "UP", "no good api probe")),
    "master-crash": (lambda lab: sabotage.health_checks_off(lab.masters[1].name),
                     ("DOWN", "UP", "no good api probe")),
    "ingress-down": (lambda lab: sabotage.health_checks_off(lab.masters[1].name,
                                                           names.INGRESS_PROXY),
                     ("DOWN", "UP", "no good https probe")),
    "split-brain": (lambda lab: sabotage.adverts_ignored(lab.topo.best_backup_lb.name),
                    ("VIP on", "steady")),
    "lb-loss": (lambda lab: sabotage.adverts_ignored(lab.topo.best_backup_lb.name),
                ("VIP on",)),
    "lb-delay": (lambda lab: sabotage.adverts_ignored(lab.topo.best_backup_lb.name),
                 ("VIP on",)),
}


def test_every_builtin_scenario_has_a_sabotage():
    assert set(SABOTAGES) == {s.name for s in scenario.load_all()}


@pytest.mark.parametrize("name", sorted(SABOTAGES))
def test_scenario_passes_healthy_and_fails_sabotaged(steady, broken, monkeypatch, name):
    lab = steady
    sc = scenario.load_all(names=[name])[0]
    healthy = runner.run_scenario(lab, sc)
    if healthy.status == "skipped":
        pytest.skip(f"{name} cannot run on this lab: {healthy.skip_reason}")
    assert healthy.status == "passed", healthy.problems

    make, words = SABOTAGES[name]
    s = make(lab)
    real_inject = faults.inject
    hooked: list[str] = []

    def inject(lab_, fault_name, nodes, params=None):
        if not hooked:
            hooked.append(fault_name)
            broken(s)
        return real_inject(lab_, fault_name, nodes, params)

    real_restore, real_step = faults.restore, runner._Player.step
    undone: list[bool] = []

    def lift(lab_) -> None:
        if hooked and not undone:
            undone.append(True)
            s.undo(lab_)

    def restore(lab_):
        # The runner's way back after a failed run: the sabotage goes first, or the lab
        # would never be steady again.
        lift(lab_)
        return real_restore(lab_)

    def step(player, st, phase):
        # The outage lasts through the method (the heal of a split brain included) and ends
        # where the scenario's own rollbacks begin.
        if phase == "rollback":
            lift(player.lab)
        return real_step(player, st, phase)

    monkeypatch.setattr(faults, "inject", inject)
    monkeypatch.setattr(faults, "restore", restore)
    monkeypatch.setattr(runner._Player, "step", step)
    t0 = time.monotonic()
    run = runner.run_scenario(lab, sc)
    monkeypatch.setattr(faults, "inject", real_inject)
    monkeypatch.setattr(faults, "restore", real_restore)
    monkeypatch.setattr(runner._Player, "step", real_step)
    print(f"{name}: healthy {healthy.duration:.1f} s, sabotaged {time.monotonic() - t0:.1f} s")
    assert hooked, "the scenario never injected its fault"
    assert run.status == "failed", (f"{name} passed with '{s.name}' under it: "
                                    f"{run.problems or run.outages}")
    text = "; ".join(run.problems)
    assert any(w in text for w in words), f"{name}: the verdict does not name what broke: {text}"


def test_sigkill_of_ssh_really_cuts_the_harness_off(steady, broken):
    """The 'cannot be asked' sabotage above is real: lb01 refuses new SSH sessions."""
    lab = steady
    master, _ = _lbs(lab)
    faults.kill(lab, master, "ssh", signal.SIGKILL)
    lab.node(master).close()
    with pytest.raises(observe.ObservationError):
        observe.vip_holders(lab)
