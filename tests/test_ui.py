"""The classroom page in a real browser: Debian's headless Chromium, driven by selenium,
clicks the page's buttons and reads what the page says while the lab fails over.

Not a packet of this test can leave the machine, nor reach the lab from the host's own
namespace: the browser, its driver and the page's server all run in a network namespace of
the lab's prefix that has nothing but loopback (`halab-<name>-browser`, made and removed
here; `halab clean` removes it too after a crash). The page's server reaches the lab only
through the lab's own namespaced ways in (SSH through the client's namespace, probes from
sockets made in it, the nodes' own namespaces): run from a namespace with no route to the
lab, it could not show a single holder otherwise. Chromium's own background traffic (updates,
sync, safe browsing, name resolution but for 127.0.0.1) is switched off as well.

Every time bound is the config's (lab.timing) plus the page's own latency
(lab.ui.view.page_latency_s: how late the page may be, by construction); an unknown is never
a holder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lab import steady as steady_state
from lab import timing
from lab.providers.netns import add_netns, inside, netns_list, remove_netns
from lab.system import sh
from lab.ui import view
from lab.ui.server import UiServer

pytestmark = [pytest.mark.needs_lab]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox",  # root, no display
    "--disable-gpu", "--no-first-run", "--no-default-browser-check",
    # Nothing of Chromium's own goes out: no updates, sync, default apps, extensions,
    # metrics or safe browsing, and no name resolves but 127.0.0.1.
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--disable-breakpad",
    "--metrics-recording-only", "--safebrowsing-disable-auto-update",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--window-size=1300,1000",
]
# Waits that are not timing assertions: how long a busy machine may take to start Chromium
# and show the page's first answers.
START_S = 60.0
@pytest.fixture
def browser_ns(lab) -> Iterator[str]:
    """A namespace with loopback only, named with the lab's prefix."""
    ns = f"{lab.topo.prefix}browser"
    if ns in netns_list():
        remove_netns(ns)  # an interrupted run's: ours by its name
    add_netns(ns)
    try:
        links = sh(["ip", "-n", ns, "-o", "link", "show"]).stdout.splitlines()
        assert [ln.split(":")[1].strip() for ln in links] == ["lo"], links
        routes = sh(["ip", "-n", ns, "-4", "route", "show"]).stdout.strip()
        assert routes == "", f"the browser's namespace must have no route: {routes}"
        yield ns
    finally:
        remove_netns(ns)  # what is left in it (nothing, after quit()) is ours: by PID


@contextmanager
def browser(lab_file: Path, ns: str, tmp: Path) -> Iterator[tuple[object, UiServer]]:
    """`halab ui` and a headless Chromium on its page, both inside ``ns``."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            pytest.fail(f"{path} is missing: the page's test needs Debian's {package} "
                        "(`make setup-tests`, or `make test`, installs it)", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with inside(ns):
        ui = UiServer(lab_file, port=0).start()
        driver = None
        try:
            opts = webdriver.ChromeOptions()
            opts.binary_location = CHROMIUM  # given: selenium never looks for one to fetch
            for a in [*CHROMIUM_ARGS, f"--user-data-dir={tmp / 'chromium'}"]:
                opts.add_argument(a)
            service = Service(CHROMEDRIVER, log_output=str(tmp / "chromedriver.log"))
            driver = webdriver.Chrome(service=service, options=opts)
            driver.set_page_load_timeout(START_S)
            driver.get(ui.url)
            yield driver, ui
        finally:
            if driver is not None:
                driver.quit()  # Chromium and chromedriver, by the PIDs selenium started
            ui.stop()


def _text(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text.strip()


def _card(driver, node: str) -> str:
    """A node's card as text, read in one go (the page redraws the cards on every push)."""
    return driver.execute_script(
        "const c = document.querySelector(`[data-node='${arguments[0]}']`);"
        "return c ? c.innerText : '';", node)


def wait_text(driver, element_id: str, want: str, timeout: float,
              since: float | None = None) -> tuple[float, list[str]]:
    """Until #element_id reads ``want``; returns the seconds since ``since`` (default: now)
    and every distinct text seen on the way, for the failure message and for checks."""
    t0 = time.monotonic() if since is None else since
    seen: list[str] = []
    while True:
        text = _text(driver, element_id)
        if not seen or seen[-1] != text:
            seen.append(text)
        if text == want:
            return time.monotonic() - t0, seen
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"#{element_id} did not read {want!r} within {timeout:.2f} s; it read, "
                        f"in turn: {seen}; #vip-why: {_text(driver, 'vip-why')!r}",
                        pytrace=False)
        time.sleep(0.05)


def button(driver, label: str, timeout: float = START_S):
    """The page's button with that text (or aria-label), once the page has drawn it."""
    from selenium.webdriver.common.by import By

    xpath = f"//button[normalize-space()='{label}' or @aria-label='{label}']"
    t0 = time.monotonic()
    while True:
        found = driver.find_elements(By.XPATH, xpath)
        if found:
            return found[0]
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"no button '{label}' on the page after {timeout:.0f} s", pytrace=False)
        time.sleep(0.1)


