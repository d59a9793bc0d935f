"""The pytest side of halab: options, the `lab` fixture and friends, outage reporting.

A thin layer over ``lab.Lab``: everything here also works without pytest.

Under pytest-xdist (`pytest -n 2`) every worker has a lab of its own: the lab file given
with `--lab-file`, renamed for the worker (`halab` -> `halabgw0`, ...) and written to
`.halab/_xdist/<name>.yaml` beside it, so that its namespaces, state folder and logs carry
the worker's name and `halab clean -f .halab/_xdist/halabgw0.yaml` finds them. The suite
mostly waits on protocol timers (VRRP's adverts, HAProxy's checks), so several labs make
progress side by side on a few cores.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import faults, topology
from lab import steady as steady_state
from lab.errors import HalabError
from lab.lab import PROVIDERS, Lab
from lab.probes import Prober

# Measured outages, printed at the end of the run. They travel as user properties of the
# test's report (pytest-xdist hands reports, not module state, to the controller).
_MEASURED: list[tuple[str, str, float, str]] = []
OUTAGE, BOUND = "outage:", "outage-bound:"
# Where the run's time went: test time (setup + call + teardown) summed by file.
_BY_FILE: dict[str, float] = defaultdict(float)
_STARTED = pytest.StashKey[float]()
_LAB_PATH = pytest.StashKey[Path]()
WORKERS_DIR = "_xdist"  # under .halab/ beside the base lab file: `_` starts no lab name


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("halab")
    g.addoption("--lab-file", default="lab.yaml", help="the lab file (default: lab.yaml)")
    g.addoption("--lab-provider", default=None, choices=PROVIDERS,
                help="realise the lab with this provider (default: lab.yaml's, or netns)")
    g.addoption("--keep-lab", action="store_true",
                help="leave a lab this run brought up running at the end")


def _fail(e: HalabError) -> None:
    pytest.fail(str(e), pytrace=False)


def worker_id(config: pytest.Config) -> str | None:
    """The pytest-xdist worker this process is ("gw0", ...), or None outside xdist."""
    workerinput = getattr(config, "workerinput", None)
    return workerinput["workerid"] if workerinput else None


def worker_lab_name(base: str, worker: str) -> str:
    """The base lab's name with the worker's id after it, cut to the 12 characters a lab
    name may have (lab.topology): `halab` + `gw3` -> `halabgw3`."""
    suffix = re.sub(r"[^a-z0-9]", "", worker.lower())
    return base[:12 - len(suffix)] + suffix


def worker_lab_file(base: Path, worker: str) -> Path:
    """The worker's own lab file: the base lab file renamed for the worker, written beside
    it under .halab/_xdist/ (its state folder then lands in .halab/_xdist/.halab/NAME/)."""
    topo = topology.load(base)
    name = worker_lab_name(topo.name, worker)
    path = base.parent / ".halab" / WORKERS_DIR / f"{name}.yaml"
    text = topology.renamed(base.read_text(), name, f"lab {name} of pytest-xdist worker "
                            f"{worker}: {base} with its name replaced (made by halab's "
                            "pytest plugin)")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def lab_path(config: pytest.Config) -> Path:
    """The lab file this process works on, absolute: `--lab-file`, or under pytest-xdist
    the worker's own copy of it."""
    if _LAB_PATH not in config.stash:
        base = Path(config.getoption("--lab-file")).resolve()
        worker = worker_id(config)
        config.stash[_LAB_PATH] = base if worker is None else worker_lab_file(base, worker)
    return config.stash[_LAB_PATH]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`--dist loadgroup`: pytest-xdist (3.8) sends a test marked `xdist_group(NAME)` to
    the worker of its group by naming the group in the test's node id (`id@NAME`), which it
    sets where pytest 8 kept it (`item._nodeid`); pytest 9 reads `item._id`, so every
    group was spread over the workers (seen: test_classroom's class built twice at once).
    The same, where pytest 9 reads it."""
    if not getattr(config.option, "loadgroup", False):
        return
    try:
        from _pytest.nodeid import NodeId
    except ImportError:  # pytest 8: xdist's own hook works
        return
    for item in items:
        groups = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                         for m in item.iter_markers("xdist_group")})
        suffix = "@" + "_".join(groups)
        if groups and not item.nodeid.endswith(suffix) and isinstance(
                getattr(item, "_id", None), NodeId):
            item._id = NodeId.parse(item.nodeid + suffix)


@pytest.fixture(scope="session")
def lab_file(request: pytest.FixtureRequest) -> Path:
    """The lab file of this run (`--lab-file`, or this xdist worker's own), absolute: for
    tests that run `halab -f`."""
    try:
        return lab_path(request.config)
    except HalabError as e:
        _fail(e)


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """The running lab: the one `halab up` made, or one brought up (and down) for this run.
    Under pytest-xdist, this worker's own lab."""
    cfg = request.config
    made = False
    try:
        the_lab = Lab.open(lab_path(cfg), cfg.getoption("--lab-provider"))
        if not the_lab.is_up():
            the_lab.up()
            made = True
        else:
            faults.restore(the_lab)
        steady_state.wait(the_lab)
    except HalabError as e:
        _fail(e)
    try:
        yield the_lab
    finally:
        the_lab.prober.close()
        if made and not cfg.getoption("--keep-lab"):
            the_lab.down()
        else:
            the_lab.close()


@pytest.fixture
def steady(lab: Lab) -> Iterator[Lab]:
    """For disruptive tests: the lab is steady before the test, and made steady after it."""
    try:
        # Whatever an earlier test left broken (a failed test skips its own teardown's
        # checks) is undone first, so that one failure does not cascade. A lab found
        # steady is steady: no second look.
        if steady_state.problems(lab):
            faults.restore(lab)
            steady_state.wait(lab)
    except HalabError as e:
        _fail(e)
    yield lab
    faults.restore(lab)
    steady_state.wait(lab)


@pytest.fixture
def probe(lab: Lab) -> Prober:
    """TCP/TLS/HTTP through the VIP from the client; `.continuous()` every 50 ms."""
    return lab.prober


@pytest.fixture(scope="session")
def kubectl(lab: Lab):  # noqa: ANN201 - lab.kubectl.Kubectl, imported lazily
    """A real Kubernetes client from the lab's client: kubectl with the lab's kubeconfig
    (.halab/<name>/kubeconfig: https://VIP:6443, the lab CA)."""
    from lab.kubectl import Kubectl

    try:
        return Kubectl(lab)
    except HalabError as e:
        _fail(e)


@pytest.fixture(scope="session")
def hosts(lab: Lab) -> dict:
    """Every managed node as a pytest-testinfra host, by node name."""
    return {name: node.host for name, node in lab.nodes.items() if node.managed}


@pytest.fixture
def report_outage(request: pytest.FixtureRequest):  # noqa: ANN201
    """report_outage(label, seconds, bound_text): shown in the run's summary."""

    def record(label: str, seconds: float, bound: str = "") -> None:
        request.node.user_properties.append((f"{OUTAGE}{label}", round(seconds, 3)))
        request.node.user_properties.append((f"{BOUND}{label}", bound))

    return record


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_STARTED] = time.monotonic()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Runs where the results are reported (the controller under xdist): every outage a
    test measured, and the test's time by file."""
    _BY_FILE[report.nodeid.split("::")[0]] += report.duration
    if report.when != "call":
        return
    props = dict(report.user_properties)
    for key, seconds in report.user_properties:
        if key.startswith(OUTAGE):
            label = key[len(OUTAGE):]
            _MEASURED.append((report.nodeid, label, seconds, props.get(BOUND + label, "")))


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:  # noqa: ANN001
    tr = terminalreporter
    if _MEASURED:
        tr.section("halab: measured client outages")
        for nodeid, label, seconds, bound in _MEASURED:
            tr.write_line(f"{seconds:7.3f} s  {label:<40} bound {bound or '-'}  [{nodeid}]")
    if _BY_FILE and _STARTED in config.stash:
        # With N workers the files' times add up to about N times the wall time.
        wall = time.monotonic() - config.stash[_STARTED]
        workers = getattr(config.option, "numprocesses", None)
        workers = workers if isinstance(workers, int) else 0
        tr.section("halab: test time by file")
        for path, seconds in sorted(_BY_FILE.items(), key=lambda kv: -kv[1]):
            tr.write_line(f"{seconds:8.1f} s  {path}")
        tr.write_line(f"{sum(_BY_FILE.values()):8.1f} s  in all; wall {wall:.1f} s"
                      + (f" with {workers} workers" if workers else ""))


_LOG_MARKS = pytest.StashKey[dict]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):  # noqa: ANN201
    """Before a lab test: where every node's daemon logs stand, so that a failure shows
    what this test's daemons wrote, from this lab, and nothing older."""
    the_lab = item.funcargs.get("lab") or item.funcargs.get("steady")
    if isinstance(the_lab, Lab):
        item.stash[_LOG_MARKS] = _marks(the_lab)
    yield


def _marks(the_lab: Lab) -> dict:
    marks = {}
    for name, node in the_lab.nodes.items():
        if node.managed and the_lab.provider.node_state(name) == "running":
            try:
                marks[name] = node.services.log_mark()
            except HalabError:
                continue
    return marks


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # noqa: ANN201
    """On a failed lab test, attach what each daemon of this lab logged during the test
    (netns: the lab's own log files from the test's start; VMs: journalctl on the node)."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.failed or _LOG_MARKS not in item.stash:
        return
    the_lab = item.funcargs.get("lab") or item.funcargs.get("steady")
    for name, mark in item.stash[_LOG_MARKS].items():
        try:
            if the_lab.provider.node_state(name) != "running":
                continue
            logs = the_lab.node(name).services.logs_since(mark)
        except HalabError as e:
            rep.sections.append((f"halab log {name}", f"(could not read: {e})"))
            continue
        for unit, text in logs.items():
            rep.sections.append((f"halab log {name}/{unit} ({the_lab.provider.name}, "
                                 "during this test)", text))
