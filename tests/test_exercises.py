"""Every exercise, from start to solved, on the real lab: `start` breaks it, `check` fails and
names the problem, the exercise's reference fix (a file edited on the node and its daemon
restarted, as a learner would) is applied, `check` passes, and the lab is steady.

`check` judges through the same path as the failover tests (lab.steady, lab.failover,
lab.measure): a broken lab must fail it, a repaired one pass it within the bound the
configuration promises. The unit tests (tests/unit/test_exercise_catalogue.py) hold the catalogue,
the pages and the CLI's errors.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from lab import exercises
from lab import steady as steady_state
from lab.exercises import ExerciseActive, ExerciseError
from provision import names

pytestmark = [pytest.mark.needs_lab, pytest.mark.disruptive]


@pytest.fixture
def exercise_lab(steady):
    """A steady lab with no exercise active; an exercise a test leaves active (it failed
    half-way) is reset, so that the next test starts on the lab halab rendered."""
    lab = steady
    if exercises.active(lab) is not None:
        exercises.reset(lab)
    yield lab
    if exercises.active(lab) is not None:
        exercises.reset(lab)


def _check(lab, name=None):
    """`check`, measured again once when the failover could not be judged at all (a hole
    in the observation on a busy machine, nothing else wrong): never a pass by itself."""
    result = exercises.check(lab, name)
    if result.inconclusive:
        result = exercises.check(lab, name)
    return result


def _what_breaks(lab) -> dict[str, list[str]]:
    """Words the failed check must say, per exercise: the problem named, in the lab's own
    names (each of them)."""
    master, backup = lab.topo.master_lb.name, lab.topo.best_backup_lb.name
    failover = f"did not fail over to {backup}"
    return {
        "backup-haproxy-down": [f"{backup}: haproxy's configuration is invalid",
                                f"{names.HAPROXY_UNIT} is not running on {backup}"],
        "wrong-backend": [f"{master}: HAProxy's last health check of {names.API_PROXY}/"
                          "k8s-master-02 failed"],
        "equal-priorities": [f"the VIP is on {backup}, not on {master} alone"],
        "failing-health-check": [f"{master}: keepalived's configuration is invalid",
                                 f"the VIP is on {backup}, not on {master} alone"],
        "no-track-script": [failover, f"never seen on {backup} alone"],
        "auth-mismatch": [f"the VIP is on {master}, {backup}, not on {master} alone"],
        "backup-binds-own-address": [failover, "no good api probe"],
        "wrong-unicast-peer": [failover, f"never seen on {backup} alone"],
        "rogue-router": ["which is no load balancer, holds the VIP",
                         f"the VIP is on no LB, not on {master} alone"],
    }


def test_check_passes_on_a_healthy_lab(exercise_lab):
    lab = exercise_lab
    result = _check(lab)
    assert result.ok, "\n".join(result.problems)
    assert result.exercise is None and not result.solved
    assert result.failover is not None and result.failover.startswith("PASSED")
    assert steady_state.problems(lab) == []


def test_every_exercise_names_what_it_breaks(lab):
    assert set(_what_breaks(lab)) == set(exercises.CATALOGUE)


@pytest.mark.parametrize("name", list(exercises.CATALOGUE))
def test_exercise_start_check_fix_check(exercise_lab, name):
    lab = exercise_lab
    ex = exercises.exercise(name)
    if ex.available(lab.topo) is not None:
        pytest.skip(ex.available(lab.topo))
    exercises.start(lab, name)
    assert (exercises.active(lab) or {}).get("name") == name

    broken = _check(lab, name)
    assert not broken.ok, f"the broken lab passed the check: {broken.passed}"
    assert not broken.solved and not broken.inconclusive, broken.problems
    text = "\n".join(broken.problems)
    # The problem named in every one of the expected ways.
    for words in _what_breaks(lab)[name]:
        assert words in text, f"the check does not say '{words}':\n{text}"
    assert exercises.active(lab) is not None, "a failed check must leave the exercise on"

    ex.reference_fix(lab)
    fixed = _check(lab, name)
    assert fixed.ok, "the repaired lab failed the check:\n" + "\n".join(fixed.problems)
    assert fixed.solved and fixed.exercise == name
    assert exercises.active(lab) is None
    assert name in [s["name"] for s in exercises.progress(lab)["solved"]]
    assert steady_state.problems(lab) == []


def test_one_exercise_at_a_time_and_reset_restores_the_render(exercise_lab, lab_file):
    lab = exercise_lab
    _, backup = lab.topo.master_lb.name, lab.topo.best_backup_lb.name
    exercises.start(lab, "backup-binds-own-address")
    with pytest.raises(ExerciseActive, match="'backup-binds-own-address' is already active"):
        exercises.start(lab, "equal-priorities")
    with pytest.raises(ExerciseError, match="not 'equal-priorities'"):
        exercises.check(lab, "equal-priorities")
    # The CLI says the same, in one paragraph, with the lab-state exit code.
    p = subprocess.run([sys.executable, "-m", "lab", "exercise", "start", "wrong-backend",
                        "-f", str(lab_file)], capture_output=True, text=True)
    assert p.returncode == 4 and "already active" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr

    exercises.reset(lab)
    assert exercises.active(lab) is None
    rendered = lab.state.rendered(backup) / names.HAPROXY_CFG.lstrip("/")
    assert lab.node(backup).read(names.HAPROXY_CFG) == rendered.read_text()
    assert steady_state.problems(lab) == []


def test_a_mystery_exercise_keeps_its_name(exercise_lab, lab_file):
    lab = exercise_lab
    exercises.start(lab, random=True)
    shown = exercises.active(lab)
    assert shown is not None and shown["mystery"] and shown["name"] is None
    h = exercises.hint(lab)
    assert h.exercise is None and h.hints[0][0] == 1
    p = subprocess.run([sys.executable, "-m", "lab", "exercise", "list", "--json",
                        "-f", str(lab_file)], capture_output=True, text=True)
    assert '"active": true' not in p.stdout, "list gave the mystery away"
    exercises.reset(lab)
    assert exercises.active(lab) is None
