"""Run halab at a (pseudo-)terminal, as a person would: what it draws for a TTY."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path


def at_terminal(*args: str, cwd: Path, columns: int, lines: int) -> tuple[int, str, str]:
    """`python -m lab ARGS` with its stdout on a pty of ``columns`` x ``lines``:
    (exit code, what it drew, its stderr)."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "LINES": str(lines), "NO_COLOR": "1"}
    p = subprocess.Popen([sys.executable, "-m", "lab", *args], cwd=cwd,
                         stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    rc = p.wait(timeout=30)
    return rc, b"".join(chunks).decode(), (p.stderr.read() if p.stderr else b"").decode()
