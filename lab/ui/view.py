"""What the classroom page shows, as plain data: pure functions from what the lab said
(lab.status's ``LabStatus``, the VIP asks, the client's probe records) to the JSON the page
receives, and the events that say what changed. No I/O here: lab/ui/live.py asks the lab,
this module says what the answers mean, with the rule every verdict of halab follows: what
could not be asked is *unknown*, never "fine" and never blank.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lab.faults import Fault
from lab.probes import Record
from lab.status import LabStatus, NodeStatus
from lab.topology import Role, Topology

# -- how fresh the page is, and so how late it may show what the lab did -------------------
PROBE_S = 0.2  # the client probes, and each LB samples its hold on the VIP, this often
# An LB's last VIP sample older than this: unknown, not shown. The samples stream from each
# LB (observe.VipWatch, stamped by the node's clock); on 2 busy cores their lines arrive up to
# ~1 s late (measured), so a tighter limit would flash "unknown" on a healthy lab.
VIP_STALE_S = 2.0
PUSH_S = 0.25  # the page gets a new state this often (server-sent events)
# From a click to the fault's command on the node: one request on loopback and the fault's
# own command (a signal from the host on the embedded lab; measured 0.05-0.3 s on 2 busy cores).
CLICK_S = 1.0
STRIP_S = 30.0  # the probe strip's window
STATUS_PAUSE_S = 0.5  # between two rounds of `lab.status.gather`
EVENTS_KEPT = 40


def page_latency_s() -> float:
    """How much later than the lab the page may show the VIP's holder, counted from the
    click that set the fault off: the click reaching the node (CLICK_S), the next sample
    (PROBE_S), its line on the way (at most VIP_STALE_S: a later one makes the page say
    "unknown", never a holder, so a slow page is never a wrong one), the push (PUSH_S).
    The tests add this to the bound the config promises for the fault."""
    return CLICK_S + PROBE_S + VIP_STALE_S + PUSH_S


def status_stale_after(took: float | None) -> float:
    """A status round is overdue when three rounds of the last one's length (and the pauses)
    have passed without an answer; at least 5 s, for a busy machine's hiccups."""
    return max(5.0, 3 * ((took or 0.0) + STATUS_PAUSE_S))


# -- what was asked ------------------------------------------------------------------------
@dataclass(frozen=True)
class VipSample:
    """One LB's last VIP sample (observe.VipWatch: a ``Holding``): when it was taken (this
    host's monotonic clock), the answer. ``holds`` None: the LB could not be asked (``why``)."""

    lb: str
    t: float
    holds: bool | None
    why: str = ""


@dataclass(frozen=True)
class Event:
    t: float  # monotonic
    wall: float  # time.time() at t, for the page's clock
    kind: str  # vip, node, daemon, backend, client, fault, exercise, observe
    text: str


@dataclass
class Snapshot:
    """Everything the server knows at ``now``, as it was asked."""

    now: float
    topo: Topology
    provider: str
    status: LabStatus | None = None
    status_at: float | None = None  # when the last complete round began
    status_took: float | None = None
    status_error: str | None = None  # a status round that failed as a whole
    vip: Mapping[str, VipSample] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)  # the client's api probes
    probing_since: float | None = None
    probe_errors: list[str] = field(default_factory=list)
    job: dict[str, Any] | None = None
    active_faults: list[str] = field(default_factory=list)  # action ids
    exercise: dict[str, Any] = field(default_factory=dict)
    topology: dict[str, Any] = field(default_factory=dict)  # version, error


