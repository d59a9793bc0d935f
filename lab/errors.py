"""Errors a person reads.

Every error the CLI and the pytest plugin show to a user is a ``HalabError``: one
paragraph that names the problem and the fix. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class HalabError(Exception):
    """A problem the user can fix; ``exit_code`` is what the CLI returns."""

    exit_code = 1


class LabFileError(HalabError):
    """lab.yaml is missing, unreadable or invalid."""

    exit_code = 2


class PrerequisiteError(HalabError):
    """The machine lacks something the lab needs: root, a Debian package, a free subnet."""

    exit_code = 3


class LabStateError(HalabError):
    """The lab is not in the state the command needs (not up, already up, half gone)."""

    exit_code = 4


class TransportError(HalabError):
    """A node could not be reached at all: different from a command that failed on it."""


class CommandError(HalabError):
    """A command ran on a node and exited with a code nobody expected."""

    def __init__(self, node: str, command: str, rc: int, stdout: str, stderr: str) -> None:
        self.node, self.command, self.rc = node, command, rc
        self.stdout, self.stderr = stdout, stderr
        tail = "\n".join((stderr or stdout).strip().splitlines()[-8:])
        super().__init__(
            f"on {node}: `{command}` exited {rc}" + (f":\n{tail}" if tail else " with no output")
        )


class UsageError(HalabError):
    """A command was asked for something it does not offer (an unknown name, a bad count)."""

    exit_code = 2
