"""Scenarios as data, in the spirit of chaostoolkit experiments.

A scenario file holds a steady-state hypothesis (probes with tolerances), a method (faults,
undos, pauses, waits, checks), rollbacks, and the expected outage as the name of a bound
derived from the deployed config (lab.chaos.bounds). Nodes are named literally or by
role, so one file fits any lab.yaml:

    @master-lb    the VRRP MASTER load balancer      @backup-lb   its best backup
    @apiserver-N  the N-th control-plane node (1-)    @ingress-N   the N-th ingress node
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lab import inputs
from lab.chaos import bounds
from lab.errors import HalabError
from lab.faults import CATALOGUE, check_params
from lab.inputs import quote
from lab.topology import Role, Topology

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "scenarios"
PROBE_KINDS = ("tcp", "api", "http", "https")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _bound_name(name: str) -> None:
    try:
        bounds.check_name(name)
    except HalabError as e:
        raise ValueError(str(e)) from None


class Observation(_Strict):
    """What must be seen: in a `wait` (until seen, within a bound) or a `check` (now)."""

    vip: list[str] | None = None  # exactly these LBs hold the VIP
    arp_follows_vip: bool = Field(False, alias="arp-follows-vip")  # client ARP = holder's MAC
    backends_down: list[str] | None = Field(None, alias="backends-down")  # API server DOWN
    ingress_down: list[str] | None = Field(None, alias="ingress-down")  # ingress DOWN (443)
    within: str | None = None  # for `wait`: a bound name

    @model_validator(mode="after")
    def _something(self) -> Observation:
        if (self.vip is None and not self.arp_follows_vip and self.backends_down is None
                and self.ingress_down is None):
            raise ValueError("name at least one of vip, arp-follows-vip, backends-down, "
                             "ingress-down")
        if self.within is not None:
            _bound_name(self.within)  # unknown names fail at load time
        return self


class Step(_Strict):
    """Exactly one of: fault, undo, pause, wait, check."""

    fault: str | None = None
    undo: str | None = None
    nodes: list[str] = []
    params: dict[str, float | int | str] = {}
    pause: Annotated[float, Field(ge=0)] | None = None
    wait: Observation | None = None
    check: Observation | None = None

    @model_validator(mode="after")
    def _one(self) -> Step:
        given = [k for k in ("fault", "undo", "pause", "wait", "check")
                 if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a step is exactly one of fault, undo, pause, wait, check; got "
                             + (", ".join(given) or "none"))
        name = self.fault or self.undo
        if name is not None and name not in CATALOGUE:
            raise ValueError(f"unknown fault {quote(name)}; the catalogue has: "
                             + ", ".join(CATALOGUE))
        if name is not None:
            # What can be checked without a lab is checked now, not midway through a run:
            # the parameters, and literal node names given twice (aliases are resolved and
            # checked again against the lab when the step runs).
            try:
                check_params(name, self.params)
            except HalabError as e:
                raise ValueError(str(e)) from None
            twice = sorted({n for n in self.nodes if self.nodes.count(n) > 1})
            if twice:
                raise ValueError(f"fault '{name}' names {', '.join(twice)} more than once")
        if self.wait is not None and self.wait.within is None:
            raise ValueError("a wait needs `within: BOUND` (how long, from the config)")
        return self

    def describe(self, topo: Topology | None = None) -> str:
        """One line for logs and the report; aliases resolved when ``topo`` is given."""
        def names(xs: list[str]) -> list[str]:
            try:
                return resolve(topo, xs) if topo is not None else xs
            except HalabError:
                return xs

        on = " ".join(names(self.nodes))
        ps = " ".join(f"{k}={v}" for k, v in self.params.items())
        if self.fault:
            return f"{self.fault} {on} {ps}".strip()
        if self.undo:
            return f"undo {self.undo} {on} {ps}".strip()
        if self.pause is not None:
            return f"pause {self.pause:g} s"
        obs = self.wait or self.check
        assert obs is not None
        what = []
        if obs.vip is not None:
            what.append(f"VIP on {' + '.join(names(obs.vip)) or 'none'}")
        if obs.arp_follows_vip:
            what.append("client ARP = holder")
        if obs.backends_down is not None:
            what.append(f"API server {', '.join(names(obs.backends_down))} DOWN")
        if obs.ingress_down is not None:
            what.append(f"ingress {', '.join(names(obs.ingress_down))} DOWN")
        head = f"wait ≤ {obs.within}" if self.wait else "check"
        return f"{head}: {'; '.join(what)}"


class HypothesisProbe(_Strict):
    """lab-steady | vip-holders | probe | arp-follows-vip, with its tolerance."""

    name: Literal["lab-steady", "vip-holders", "probe", "arp-follows-vip"]
    tolerance: bool | list[str] = True
    kind: Literal["tcp", "api", "http", "https"] = "api"


class Hypothesis(_Strict):
    title: str = "the lab is steady and answers through the VIP"
    probes: Annotated[list[HypothesisProbe], Field(min_length=1)]


class OutageExpectation(_Strict):
    kind: Literal["tcp", "api", "http", "https"] = "api"
    bound: str  # a bound name or `none`
    # since-fault: from the first fault to the first good probe after the last failure.
    # windows: the failure windows added up, for a method whose outage, if any, comes late
    # (a split brain costs nothing while partitioned; its heal may).
    measure: Literal["since-fault", "windows"] = "since-fault"

    @model_validator(mode="after")
    def _known(self) -> OutageExpectation:
        _bound_name(self.bound)
        return self


class Expect(_Strict):
    outage: list[OutageExpectation] = []  # during the method (fault -> rollback)
    rollback_outage: list[OutageExpectation] = Field([], alias="rollback-outage")


class Scenario(_Strict):
    name: str = ""  # the file's stem
    title: str
    description: str = ""
    tags: list[str] = []
    hypothesis: Hypothesis = Field(alias="steady-state-hypothesis")
    method: Annotated[list[Step], Field(min_length=1)]
    rollbacks: list[Step] | None = None  # None: undo every fault of the method, last first
    expect: Expect = Expect()

    @property
    def faults(self) -> list[Step]:
        return [s for s in self.method if s.fault]

    def rollback_steps(self) -> list[Step]:
        if self.rollbacks is not None:
            return self.rollbacks
        return [Step(undo=s.fault, nodes=s.nodes, params=s.params)
                for s in reversed(self.faults)]


def resolve(topo: Topology, names: list[str]) -> list[str]:
    """Role aliases (@master-lb, @backup-lb, @apiserver-N, @ingress-N) to node names."""
    out = []
    for n in names:
        if not n.startswith("@"):
            try:
                topo.node(n)
            except KeyError:
                raise HalabError(f"no node {quote(n)} in lab '{topo.name}'; nodes: "
                                 + ", ".join(x.name for x in topo.nodes)) from None
            out.append(n)
            continue
        alias = n[1:]
        if alias == "master-lb":
            out.append(topo.master_lb.name)
        elif alias == "backup-lb":
            out.append(topo.best_backup_lb.name)
        elif alias.startswith(("apiserver-", "ingress-")):
            role, _, idx = alias.rpartition("-")
            pool = topo.nodes_with(Role.CONTROL_PLANE if role == "apiserver" else Role.INGRESS)
            if not idx.isdigit() or not 1 <= int(idx) <= len(pool):
                raise HalabError(f"{n}: this lab has {len(pool)} {role} node(s); use "
                                 f"@{role}-1 ... @{role}-{len(pool)}")
            out.append(pool[int(idx) - 1].name)
        else:
            raise HalabError(f"unknown node alias {quote(n)}; use a node name or one of "
                             "@master-lb, @backup-lb, @apiserver-N, @ingress-N")
    return out


def load(path: Path) -> Scenario:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise HalabError(f"{path}: cannot read the scenario ({e.strerror})") from None
    data = inputs.load_yaml(inputs.decode(raw, str(path), HalabError), str(path), HalabError)
    if not isinstance(data, dict):
        raise HalabError(f"{path}: a scenario is a YAML mapping with title, "
                         "steady-state-hypothesis and method")
    data.setdefault("name", path.stem)
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{quote('.'.join(str(p) for p in x['loc']), 80).strip(chr(39)) or 'scenario'}: "
            f"{x['msg'].removeprefix('Value error, ')}" for x in e.errors()[:inputs.MAX_PROBLEMS])
        raise HalabError(inputs.clip(f"{path}: invalid scenario: {problems}. Fix it and run "
                                     "again.")) from None


def load_all(directory: Path = SCENARIO_DIR, names: list[str] | None = None) -> list[Scenario]:
    """Every scenario in ``directory`` (or those ``names``: stems or paths)."""
    if names:
        out = []
        for n in names:
            p = Path(n)
            if not p.suffix:
                p = directory / f"{n}.yaml"
            if not p.exists():
                known = ", ".join(sorted(x.stem for x in directory.glob("*.yaml")))
                raise HalabError(f"no scenario '{n}' ({p}); known: {known}")
            out.append(load(p))
        return out
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise HalabError(f"no scenarios in {directory}; put scenario files (*.yaml) there")
    return [load(p) for p in files]
