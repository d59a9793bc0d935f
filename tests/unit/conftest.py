from pathlib import Path

import pytest

from lab import topology

ROOT = Path(__file__).resolve().parents[2]


# lab.yaml spells out its profile's values as comments, from this line on.
PROFILE_VALUES = "# The profile's values; uncomment a key to override it"


def spelled_out(text: str) -> str:
    """lab.yaml with the profile's commented values made real: the same lab, every value
    written down, so that a test can change one by editing the text."""
    head, marker, tail = text.partition(PROFILE_VALUES)
    assert marker, "lab.yaml no longer spells out its profile's values"
    lines = tail.split("\n")
    return head + marker + lines[0] + "\n" + "\n".join(
        line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines[1:])


@pytest.fixture
def default_text() -> str:
    return spelled_out((ROOT / "lab.yaml").read_text())


@pytest.fixture
def default_topo() -> topology.Topology:
    return topology.load(ROOT / "lab.yaml")


@pytest.fixture
def seed_dir() -> Path:
    """The kubeadm HA guide's three configs, verbatim (copied from shared/seed)."""
    return ROOT / "tests" / "unit" / "seed"
