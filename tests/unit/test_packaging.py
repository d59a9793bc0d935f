"""Conventions of the package: the pytest plugin loads from anywhere, markers are strict,
pre-1.0 and private-API dependencies are bounded."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pytest(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def test_the_plugin_is_a_pytest11_entry_point():
    eps = {ep.name: ep.value for ep in metadata.entry_points(group="pytest11")}
    assert eps.get("halab") == "lab.pytest_plugin"
    assert not (ROOT / "conftest.py").exists() or "pytest_plugins" not in (
        ROOT / "conftest.py").read_text(), "a second registration: pytest refuses it"


def test_options_are_there_outside_the_checkout(tmp_path):
    p = _pytest("--help", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    for option in ("--lab-file", "--lab-provider", "--keep-lab"):
        assert option in p.stdout


def test_an_unknown_marker_is_an_error(tmp_path):
    (tmp_path / "test_typo.py").write_text(
        "import pytest\n\n@pytest.mark.disruptve\ndef test_x():\n    pass\n")
    p = _pytest("-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path),
                str(tmp_path / "test_typo.py"), cwd=tmp_path)
    assert p.returncode != 0 and "'disruptve' not found in `markers`" in p.stdout + p.stderr


def test_every_marker_of_the_suite_is_registered():
    registered = {m.split(":")[0] for m in PYPROJECT["tool"]["pytest"]["ini_options"]["markers"]}
    assert {"disruptive", "needs_lab", "sabotage"} <= registered
    assert "--strict-markers" in PYPROJECT["tool"]["pytest"]["ini_options"]["addopts"]


def test_pre_1_0_and_private_api_dependencies_have_an_upper_bound():
    project = PYPROJECT["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for group in project["optional-dependencies"].values()
             for r in group]
    # python-vagrant: halab sets its private `_vagrant_exe`.
    must = {"typer", "python-vagrant"}
    for r in reqs:
        try:
            installed = Version(metadata.version(r.name))
        except metadata.PackageNotFoundError:
            installed = None
        bounded = any(s.operator in ("<", "<=", "~=", "==") for s in r.specifier)
        if r.name in must or (installed is not None and installed.major == 0):
            assert bounded, f"{r} needs an upper bound"
        if installed is not None:
            assert r.specifier.contains(installed, prereleases=True), \
                f"installed {r.name} {installed} is outside {r.specifier}"


def test_python_vagrant_still_has_the_private_attribute_halab_sets():
    vagrant = pytest.importorskip("vagrant", reason="python-vagrant: make setup-vagrant")
    v = vagrant.Vagrant(root="/nonexistent", quiet_stdout=True, quiet_stderr=True)
    assert hasattr(v, "_vagrant_exe"), "the isolated libvirt host sets it: see providers/vagrant"


def test_test_files_have_unique_basenames():
    """pytest imports test files by basename (no __init__.py in tests/): two files of one
    name in different folders stop the whole run at collection."""
    root = ROOT / "tests"
    seen: dict[str, list[str]] = {}
    for f in root.rglob("test_*.py"):
        seen.setdefault(f.name, []).append(str(f.relative_to(root)))
    assert not {n: p for n, p in seen.items() if len(p) > 1}
