"""The CLI's errors: one paragraph, the right exit code, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _halab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True,
                          cwd=cwd)


@pytest.mark.parametrize("command", [["up"], ["status"], ["down"]])
def test_invalid_lab_file_exits_2_without_traceback(tmp_path, command):
    (tmp_path / "lab.yaml").write_text("name: x\nvip: 192.168.0.203\nnodes: [\n")
    p = _halab(*command, cwd=tmp_path)
    assert p.returncode == 2
    assert "YAML syntax error at line" in p.stderr
    assert "Traceback" not in p.stderr + p.stdout


def test_missing_lab_file(tmp_path):
    p = _halab("status", "-f", str(tmp_path / "none.yaml"), cwd=tmp_path)
    assert p.returncode == 2 and "no such lab file" in p.stderr


def test_status_of_a_lab_that_is_not_up(tmp_path, default_text):
    (tmp_path / "lab.yaml").write_text(default_text.replace("name: halab", "name: notup"))
    p = _halab("status", cwd=tmp_path)
    assert p.returncode == 4 and "not up" in p.stderr and "Traceback" not in p.stderr
