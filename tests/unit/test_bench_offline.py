"""`halab bench` without root or a lab: its statistics, its JSON's shape, its SVG plot, its
options, and that its lab is always taken down (fakes stand in for the lab and the runs)."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab import bench, benchplot, profiles
from lab.errors import LabStateError, UsageError
from lab.measure import Figures, Verdict
from lab.probes import Holding, Timeline

ROOT = Path(__file__).resolve().parents[2]
SVG = "{http://www.w3.org/2000/svg}"


# -- statistics ----------------------------------------------------------------------------
def test_p95_is_the_nearest_rank():
    assert bench.p95([float(x) for x in range(1, 21)]) == 19.0  # ceil(0.95 * 20) = 19th
    assert bench.p95([float(x) for x in range(1, 22)]) == 20.0  # ceil(19.95) = 20th
    # Fewer than 20 runs: the maximum, never a value interpolated beyond what was seen.
    assert bench.p95([3.0, 1.0, 2.0, 5.0, 4.0]) == 5.0
    assert bench.p95([0.7]) == 0.7
    with pytest.raises(ValueError):
        bench.p95([])


def test_spread():
    assert bench.spread([4.0, 1.0, 3.0, 2.0]) == {"min": 1.0, "median": 2.5, "p95": 4.0,
                                                  "max": 4.0}
    assert bench.spread([]) == {"min": None, "median": None, "p95": None, "max": None}


def _figures(outage: float, moved: float | None, refused: int = 0, cut: int = 0) -> Figures:
    return Figures("api", 0.0, 10.0, outage, True, 100, refused + cut, refused, cut, 0,
                   moved_to="lb02", moved_s=moved)


def _verdict(status: str, outage: float, moved: float | None = 1.0, refused: int = 0,
             cut: int = 0) -> Verdict:
    return Verdict(status, () if status == "passed" else ("why",),
                   _figures(outage, moved, refused, cut))


def test_a_run_counts_refused_and_cut_probes_as_failed_new_connections():
    r = bench.RunResult.of(_verdict("passed", 3.2, 3.1, refused=40, cut=2), wait_s=0.5)
    assert (r.status, r.outage_s, r.move_s, r.failed_new_connections, r.wait_s) == (
        "passed", 3.2, 3.1, 42, 0.5)


def test_summarise_counts_runs_by_verdict():
    runs = [bench.RunResult.of(_verdict("passed", 3.0, 2.9, refused=10)),
            bench.RunResult.of(_verdict("failed", 9.0, None, cut=1)),
            bench.RunResult.of(_verdict("unknown", 4.0, 3.5)),
            bench.RunResult.of(_verdict("inconclusive", 5.0, 4.0)),
            bench.RunResult("error", reasons=("the lab was not steady",))]
    s = bench.summarise(runs)
    assert s["runs"] == 5
    assert s["failed_runs"] == 3  # failed, unknown, error: none of them is fine
    assert s["inconclusive_runs"] == 1
    assert s["failed_new_connections"] == 11
    assert s["outage_s"] == {"min": 3.0, "median": 4.5, "p95": 9.0, "max": 9.0}
    assert s["move_s"]["median"] == 3.5  # the runs that saw a move: 2.9, 3.5, 4.0
    # A scenario whose VIP stays put has no move time at all.
    assert bench.summarise(runs, moves=False)["move_s"]["median"] is None


# -- names and options ---------------------------------------------------------------------
@pytest.mark.parametrize(("name", "want"), [("halab", "halabb"), ("bench", "benchb"),
                                            ("abcdefghijkl", "abcdefghijkb"),
                                            ("abcdefghijkb", "abcdefghijkc")])
def test_bench_name(name, want):
    assert bench.bench_name(name) == want
    assert bench.NAME_RE.match(want) and want != name


def test_bench_topology_takes_the_profile_and_a_name_of_its_own(default_topo):
    topo = bench.bench_topology(ROOT / "lab.yaml", "kubeadm-guide")
    assert topo.name == bench.bench_name(default_topo.name)
    assert topo.prefix == f"halab-{topo.name}-"
    assert topo.profile == "kubeadm-guide" and topo.keepalived.check.interval == 3


def test_plan_defaults_and_validation():
    p = bench.plan(None, None, 10)
    assert p.profiles == tuple(profiles.names()) and p.scenarios == tuple(bench.SCENARIOS)
    assert bench.plan("seed, fast,seed", "haproxy-crash", 2).profiles == ("seed", "fast")
    assert bench.plan("seed", None, 1, 5).scenarios == ()  # --soak alone: the soak only
    assert bench.plan("seed", "lb-crash", 1, 5).scenarios == ("lb-crash",)
    for args, words in [(("nope", None, 1), "unknown profile 'nope'"),
                        (("seed", "haproxy-crash,bogus", 1), "unknown scenario 'bogus'"),
                        (("seed", None, 0), "--reps must be at least 1"),
                        (("seed", None, 1, -1.0), "--soak"),
                        ((",", None, 1), "names no profile")]:
        with pytest.raises(UsageError, match=words) as e:
            bench.plan(*args)
        assert e.value.exit_code == 2
    with pytest.raises(UsageError, match=r"\.svg"):
        bench.check_plot_path(Path("out.png"))


def test_plan_follows_whatever_profiles_hold(monkeypatch):
    monkeypatch.setitem(profiles.PROFILES, "tuned", {})
    assert bench.plan(None, "lb-crash", 1).profiles[-1] == "tuned"


def _halab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True,
                          cwd=cwd)


@pytest.mark.parametrize(("args", "words"), [
    (["--profiles", "nope"], "unknown profile"),
    (["--scenarios", "haproxy-crash,nope"], "unknown scenario"),
    (["--reps", "0"], "--reps must be at least 1"),
    (["--plot", "out.png"], "SVG"),
    (["--provider", "nope"], "unknown provider"),
])
def test_cli_refuses_bad_options_before_touching_anything(args, words):
    p = _halab("bench", "-f", str(ROOT / "lab.yaml"), *args, cwd=ROOT)
    assert p.returncode == 2, p.stderr
    assert words in p.stderr and "Traceback" not in p.stderr + p.stdout
    assert len(p.stderr.strip().splitlines()) == 1  # one paragraph


# -- the run, with fakes -------------------------------------------------------------------
class FakeProvider:
    name = "netns"


class FakeProber:
    def close(self) -> None:
        pass


class FakeLab:
    def __init__(self, topo, up: bool = False) -> None:
        self.topo, self.up, self.downs = topo, up, 0
        self.provider, self.prober = FakeProvider(), FakeProber()

    def is_up(self) -> bool:
        return self.up

    def down(self) -> None:
        self.downs += 1


@pytest.fixture
def fake(monkeypatch):
    """Bench with every lab a FakeLab, bring-up and settling instant, each scenario's run a
    canned verdict; returns the labs it opened."""
    opened: list[FakeLab] = []

    def open_(self, profile):
        opened.append(FakeLab(bench.bench_topology(ROOT / "lab.yaml", profile)))
        return opened[-1]

    monkeypatch.setattr(bench.Bench, "open", open_)
    monkeypatch.setattr(bench, "bring_up", lambda lab, note: {"up_s": 5.0, "provision_s": 1.5})
    monkeypatch.setattr(bench, "settle", lambda lab: None)
    monkeypatch.setattr(bench, "wait_span", lambda topo: 0.0)
    for name, sc in list(bench.SCENARIOS.items()):
        monkeypatch.setitem(bench.SCENARIOS, name, bench.Scenario(
            name, sc.summary, lambda lab, w: _verdict("passed", 3.0, 2.5, refused=4), sc.moves))
    return opened


def test_json_shape(fake):
    p = bench.plan("seed,kubeadm-guide", "haproxy-crash,master-crash", 3)
    doc = json.loads(json.dumps(bench.Bench(ROOT / "lab.yaml", p, seed=1).run(lambda m: None)))
    assert set(doc) == {"machine", "profiles"}
    m = doc["machine"]
    assert {"cores", "memory_mib", "kernel", "load", "provider", "halab_commit"} <= set(m)
    assert len(m["load"]["before"]) == len(m["load"]["after"]) == 3
    assert m["provider"] == "netns" and m["reps"] == 3 and m["seed"] == 1
    assert list(doc["profiles"]) == ["seed", "kubeadm-guide"]
    for res in doc["profiles"].values():
        assert set(res) == {"_lab", "haproxy-crash", "master-crash"}
        assert res["_lab"] == {"up_s": 5.0, "provision_s": 1.5}
        s = res["haproxy-crash"]
        assert set(s) == {"outage_s", "move_s", "failed_new_connections", "runs",
                          "failed_runs", "inconclusive_runs"}
        assert set(s["outage_s"]) == set(s["move_s"]) == {"min", "median", "p95", "max"}
        assert (s["runs"], s["failed_new_connections"], s["failed_runs"]) == (3, 12, 0)
        assert res["master-crash"]["move_s"]["median"] is None  # the VIP stays put
    assert [lab.downs for lab in fake] == [1, 1]


def test_rows_one_per_profile_and_scenario(fake):
    p = bench.plan("seed,fast", "haproxy-crash,lb-crash,keepalived-stop", 1)
    rows = bench.rows(bench.Bench(ROOT / "lab.yaml", p).run(lambda m: None))
    assert rows[0][:4] == ["profile", "scenario", "outage median s", "outage p95 s"]
    assert [r[:2] for r in rows[1:] if not r[1].startswith("(")] == [
        [p_, s] for p_ in ("seed", "fast") for s in ("haproxy-crash", "lb-crash",
                                                    "keepalived-stop")]


@pytest.mark.parametrize("boom", [KeyboardInterrupt, RuntimeError])
def test_the_lab_is_taken_down_whatever_happens(fake, monkeypatch, boom):
    def explode(lab, w):
        raise boom()

    monkeypatch.setitem(bench.SCENARIOS, "lb-crash",
                        bench.Scenario("lb-crash", "", explode))
    p = bench.plan("seed,fast", "haproxy-crash,lb-crash", 2)
    with pytest.raises(boom):
        bench.Bench(ROOT / "lab.yaml", p).run(lambda m: None)
    assert fake[-1].downs == 1 and fake[-1].topo.profile == "seed"
    assert len(fake) == 1  # the next profile was never brought up


def test_an_error_in_a_run_is_a_failed_run_not_the_end(fake, monkeypatch):
    from lab.errors import HalabError

    def flaky(lab, w):
        raise HalabError("timed out waiting for the VIP")

    monkeypatch.setitem(bench.SCENARIOS, "lb-crash", bench.Scenario("lb-crash", "", flaky))
    doc = bench.Bench(ROOT / "lab.yaml", bench.plan("seed", "lb-crash", 2)).run(lambda m: None)
    s = doc["profiles"]["seed"]["lb-crash"]
    assert (s["runs"], s["failed_runs"], s["outage_s"]["median"]) == (2, 2, None)


def test_a_bench_lab_already_up_is_refused(monkeypatch):
    monkeypatch.setattr(bench.Bench, "open", lambda self, prof: FakeLab(
        bench.bench_topology(ROOT / "lab.yaml", prof), up=True))
    with pytest.raises(LabStateError, match="already up.*--clean"):
        bench.Bench(ROOT / "lab.yaml", bench.plan("seed", None, 1)).run(lambda m: None)


# -- the soak's pieces ---------------------------------------------------------------------
def test_vip_changes_counts_samples_off_the_master_and_unknown_ones():
    tl = Timeline(0.05)
    tl.holdings = [Holding(0.0, "lb01", True), Holding(0.0, "lb02", False),
                   Holding(1.0, "lb01", True), Holding(1.0, "lb02", True),  # split
                   Holding(2.0, "lb01", None, "ssh"), Holding(2.0, "lb02", False),
                   Holding(-1.0, "lb02", True)]  # before the soak: not counted
    assert bench.vip_changes(tl, "lb01", 0.0) == (1, 1)


def test_saturate_ends_its_busy_loops_by_pid():
    with bench.saturate(1) as pids:
        assert len(pids) == 1 and Path(f"/proc/{pids[0]}").exists()
    assert not Path(f"/proc/{pids[0]}").exists()  # ended and reaped


# -- the plot ------------------------------------------------------------------------------
def _doc() -> dict:
    def s(median, p95):
        return {"outage_s": {"min": median, "median": median, "p95": p95, "max": p95}}

    return {"machine": {}, "profiles": {
        "seed": {"_lab": {"up_s": 6.0, "provision_s": 1.7}, "haproxy-crash": s(3.3, 4.5),
                 "lb-crash": s(1.0, 1.0), "lb-return": s(0.0, 0.0)},
        "kubeadm-guide": {"haproxy-crash": s(30.0, 33.0), "lb-crash": s(None, None),
                          "lb-return": s(0.1, 0.1)},
        "fast": {"haproxy-crash": s(0.1, 0.25), "lb-crash": s(0.01, 0.01)}}}


def test_plot_is_svg_with_one_bar_per_profile_and_scenario():
    root = ET.fromstring(benchplot.svg(_doc()))
    assert root.tag == f"{SVG}svg"
    bars = root.findall(f".//{SVG}rect[@class='bar']")
    cells = {(b.get("data-profile"), b.get("data-scenario")) for b in bars}
    assert len(bars) == len(cells) == 9
    assert cells == {(p, s) for p in ("seed", "kubeadm-guide", "fast")
                     for s in ("haproxy-crash", "lb-crash", "lb-return")}
    text = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "log scale" in text and "no figure" in text and "0 (no outage in any run)" in text


def test_plot_time_axis_is_logarithmic():
    bars = {(b.get("data-profile"), b.get("data-scenario")): float(b.get("width"))
            for b in ET.fromstring(benchplot.svg(_doc())).findall(
                f".//{SVG}rect[@class='bar']")}
    # 0.1 s, 1 s, 30 s: equal ratios make equal steps.
    w01, w1 = bars[("fast", "haproxy-crash")], bars[("seed", "lb-crash")]
    w10x = bars[("kubeadm-guide", "haproxy-crash")]
    step = w1 - w01
    assert step > 0
    assert w10x - w1 == pytest.approx(step * 1.4771, rel=1e-3)  # log10(30)


def test_the_random_wait_spans_an_advert_or_a_check_whichever_is_longer():
    from lab import topology

    root = Path(__file__).resolve().parents[2]
    assert bench.wait_span(topology.load(root / "lab.yaml")) == 2.0  # the seed's check
    assert bench.wait_span(topology.load(root / "lab.yaml", profile="kubeadm-guide")) == 3.0
    # fast: no vrrp_script (the watcher tells keepalived), so one advert interval.
    assert bench.wait_span(topology.load(root / "lab.yaml", profile="fast")) == 0.1