def screenshot(driver, path: Path) -> None:
    """The whole page, as tall as it is."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1300, int(height) + 20)
    driver.execute_script("window.scrollTo(0, 0)")  # the click scrolled to its button
    time.sleep(0.3)
    driver.save_screenshot(str(path))
    driver.set_window_size(1300, 1000)


@pytest.mark.disruptive
def test_kill_haproxy_on_lb01_from_the_page_shows_lb02_within_the_bound(
        steady, browser_ns, lab_file, tmp_path, report_outage):
    lab = steady
    master, backup = lab.topo.master_lb.name, lab.topo.best_backup_lb.name
    if not timing.haproxy_crash_fails_over(lab.topo):
        pytest.skip("this lab's check weights never let the backup outrank the master")
    crash = timing.haproxy_crash(lab.topo)
    bound = crash.with_margin + view.page_latency_s()
    with browser(lab_file, browser_ns, tmp_path) as (driver, _):
        wait_text(driver, "vip-holder", master, START_S)
        kill = button(driver, f"kill haproxy on {master}")
        t0 = time.monotonic()
        kill.click()
        took, _ = wait_text(driver, "vip-holder", backup, bound, since=t0)
        report_outage(f"page: VIP on {backup} after the click", took,
                      f"{bound:.2f} s ({crash} + page {view.page_latency_s():.2f} s)")
        shot = Path(os.environ.get("HALAB_UI_SCREENSHOT") or tmp_path / "ui.png")
        time.sleep(1.0)  # a second of the strip after the move, for the picture
        screenshot(driver, shot)
        events = _text(driver, "events").splitlines()
        # "VIP lb01 → lb02", or through a sample or two of both holding it during the handover
        assert any(" VIP " in e and e.endswith(f"→ {backup}") for e in events), events
        assert any(f"kill haproxy on {master}: done" in e for e in events), events

        button(driver, f"undo kill haproxy on {master}").click()
        t1 = time.monotonic()
        back = timing.preempt_back(lab.topo).with_margin + view.page_latency_s()
        wait_text(driver, "vip-holder", master, back, since=t1)
    steady_state.wait(lab)  # the lab as provisioned again: lab/steady.py's definition


@pytest.mark.disruptive
def test_an_lb_that_cannot_be_asked_reads_unknown_never_a_holder(
        steady, browser_ns, lab_file, tmp_path):
    """lb01's sshd killed from the page: nobody can ask lb01 any more (its VIP stream
    opened earlier still runs). The page must say unknown, and why, never "lb01" from the old
    stream nor "lb02"/"none" from the LB that still answers."""
    lab = steady
    master = lab.topo.master_lb.name
    with browser(lab_file, browser_ns, tmp_path) as (driver, ui):
        wait_text(driver, "vip-holder", master, START_S)
        button(driver, f"kill ssh on {master}").click()
        # A wait, not a timing assertion: the next status round after the fault, however
        # long the busy machine makes it.
        _, seen = wait_text(driver, "vip-holder", "unknown", START_S)
        assert set(seen) <= {master, "unknown"}, f"the page named a wrong holder: {seen}"
        why = _text(driver, "vip-why")
        assert master in why and "cannot" in why, why
        # It stays unknown for as long as lb01 cannot be asked (several status rounds).
        until = time.monotonic() + 3 * view.STATUS_PAUSE_S + 3
        while time.monotonic() < until:
            assert _text(driver, "vip-holder") == "unknown"
            time.sleep(0.2)

        button(driver, f"undo kill ssh on {master}").click()
        wait_text(driver, "vip-holder", master, START_S)

        # The page's server gone: the page says so, and the holder is unknown again.
        ui.stop()
        wait_text(driver, "vip-holder", "unknown", 4 * view.PUSH_S + 5)
        assert _text(driver, "conn").startswith("not live"), _text(driver, "conn")
    steady_state.wait(lab)



@pytest.mark.disruptive
def test_a_frozen_lb01_reads_frozen_and_never_again_as_the_holder(
        steady, browser_ns, lab_file, tmp_path, report_outage):
    """lb01 frozen from the page (every process stopped: it answers nothing). A frozen LB
    holds nothing the network can see (observe's rule): the page must stop naming lb01 and
    show lb02 once its master-down timer ran out, within the config's bound plus the page's
    latency; lb01's card says frozen."""
    lab = steady
    master, backup = lab.topo.master_lb.name, lab.topo.best_backup_lb.name
    lost = timing.node_crash(lab.topo)
    bound = lost.with_margin + view.page_latency_s()
    with browser(lab_file, browser_ns, tmp_path) as (driver, _):
        wait_text(driver, "vip-holder", master, START_S)
        freeze = button(driver, f"freeze on {master}")
        t0 = time.monotonic()
        freeze.click()
        took, seen = wait_text(driver, "vip-holder", backup, bound, since=t0)
        report_outage(f"page: VIP on {backup} after freezing {master}", took,
                      f"{bound:.2f} s ({lost} + page {view.page_latency_s():.2f} s)")
        assert seen[0] == master and master not in seen[1:], f"a frozen {master} came back " \
            f"as the holder: {seen}"
        t1 = time.monotonic()
        while "frozen" not in (card := _card(driver, master)):  # the next status round
            assert time.monotonic() - t1 < START_S, card
            time.sleep(0.2)
        button(driver, f"undo freeze on {master}").click()
        wait_text(driver, "vip-holder", master, START_S)
    steady_state.wait(lab)
