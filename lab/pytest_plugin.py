"""The pytest side of halab: options, the `lab` fixture and friends, outage reporting.

A thin layer over ``lab.Lab``: everything here also works without pytest.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import faults
from lab import steady as steady_state
from lab.errors import HalabError
from lab.lab import PROVIDERS, Lab
from lab.probes import Prober

# Measured outages, printed at the end of the run (and kept as user properties).
_MEASURED: list[tuple[str, str, float, str]] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("halab")
    g.addoption("--lab-file", default="lab.yaml", help="the lab file (default: lab.yaml)")
    g.addoption("--lab-provider", default=None, choices=PROVIDERS,
                help="realise the lab with this provider (default: lab.yaml's, or netns)")
    g.addoption("--keep-lab", action="store_true",
                help="leave a lab this run brought up running at the end")


def _fail(e: HalabError) -> None:
    pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def lab_file(request: pytest.FixtureRequest) -> Path:
    """The lab file of this run (`--lab-file`), absolute: for tests that run `halab -f`."""
    return Path(request.config.getoption("--lab-file")).resolve()


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """The running lab: the one `halab up` made, or one brought up (and down) for this run."""
    cfg = request.config
    made = False
    try:
        the_lab = Lab.open(Path(cfg.getoption("--lab-file")), cfg.getoption("--lab-provider"))
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
        # checks) is undone first, so that one failure does not cascade.
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
        request.node.user_properties.append((f"outage:{label}", round(seconds, 3)))
        _MEASURED.append((request.node.nodeid, label, seconds, bound))

    return record


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001
    if not _MEASURED:
        return
    tr = terminalreporter
    tr.section("halab: measured client outages")
    for nodeid, label, seconds, bound in _MEASURED:
        tr.write_line(f"{seconds:7.3f} s  {label:<40} bound {bound or '-'}  [{nodeid}]")


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
