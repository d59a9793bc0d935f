"""What an exercise is, and the two things every exercise does to a node: edit a deployed
file and restart the daemon that reads it, the way a learner would on the node itself.

An exercise breaks the lab the way a person breaks a real one: a config file edited on one
load balancer and its daemon restarted, a forgotten daemon left running on another host.
Nothing here writes through the provisioning: `halab exercise reset` is what puts the
rendered configuration back.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab import faults
from lab.errors import HalabError, LabStateError
from lab.lab import Lab
from lab.topology import Topology

# docs/exercises/ in the checkout: one page per exercise, and the index.
DOCS = Path("docs") / "exercises"

Action = Callable[[Lab], None]


class ExerciseError(HalabError):
    """An exercise name or request that cannot be served (unknown name, nothing active)."""

    exit_code = 2


class ExerciseActive(LabStateError):
    """An exercise is already running on this lab."""


class ExerciseUnavailable(HalabError):
    """The exercise cannot be set on this lab (its lab.yaml lacks what it breaks)."""


@dataclass(frozen=True)
class Exercise:
    """One misconfiguration a learner diagnoses and repairs on the nodes.

    ``breaks`` sets it on a steady lab; ``reference_fix`` repairs it as the exercise's page
    describes (the tests apply it, then `check` must pass); ``cleanup`` removes what the
    exercise added beside the rendered configuration (provisioning cannot know of it);
    ``available`` says why this lab cannot have it, or None."""

    name: str
    title: str
    summary: str  # what the learner is told when it starts (the symptom, not the cause)
    breaks: Action
    reference_fix: Action
    hints: tuple[str, ...]
    level: str = "beginner"  # beginner | intermediate | advanced
    cleanup: Action | None = None
    available: Callable[[Topology], str | None] = field(default=lambda topo: None)

    @property
    def doc(self) -> Path:
        """The exercise's page, relative to the checkout."""
        return DOCS / f"{self.name}.md"

    def as_dict(self) -> dict[str, object]:
        """Plain data, for `--json` and for a web page that lists the exercises."""
        return {"name": self.name, "title": self.title, "summary": self.summary,
                "level": self.level, "hints": len(self.hints), "doc": str(self.doc)}


# -- what a learner does on a node -------------------------------------------------------
def edit(lab: Lab, node: str, path: str, pattern: str, replacement: str) -> None:
    """Replace every match of ``pattern`` (a regular expression, multi-line) in a file on
    the node. A file without a match is not the file this exercise was written for: say
    so, rather than restart a daemon on an unchanged file."""
    n = lab.node(node)
    text = n.read(path)
    if text is None:
        raise HalabError(f"{node} has no readable {path}; `halab exercise reset` provisions "
                         "the lab again")
    new, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    if count == 0:
        raise HalabError(f"{node}:{path} has no line matching {pattern!r}, so this exercise "
                         "cannot edit it (was the file changed by hand? `halab exercise "
                         "reset` writes the rendered one back)")
    n.put(path, new)


def restart(lab: Lab, node: str, service: str) -> None:
    """Stop the daemon, wait until it is gone (keepalived's children linger after their
    parent and would make a new keepalived exit at once), and start it again."""
    faults.stop(lab, node, service)
    faults.start(lab, node, service)