# -- the VIP -------------------------------------------------------------------------------
def vip_view(lbs: list[str], samples: Mapping[str, VipSample], now: float,
             not_asked: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Who holds the VIP, from each LB's last sample. ``holder`` is what #vip-holder shows:
    "unknown" as soon as one LB cannot be asked (it might hold the VIP too), "none" when
    every LB answered and none holds it, else the holders' names.

    ``not_asked``: LBs the last status round (fresh connections) could not ask, with why. An
    LB is known only when every way of asking it answers: a VIP sample streamed over a
    session opened before its sshd died would go on answering for an LB that nobody can
    reach any more."""
    per_lb: dict[str, dict[str, Any]] = {}
    unknown: dict[str, str] = {}
    not_asked = not_asked or {}
    for lb in lbs:
        s = samples.get(lb)
        if s is None:
            why = "not asked yet"
        elif s.holds is None:
            why = s.why or "could not be asked"
        elif now - s.t > VIP_STALE_S:
            why = f"no VIP sample for {now - s.t:.1f} s"
        else:
            why = not_asked.get(lb, "")
        if why:
            unknown[lb] = why
        per_lb[lb] = {"holds": None if why else s.holds, "why": why}  # type: ignore[union-attr]
    holders = [lb for lb in lbs if per_lb[lb]["holds"]]
    if unknown:
        text = "unknown"
    elif not holders:
        text = "none"
    else:
        text = ", ".join(holders)
    return {"holder": text, "holders": None if unknown else holders,
            "seen_holding": [lb for lb in lbs if samples.get(lb) is not None
                             and samples[lb].holds],
            "unknown": unknown, "split_brain": len(holders) > 1, "lbs": per_lb}


def unaskable(status: LabStatus | None, age: float | None, stale_after: float) -> dict[str, str]:
    """The LBs a recent status round could not ask whether they hold the VIP, with why."""
    if status is None or age is None or age > stale_after:
        return {}
    errors = {n.name: n.error or "could not be asked" for n in status.nodes}
    return {lb: f"the last status round could not ask it: {errors.get(lb)}"
            for lb in status.vip_unknown}


def with_live_vip(status: LabStatus, vip: Mapping[str, Any]) -> LabStatus:
    """The status with the VIP as the live asks have it (fresher than the status round)."""
    lbs = vip["lbs"]
    nodes = [dataclasses.replace(n, holds_vip=lbs[n.name]["holds"]) if n.name in lbs else n
             for n in status.nodes]
    return dataclasses.replace(status, nodes=nodes,
                               vip_holders=[lb for lb, v in lbs.items() if v["holds"]],
                               vip_unknown=list(vip["unknown"]))


# -- the nodes -----------------------------------------------------------------------------
def _vrrp(ns: NodeStatus | None) -> dict[str, Any] | None:
    """keepalived's own report of an LB's VRRP state and effective priority (lab.vrrp via
    lab.status); None where it was not reported (the node's error then says why)."""
    v = ns.vrrp if ns is not None else None
    if v is None:
        return None
    return {"state": v.state, "priority": v.effective_priority}


def nodes_view(topo: Topology, status: LabStatus | None, status_age: float | None,
               stale_after: float, vip: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every node of the topology (never fewer: one that could not be asked says so)."""
    by_name = {n.name: n for n in status.nodes} if status is not None else {}
    if status is None:
        stale = "not asked yet"
    elif status_age is not None and status_age > stale_after:
        stale = f"no status for {status_age:.0f} s"
    else:
        stale = ""
    out = []
    for spec in topo.nodes:
        ns = None if stale else by_name.get(spec.name)
        lb = Role.LOADBALANCER in spec.roles
        row: dict[str, Any] = {
            "name": spec.name, "roles": [r.value for r in spec.roles],
            "address": str(spec.address),
            "state": ns.state if ns is not None else "unknown",
            "daemons": (None if ns is None or ns.daemons is None else
                        [{"name": d, "active": st.active} for d, st in ns.daemons.items()]),
            "error": stale or (ns.error if ns is not None else "not in the status") or "",
        }
        if lb:
            live = vip["lbs"].get(spec.name, {"holds": None, "why": "not asked yet"})
            b = status.backends.get(spec.name) if (status is not None and not stale) else None
            row.update({
                "holds_vip": live["holds"], "vip_why": live["why"],
                "configured": ({"state": spec.vrrp.state, "priority": spec.vrrp.priority}
                               if spec.vrrp else None),
                "vrrp": _vrrp(ns),
                "backends": {
                    "servers": (None if b is None or b.servers is None else
                                [{"proxy": s.proxy, "server": s.server, "status": s.status,
                                  "up": s.up} for s in b.servers]),
                    "error": stale or (b.error if b is not None else "not asked") or ""},
            })
        out.append(row)
    return out


# -- the client's probes -------------------------------------------------------------------
def probes_view(topo: Topology, records: Iterable[Record], now: float,
                probing_since: float | None, errors: list[str],
                interval: float = PROBE_S, timeout: float = 0.5) -> dict[str, Any]:
    """The probe strip: the last STRIP_S seconds of the client's probes through the VIP. No
    probe for longer than a probe's budget and a few intervals: the probes stopped, and what
    the client sees is unknown."""
    via = {str(n.address): n.name for n in topo.nodes}
    recs = sorted((r for r in records if r.t >= now - STRIP_S), key=lambda r: r.t)
    strip = [{"t": round(r.t - now, 2), "ok": r.ok, "ms": round(r.latency * 1000, 1),
              "via": via.get(r.via or "", r.via), "error": (r.error or "")[:120]}
             for r in recs]
    quiet_limit = timeout + 4 * interval + 0.5
    last_t = recs[-1].t if recs else probing_since
    if errors:
        state, why = "unknown", "; ".join(errors)
    elif last_t is None:
        state, why = "unknown", "not probing yet"
    elif now - last_t > quiet_limit:
        state, why = "unknown", f"no probe for {now - last_t:.1f} s"
    elif not recs:
        state, why = "unknown", "no probe yet"
    elif recs[-1].ok:
        state, why = "served", ""
    else:
        state, why = "failing", recs[-1].error
    failing_since = None
    if recs and not recs[-1].ok:
        failing_since = recs[-1].t
        for r in reversed(recs):
            if r.ok:
                break
            failing_since = r.t
    oks = [r.latency * 1000 for r in recs if r.ok]
    oks.sort()
    return {
        "state": state, "why": why, "window_s": STRIP_S, "strip": strip,
        "count": len(recs), "ok": len(oks),
        "success_rate": round(len(oks) / len(recs), 3) if recs else None,
        "median_ms": round(oks[len(oks) // 2], 1) if oks else None,
        "failing_for": None if failing_since is None else round(now - failing_since, 2),
        "via": strip[-1]["via"] if strip and strip[-1]["ok"] else None,
    }


# -- the whole page ------------------------------------------------------------------------
def build(s: Snapshot) -> dict[str, Any]:
    """The state the page receives (`event: state`), as JSON-ready data."""
    lbs = [n.name for n in s.topo.load_balancers]
    age = None if s.status_at is None else s.now - s.status_at
    stale_after = status_stale_after(s.status_took)
    vip = vip_view(lbs, s.vip, s.now, unaskable(s.status, age, stale_after))
    return {
        "lab": s.topo.name, "provider": s.provider, "vip_address": str(s.topo.vip),
        "vip": vip,
        "nodes": nodes_view(s.topo, s.status, age, stale_after, vip),
        "status": {"age": None if age is None else round(age, 1),
                   "took": None if s.status_took is None else round(s.status_took, 2),
                   "stale": age is None or age > stale_after,
                   "error": s.status_error or ""},
        "client": probes_view(s.topo, s.records, s.now, s.probing_since, s.probe_errors),
        "job": s.job, "active_faults": list(s.active_faults),
        "exercise": s.exercise, "topology": s.topology,
    }


# -- what changed --------------------------------------------------------------------------
def _backend_states(view: Mapping[str, Any]) -> dict[tuple[str, str, str], str]:
    out = {}
    for n in view["nodes"]:
        for srv in (n.get("backends") or {}).get("servers") or []:
            out[(n["name"], srv["proxy"], srv["server"])] = srv["status"]
    return out


def events(prev: Mapping[str, Any] | None, cur: Mapping[str, Any], t: float,
           wall: float | None = None) -> list[Event]:
    """What changed between two states, in words a learner reads: the VIP moved or became
    unknown, a node or daemon changed state, a backend went DOWN or UP, the client lost or
    regained the service. Nothing on the first state: there is no change to tell yet."""
    if prev is None:
        return []
    wall = time.time() if wall is None else wall
    found: list[Event] = []

    def add(kind: str, text: str) -> None:
        found.append(Event(t, wall, kind, text))

    pv, cv = prev["vip"], cur["vip"]
    # The first answers after start-up are not changes of the lab.
    first_vip = bool(pv["unknown"]) and set(pv["unknown"].values()) == {"not asked yet"}
    first_status = prev["status"]["age"] is None
    if pv["holder"] != cv["holder"] and not first_vip:
        if cv["holder"] == "unknown":
            why = "; ".join(f"{lb}: {w}" for lb, w in cv["unknown"].items())
            add("observe", f"VIP holder unknown ({why})")
        elif cv["split_brain"]:
            # A handover can show both for a sample or two; a split brain is one that lasts.
            add("vip", f"VIP on {cv['holder']} (both hold it)")
        else:
            add("vip", f"VIP {pv['holder']} → {cv['holder']}")
    pnodes = {} if first_status else {n["name"]: n for n in prev["nodes"]}
    for n in cur["nodes"]:
        p = pnodes.get(n["name"])
        if p is None:
            continue
        if p["state"] != n["state"]:
            add("node" if n["state"] != "unknown" else "observe",
                f"{n['name']}: {p['state']} → {n['state']}"
                + (f" ({n['error']})" if n["state"] == "unknown" and n["error"] else ""))
        pd = {d["name"]: d["active"] for d in p["daemons"] or []}
        for d in n["daemons"] or []:
            if d["name"] in pd and pd[d["name"]] != d["active"]:
                add("daemon", f"{n['name']}: {d['name']} "
                    f"{'running again' if d['active'] else 'stopped'}")
    pb, cb = _backend_states(prev), _backend_states(cur)
    for key, st in cb.items():
        if key in pb and pb[key].split()[0] != st.split()[0]:
            lb, proxy, server = key
            add("backend", f"{lb}: {proxy}/{server} {pb[key]} → {st}")
    pc, cc = prev["client"], cur["client"]
    if pc["state"] != cc["state"]:
        if cc["state"] == "failing":
            add("client", f"client: probes through the VIP fail ({cc['why']})")
        elif cc["state"] == "served" and pc["state"] == "failing":
            add("client", f"client: served again after {pc['failing_for'] or 0:.1f} s"
                + (f", via {cc['via']}" if cc["via"] else ""))
        elif cc["state"] == "served":
            add("client", "client: served" + (f" via {cc['via']}" if cc["via"] else ""))
        else:
            add("observe", f"client: unknown ({cc['why']})")
    return found


def events_view(evs: Iterable[Event], now: float) -> list[dict[str, Any]]:
    """Newest first, with the page's clock time and how long ago."""
    return [{"at": time.strftime("%H:%M:%S", time.localtime(e.wall)),
             "ago": round(now - e.t, 1), "kind": e.kind, "text": e.text}
            for e in sorted(evs, key=lambda e: e.t, reverse=True)]


# -- the fault buttons ---------------------------------------------------------------------
@dataclass(frozen=True)
class Action:
    """One button of the page: a fault of the catalogue on given nodes with given
    parameters, and its undo."""

    id: str
    fault: str
    nodes: tuple[str, ...]
    params: tuple[tuple[str, object], ...]
    label: str
    undo_label: str
    has_undo: bool
    group: str  # a node's name, or "lab" for faults on several nodes
    summary: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "fault": self.fault, "nodes": list(self.nodes),
                "params": dict(self.params), "label": self.label,
                "undo_label": self.undo_label, "has_undo": self.has_undo,
                "group": self.group, "summary": self.summary}


def _action(f: Fault, nodes: list[str], params: dict[str, object], label: str,
            group: str) -> Action:
    ps = tuple(sorted(params.items()))
    ident = "|".join([f.name, ",".join(nodes), ",".join(f"{k}={v}" for k, v in ps)])
    # The catalogue's "return" is itself an undo: nothing to undo after it.
    has_undo = not f.undo_summary.startswith("nothing")
    return Action(ident, f.name, tuple(nodes), ps, label,
                  f"undo {label}" if has_undo else "", has_undo, group,
                  f"{f.summary}; undo: {f.undo_summary}")


def _fmt(v: object) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def fault_actions(topo: Topology, catalogue: Iterable[Fault], provider: str,
                  daemons: Mapping[str, list[str]]) -> list[Action]:
    """The catalogue's faults as buttons, for this lab: every fault the provider can express,
    on each node it fits, with its default parameters. A fault on a daemon gets a button
    per daemon the node reports (``daemons``: node -> its daemons, from lab.status), so the
    page offers what the nodes run, not a list written here."""
    machines = [n for n in topo.nodes if Role.CLIENT not in n.roles]
    out: list[Action] = []
    for f in catalogue:
        if provider not in f.providers:
            continue
        fits = [n for n in machines if f.role is None or f.role in n.roles]
        defaults = {k: v for k, v in f.params.items() if v is not None}
        if "service" in f.params and f.params["service"] is None:
            for n in fits:
                for svc in daemons.get(n.name, []):
                    out.append(_action(f, [n.name], {"service": svc},
                                       f"{f.name} {svc} on {n.name}", n.name))
        elif f.min_nodes == 2 and f.max_nodes == 2:
            lbs = [n.name for n in fits if Role.LOADBALANCER in n.roles]
            for i, a in enumerate(lbs):
                for b in lbs[i + 1:]:
                    out.append(_action(f, [a, b], {}, f"{f.name} {a} {b}", "lab"))
        elif f.min_nodes == 0 and "count" in f.params:
            for k in range(1, len(fits) + 1):
                out.append(_action(f, [], {"count": k}, f"{f.name} count={k}", "lab"))
        else:
            for n in fits:
                params = {k: v for k, v in defaults.items() if k != "service"}
                shown = " ".join(f"{k}={_fmt(v)}" for k, v in params.items())
                out.append(_action(f, [n.name], params,
                                   f"{f.name} on {n.name}" + (f" {shown}" if shown else ""),
                                   n.name))
    return out

