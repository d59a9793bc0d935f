"""`halab bench` on the embedded lab: one short run end to end, its JSON read back, and its
lab gone afterwards. A benchmark, not a test of speed: the only timing judged is the
verdict's own, against the bound the config promises (lab.failover)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.providers.netns import netns_list

pytestmark = [pytest.mark.needs_lab, pytest.mark.disruptive]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench_file(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    f = tmp_path / "lab.yaml"
    # A lab of this test's own (the bench runs it as `btb`): never the session's lab.
    f.write_text((ROOT / "lab.yaml").read_text().replace("name: halab", "name: bt"))
    return f


def _halab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=180)


def test_bench_one_haproxy_crash(bench_file: Path, tmp_path: Path):
    out, svg = tmp_path / "bench.json", tmp_path / "bench.svg"
    try:
        p = _halab("bench", "-f", str(bench_file), "--reps", "1", "--profiles", "seed",
                   "--scenarios", "haproxy-crash", "--json", str(out), "--plot", str(svg),
                   cwd=tmp_path)
        assert p.returncode == 0, p.stderr + p.stdout
        assert "Traceback" not in p.stderr
        doc = json.loads(out.read_text())
        assert set(doc) == {"machine", "profiles"}
        assert doc["machine"]["provider"] == "netns" and doc["machine"]["cores"] >= 1
        seed = doc["profiles"]["seed"]
        assert set(seed) == {"_lab", "haproxy-crash"}
        assert 0 < seed["_lab"]["provision_s"] < seed["_lab"]["up_s"]
        s = seed["haproxy-crash"]
        assert s["runs"] == 1
        # The verdict holds the run to the config's bound: a failed run is a failed test;
        # inconclusive (the lab did not keep its timers on a loaded machine) is not.
        assert s["failed_runs"] == 0, p.stderr
        assert s["outage_s"]["median"] is not None and s["move_s"]["median"] is not None
        assert s["failed_new_connections"] > 0  # HAProxy was killed: the VIP refused some
        bars = ET.parse(svg).getroot().findall(".//{http://www.w3.org/2000/svg}rect"
                                               "[@class='bar']")
        assert len(bars) == 1
        assert [ns for ns in netns_list() if ns.startswith("halab-btb-")] == [], \
            "the bench takes its lab down"
    finally:
        _halab("bench", "--clean", "-f", str(bench_file), cwd=tmp_path)
    assert [ns for ns in netns_list() if ns.startswith("halab-btb-")] == []
