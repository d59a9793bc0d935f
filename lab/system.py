"""The host machine: running its tools, and checking that the lab can be built here."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Sequence

from lab.errors import CommandError, PrerequisiteError


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise PrerequisiteError(
            f"{what} needs root: it creates network namespaces and starts daemons inside "
            "them. Run it with sudo (e.g. `sudo .venv/bin/halab up`), or as root."
        )


def require_tools(tools: Iterable[tuple[str, str]]) -> None:
    """``tools`` are (executable, Debian package) pairs; name every missing package at once."""
    missing = sorted({pkg for exe, pkg in tools if shutil.which(exe) is None and
                      not os.path.exists(exe)})
    if missing:
        raise PrerequisiteError(
            "missing system package(s): " + ", ".join(missing) + ". Install them with "
            f"`apt-get install {' '.join(missing)}` (or run `make setup`, which installs "
            "everything halab needs), then run the command again."
        )


def sh(argv: Sequence[str], check: bool = True, input: str | None = None,
       timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a host command; a failure names the command and what it printed."""
    p = subprocess.run(list(argv), capture_output=True, text=True, input=input,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise CommandError("this host", shlex.join(argv), p.returncode, p.stdout, p.stderr)
    return p
