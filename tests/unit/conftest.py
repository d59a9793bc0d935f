from pathlib import Path

import pytest

from lab import topology

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def default_text() -> str:
    return (ROOT / "lab.yaml").read_text()


@pytest.fixture
def default_topo() -> topology.Topology:
    return topology.load(ROOT / "lab.yaml")


@pytest.fixture
def seed_dir() -> Path:
    """The kubeadm HA guide's three configs, verbatim (copied from shared/seed)."""
    return ROOT / "tests" / "unit" / "seed"
