"""`halab`: bring a lab up, look at it, step inside it, break it, clean it away.

Every command takes `-f FILE` for the lab file. Errors a user can fix print one
paragraph and exit non-zero, with no traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lab import classroom, failover, faults, observe, steady, timing
from lab import status as lab_status
from lab.errors import HalabError, PrerequisiteError, UsageError
from lab.lab import PROVIDERS, Lab
from lab.probes import Timeline
from provision import names

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
                  help="Highly available Kubernetes control-plane labs, broken on purpose.")
out = Console()
err = Console(stderr=True)

LabFile = Annotated[Path, typer.Option("-f", "--file", help="the lab file")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable: JSON on stdout")]
ProviderOpt = Annotated[str | None, typer.Option(
    "--provider", help=f"one of {', '.join(PROVIDERS)} (default: lab.yaml's, or netns)")]


def _open(file: Path, provider: str | None = None) -> Lab:
    return Lab.open(file, provider)


@contextlib.contextmanager
def _running(file: Path) -> Iterator[Lab]:
    """The lab of ``file``, which must be up; its prober and connections closed after."""
    lab = _open(file)
    lab.require_up()
    try:
        yield lab
    finally:
        lab.prober.close()
        lab.close()


def _scenario_names(options: list[str] | None) -> list[str]:
    """-s values, repeated or comma-separated."""
    return [n for item in options or [] for n in item.split(",") if n.strip()]


def _seed(seed: int | None) -> int:
    import random

    return random.SystemRandom().randrange(1, 10**6) if seed is None else seed


@app.command()
def up(file: LabFile = Path("lab.yaml"), provider: ProviderOpt = None,
       timings: Annotated[bool, typer.Option(
           "--timings", help="then where the time went: each phase, when it began and how "
           "long it took")] = False) -> None:
    """Create the lab's nodes and provision them (HAProxy, keepalived, API servers)."""
    from lab.timings import process_age_s, recording, span

    before = process_age_s()
    lab = _open(file, provider)
    t0 = time.monotonic()
    with recording() as rec, out.status(
            f"bringing lab '{lab.topo.name}' up ({lab.provider.name})") as st:
        def progress(msg: str) -> None:
            st.update(f"[bold]{lab.topo.name}[/]: {msg}")
            out.log(msg, highlight=False)

        lab.up(progress)
        st.update("waiting for the VIP and every backend")
        with span("steady: the VIP on the MASTER, every backend UP, the client served"):
            steady.wait(lab)
    out.print(f"lab '{lab.topo.name}' is up ({lab.provider.name}) in "
              f"{time.monotonic() - t0:.1f} s; VIP {lab.vip}")
    _status_table(lab)
    lab.close()
    if timings:
        print(f"\n# where the time went (s after `up` began; before it, {before:.2f} s of "
              "interpreter start, imports and reading the lab file)" if before is not None
              else "\n# where the time went (s after `up` began)")
        for line in rec.lines(t0):
            print(line)


@app.command()
def doctor(provider: Annotated[str, typer.Option(
               "--provider", help="netns (the embedded lab) or vagrant (VMs)")] = "netns",
           as_json: JsonOpt = False) -> None:
    """Can this machine run the lab? Commands and their Debian packages, root, the kernel's
    namespaces, nftables and netem; exit 3 when something required is missing."""
    from lab import doctor as doc
    from lab.packages import PROVIDERS as CHECKABLE

    if provider not in CHECKABLE:
        raise typer.BadParameter(f"one of {', '.join(CHECKABLE)}, not '{provider}'",
                                 param_hint="--provider")
    report = doc.diagnose(provider)
    print(report.to_json() if as_json else report.render())
    if not report.ok:
        raise typer.Exit(PrerequisiteError.exit_code)


@app.command()
def provision(file: LabFile = Path("lab.yaml")) -> None:
    """Apply lab.yaml's configuration again: changed files are validated, written, and only
    their daemons restarted (a lab as deployed changes nothing)."""
    lab = _open(file)
    lab.require_up()
    for change in lab.provision(lambda m: out.log(m, highlight=False)):
        what = (", ".join(change.changed_files) or "no change")
        out.print(f"{change.node}: {what}" + (f"; restarted {', '.join(change.restarted)}"
                                              if change.restarted else "")
                  + (f"; started {', '.join(change.started)}" if change.started else ""))
    lab.close()


@app.command()
def down(file: LabFile = Path("lab.yaml")) -> None:
    """Remove the lab's nodes and daemons (keys, CA and logs stay until `clean`)."""
    lab = _open(file)
    lab.down(lambda m: out.log(m, highlight=False))
    out.print(f"lab '{lab.topo.name}' is down")


@app.command()
def clean(file: LabFile = Path("lab.yaml"),
          all_labs: Annotated[bool, typer.Option("--all", help="every halab lab on this "
                                                 "machine, whatever its name")] = False) -> None:
    """Remove everything a lab left behind, even after a crash: namespaces, processes, files."""
    from lab.lab import clean_prefix
    from lab.system import require_root

    require_root("halab clean")
    if all_labs:
        from lab.claim import release_all

        removed = clean_prefix("halab-")
        release_all()
        for d in Path(".halab").glob("*") if Path(".halab").exists() else []:
            if d.name == "box":
                continue  # the built vagrant box is not a lab: `make box` made it
            _rm(d)
            removed.append(str(d))
    else:
        removed = _open(file).clean(lambda m: out.log(m, highlight=False))
    out.print("removed: " + (", ".join(removed) if removed else "nothing (already clean)"))


def _rm(d: Path) -> None:
    import shutil

    shutil.rmtree(d, ignore_errors=True)


def _tty() -> bool:
    """Rich tables for a person at a terminal. In a pipe or a file Rich would squeeze the
    columns into 80 characters and cut them with '…', so plain lines go there instead."""
    return sys.stdout.isatty()


def _json(data: object) -> None:
    # Not through Rich: no colour, no wrapping, exactly what json.loads reads back.
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _plain(rows: list[list[str]]) -> None:
    """Tab-separated, header first; "-" for an empty cell keeps `awk` and `cut` aligned."""
    for row in rows:
        sys.stdout.write("\t".join(c.replace("\t", " ").replace("\n", " ") or "-"
                                   for c in row) + "\n")


def _status_rows(s: lab_status.LabStatus) -> tuple[list[list[str]], list[list[str]]]:
    """The status as two tables (nodes; HAProxy backends by LB), header rows first."""
    nodes = [["node", "roles", "address", "state", "VIP", "daemons", "VRRP"]]
    for n in s.nodes:
        lb = "loadbalancer" in n.roles
        vip = "" if not lb else (
            "?" if n.holds_vip is None else "holds" if n.holds_vip else "")
        daemons = "?" if n.daemons is None else ", ".join(
            f"{d}{'' if st.active else ' (stopped)'}" for d, st in n.daemons.items())
        # As keepalived reports it (state, effective priority); "?": it could not be asked.
        vrrp = "" if not lb else str(n.vrrp) if n.vrrp else (
            "?" if "VRRP:" in (n.error or "") else "")
        nodes.append([n.name, ", ".join(n.roles), n.address, n.state, vip, daemons, vrrp])
    lbs = list(s.backends)
    states = {lb: {(x.proxy, x.server): x.status for x in b.servers or []}
              for lb, b in s.backends.items()}
    keys = sorted({k for st in states.values() for k in st})
    backends = [["server", *lbs]]
    for k in keys:
        backends.append([f"{k[0]}/{k[1]}", *[
            states[lb].get(k, "?") if s.backends[lb].servers is not None else "?"
            for lb in lbs]])
    return nodes, backends


def _status_table(lab: Lab) -> None:
    s = lab_status.gather(lab)
    nodes, backends = _status_rows(s)
    title = (f"lab {s.lab} ({s.provider}), VIP {s.vip} on "
             f"{', '.join(s.vip_holders) or 'no LB'}"
             + (f" (unknown: {', '.join(s.vip_unknown)})" if s.vip_unknown else ""))
    errors = s.errors()
    if not _tty():
        sys.stdout.write(f"# {title}\n")
        _plain(nodes)
        sys.stdout.write("\n# HAProxy backends (k8s-api-server / ingress)\n")
        _plain(backends)
        if errors:
            sys.stdout.write("\n# could not be asked\n")
            _plain([[where, what] for where, what in errors])
        return
    for title_, rows in ((title, nodes), ("HAProxy backends (k8s-api-server / ingress)",
                                          backends)):
        t = Table(title=title_)
        for col in rows[0]:
            t.add_column(col)
        for row in rows[1:]:
            t.add_row(*row)
        out.print(t)
    for where, what in errors:
        out.print(f"[yellow]{where}: could not be asked: {what}[/]", highlight=False)


@app.command()
def status(file: LabFile = Path("lab.yaml"), as_json: JsonOpt = False,
           live: Annotated[bool, typer.Option(
               "--watch", help="live, until Ctrl-C: `halab watch` (its options there)")] = False,
           ) -> None:
    """Nodes, roles, addresses, who holds the VIP, VRRP as keepalived reports it, HAProxy's
    backends, daemons."""
    if live:
        if as_json:
            raise HalabError("`--watch` draws a screen (or lines in a pipe); for JSON, "
                             "ask `halab status --json` as often as you need")
        watch(file)
        return
    lab = _open(file)
    try:
        lab.require_up()
        if as_json:
            _json(lab_status.gather(lab).as_dict())
        else:
            _status_table(lab)
    finally:
        lab.close()


@app.command(name="exec", context_settings={"allow_extra_args": True,
                                            "ignore_unknown_options": True})
def exec_(node: str, command: Annotated[list[str], typer.Argument(help="the command")],
          file: LabFile = Path("lab.yaml")) -> None:
    """Run a command inside a node (the client included); its exit code is passed through."""
    lab = _open(file)
    lab.require_up()
    lab.node(node)  # a clear error for a node that does not exist
    raise typer.Exit(lab.provider.exec(node, command, interactive=sys.stdin.isatty()))


@app.command()
def ssh(node: str, file: LabFile = Path("lab.yaml")) -> None:
    """Open an SSH session to a node, through the lab's client namespace."""
    lab = _open(file)
    lab.require_up()
    if not lab.node(node).managed:
        raise HalabError(f"{node} runs no sshd; use `halab exec {node} -- bash`")
    os.execvp("ssh", ["ssh", "-F", str(lab.state.ssh_config), node])


@app.command(name="vagrant-spec", hidden=True)
def vagrant_spec(file: LabFile = Path("lab.yaml")) -> None:
    """For the top-level Vagrantfile: the VM lab's spec as JSON, and how to run vagrant on
    it, so that `vagrant status` and `vagrant ssh NODE` work in the checkout."""
    from lab import topology
    from lab.providers.vagrant import VagrantProvider
    from lab.state import LabState

    # Not Lab.open: it refuses a vagrant view of a lab that is up with another provider,
    # which is one of the things this command has to say.
    topo = topology.load(file)
    provider = VagrantProvider(topo, LabState(file.resolve().parent, topo.name))
    _json(provider.for_vagrantfile(file))


@app.command()
def demo(file: LabFile = Path("lab.yaml")) -> None:
    """The headline, live: kill HAProxy on the MASTER LB and watch the VIP move."""
    lab = _open(file)
    if not lab.is_up():
        up(file)
        lab = _open(file)
    faults.restore(lab)
    with out.status("waiting for the lab to be steady"):
        steady.wait(lab)
    master = lab.topo.master_lb.name
    bound = timing.haproxy_crash(lab.topo)
    out.print(f"VIP {lab.vip} is on [bold]{', '.join(observe.vip_holders(lab))}[/]; "
              f"the config promises a failover within {bound}")
    shown: list[str] = []

    def progress(tl: Timeline, t_kill: float) -> None:
        now = time.monotonic()
        holders = tl.holders_at(now)
        recent = tl.of()[-1] if tl.of() else None
        seen = f"ok via {recent.via}" if recent and recent.ok else (
            f"FAIL ({recent.stage or recent.error})" if recent else "-")
        state = (f"VIP on {'?' if holders is None else ', '.join(holders) or '-':5}  "
                 f"client: {seen}")
        if not shown or shown[-1] != state:
            out.print(f"t+{now - t_kill:5.2f} s  {state}", highlight=False)
            shown.append(state)

    out.print(f"[red]SIGKILL haproxy on {master}[/]")
    verdict = failover.haproxy_crash(lab, progress)
    out.print(str(verdict), highlight=False)
    out.print(f"restoring haproxy on {master}...")
    faults.start(lab, master, names.HAPROXY_UNIT)
    steady.wait(lab)
    out.print(f"VIP back on {', '.join(observe.vip_holders(lab))}")
    lab.close()
    if not verdict.passed:
        raise typer.Exit(1)


# -- the training view: watch and graph ------------------------------------------------------
@app.command()
def watch(file: LabFile = Path("lab.yaml"),
          interval: Annotated[float, typer.Option(
              min=0.01, help="seconds between the client's probes (and the LBs' VIP "
              "samples)")] = 0.1,
          poll: Annotated[float, typer.Option(
              min=0.1, help="seconds between asks of status, steadiness and the client's "
              "ARP")] = 1.0,
          window: Annotated[float, typer.Option(min=1, help="seconds the strips show")] = 30.0,
          duration: Annotated[float | None, typer.Option(
              help="stop after this many seconds (default: at Ctrl-C)")] = None,
          once: Annotated[bool, typer.Option(
              "--once", help="one picture once every observer has answered; exit 0 only "
              "when the lab is steady")] = False,
          show_graph: Annotated[bool, typer.Option("--graph/--no-graph",
                                                   help="draw the topology")] = True) -> None:
    """The lab live while you break it: who holds the VIP, what the client sees, what
    changed and when, the topology. At a terminal a screen; in a pipe one line per change."""
    from lab import screen
    from lab import watch as lab_watch

    tty = _tty()
    word = "unknown"
    with _running(file) as lab:
        try:
            with lab_watch.Watch(lab, interval, poll, window,
                                 columns=screen.strip_columns(out.width) if tty else 60) as w:
                if once:
                    word = screen.once(w, out if tty else None, show_graph)
                elif tty:
                    screen.live(w, out, duration, show_graph)
                else:
                    screen.lines(w, sys.stdout, duration)
        except KeyboardInterrupt:
            pass  # the way a watch ends
    if once and word != "steady":
        raise typer.Exit(1)


@app.command()
def graph(file: LabFile = Path("lab.yaml"),
          fmt: Annotated[str, typer.Option(
              "--format", help="on stdout: dot (Graphviz), text (a drawing) or mermaid")] = "dot",
          out_file: Annotated[Path | None, typer.Option(
              "--out", help="write FILE instead: .svg or .png (drawn by Graphviz's dot), .dot, "
              ".txt, .mmd")] = None,
          static: Annotated[bool, typer.Option(
              "--static", help="the topology from lab.yaml alone, even when the lab is "
              "up")] = False) -> None:
    """The lab's topology as a graph, with the VIP holder, VRRP (as keepalived reports it)
    and HAProxy's backend states as they are now; from lab.yaml alone when the lab is not
    up (or --static)."""
    from lab import graph as lab_graph
    from lab import topology

    if fmt not in lab_graph.FORMATS:
        raise typer.BadParameter(f"one of {', '.join(lab_graph.FORMATS)}, not '{fmt}'",
                                 param_hint="--format")
    topo = topology.load(file)
    lab = None if static else _open(file)
    if lab is not None and lab.is_up():
        try:
            g = lab_graph.build(lab.topo, lab_status.gather(lab),
                                {k: lab.prober.probe(k) for k in lab_graph.PROBE_KINDS})
        finally:
            lab.prober.close()
            lab.close()
    else:
        if lab is not None:
            err.print(f"halab graph: lab '{topo.name}' is not up: the topology from "
                      f"{file} alone", highlight=False)
        g = lab_graph.build(topo)
    if out_file is not None:
        lab_graph.write(g, out_file)
        out.print(f"wrote {out_file}", highlight=False)
    elif fmt == "text" and _tty():
        out.print(lab_graph.to_rich(g))
    else:
        sys.stdout.write(lab_graph.FORMATS[fmt](g))


# -- faults and chaos runs -------------------------------------------------------------------
def _fault_list(as_json: bool) -> None:
    if as_json:
        _json([{"name": f.name, "summary": f.summary, "nodes": f.nodes,
                "min_nodes": f.min_nodes, "max_nodes": f.max_nodes,
                "params": f.params,  # name -> default; null: required
                "required": [k for k, v in f.params.items() if v is None],
                "undo": f.undo_summary, "providers": sorted(f.providers),
                "role": f.role.value if f.role else None}
               for f in faults.CATALOGUE.values()])
        return
    rows = [["fault", "nodes", "parameters", "what it does", "undo", "providers"]]
    for f in faults.CATALOGUE.values():
        rows.append([f.name, f.nodes, ", ".join(f"{k}={'(required)' if v is None else v}"
                                                for k, v in f.params.items()),
                     f.summary, f.undo_summary, ", ".join(sorted(f.providers))])
    if not _tty():
        _plain(rows)
        return
    t = Table(title="halab fault catalogue")
    t.add_column(rows[0][0], no_wrap=True)
    for col in rows[0][1:]:
        t.add_column(col)
    for row in rows[1:]:
        t.add_row(*row)
    out.print(t)


@app.command()
def fault(name: Annotated[str | None, typer.Argument(help="a fault of the catalogue")] = None,
          nodes: Annotated[list[str] | None, typer.Argument(help="the nodes it acts on")] = None,
          param: Annotated[list[str] | None, typer.Option(
              "-p", "--param", help="KEY=VALUE, e.g. service=haproxy, percent=20")] = None,
          undo: Annotated[bool, typer.Option("--undo", help="undo the fault")] = False,
          list_: Annotated[bool, typer.Option("--list", help="show the catalogue")] = False,
          as_json: JsonOpt = False,
          file: LabFile = Path("lab.yaml")) -> None:
    """Inject a fault by hand (or undo it): `halab fault kill lb01 -p service=haproxy`."""
    if as_json and name is not None:
        raise HalabError("`--json` shows the catalogue (`halab fault --list --json`); an "
                         "injected fault reports in plain text")
    if list_ or as_json or name is None:
        _fault_list(as_json)
        if name is None and not (list_ or as_json):
            raise typer.Exit(2)
        return
    # Checked before anything is opened: a bad parameter is the same error on any lab.
    params = faults.parse_params(param or [])
    faults.check_params(name, params)
    lab = _open(file)
    from lab.chaos.scenario import resolve

    targets = resolve(lab.topo, nodes or [])
    faults.check_nodes(name, lab.topo, targets)
    lab.require_up()
    (faults.undo if undo else faults.inject)(lab, name, targets, params)
    verb = "undone" if undo else "injected"
    out.print(f"{name} {verb}{' on ' + ', '.join(targets) if targets else ''}; VIP on "
              f"{', '.join(observe.vip_holders(lab)) or 'no LB'}")
    lab.close()


@app.command()
def chaos(iterations: Annotated[int, typer.Option(help="scenarios to run")] = 5,
          seed: Annotated[int | None, typer.Option(
              help="the random sequence (default: a new one, printed)")] = None,
          scenarios: Annotated[list[str] | None, typer.Option(
              "--scenarios", "-s", help="scenario names or files (default: all in "
              "scenarios/); repeat or comma-separate")] = None,
          report: Annotated[Path, typer.Option(help="folder for journal.json, junit.xml, "
                                               "report.html")] = Path("chaos-report"),
          file: LabFile = Path("lab.yaml")) -> None:
    """A seeded random sequence of scenarios; exit 1 when any hypothesis failed."""
    from lab.chaos import runner, scenario

    chosen = scenario.load_all(names=_scenario_names(scenarios) or None)
    seed = _seed(seed)
    with _running(file) as lab:
        data = runner.chaos(lab, chosen, iterations, seed, report,
                            note=lambda m: out.print(m, highlight=False))
    s = data.get("summary", {})
    out.print(f"chaos seed {seed}: {s.get('passed', 0)} passed, {s.get('failed', 0)} failed, "
              f"{s.get('skipped', 0)} skipped, {s.get('inconclusive', 0)} inconclusive; "
              f"report: {report / 'report.html'}")
    if runner.failed(data):
        raise typer.Exit(1)


@app.command()
def bench(file: LabFile = Path("lab.yaml"),
          profiles_opt: Annotated[str | None, typer.Option(
              "--profiles", help="comma-separated (default: every profile)")] = None,
          scenarios_opt: Annotated[str | None, typer.Option(
              "--scenarios", help="comma-separated (default: every scenario; none with "
              "--soak alone)")] = None,
          reps: Annotated[int, typer.Option("--reps", help="runs of each scenario per "
                                            "profile")] = 10,
          json_file: Annotated[Path | None, typer.Option(
              "--json", help="write the figures as JSON here")] = None,
          plot: Annotated[Path | None, typer.Option(
              "--plot", help="draw the outages into this .svg")] = None,
          provider: ProviderOpt = None,
          soak: Annotated[float | None, typer.Option(
              "--soak", help="MINUTES idle, then MINUTES with every core busy, no fault: "
              "VRRP transitions (must be 0)")] = None,
          seed: Annotated[int | None, typer.Option(
              help="the random waits before each fault (default: a new one, recorded)")]
          = None,
          clean_: Annotated[bool, typer.Option(
              "--clean", help="remove a bench lab a killed bench left behind, and exit")]
          = False) -> None:
    """Measure the failovers per profile on a lab of the bench's own (the file's name + b):
    outage and VIP move (min/median/p95/max), failed new connections, failed runs."""
    from lab import bench as lab_bench
    from lab import benchplot

    p = lab_bench.plan(profiles_opt, scenarios_opt, reps, soak)
    lab_bench.check_plot_path(plot)
    if provider is not None and provider not in PROVIDERS:
        raise UsageError(f"unknown provider '{provider}' in --provider; choose one of "
                         f"{', '.join(PROVIDERS)}.")
    runner = lab_bench.Bench(file, p, provider)
    if seed is not None:
        runner.seed = seed
    if clean_:
        from lab.system import require_root

        require_root("halab bench --clean")
        removed = runner.clean()
        out.print("removed: " + (", ".join(removed) if removed else "nothing (already clean)"),
                  highlight=False)
        return
    from lab.system import require_root

    require_root("halab bench")
    err.print(f"halab bench: profiles {', '.join(p.profiles)}; "
              + (f"scenarios {', '.join(p.scenarios)} x {p.reps}" if p.scenarios
                 else "no scenario")
              + (f"; soak {p.soak_min:g} min idle + {p.soak_min:g} min busy" if p.soak_min
                 else "") + f"; seed {runner.seed}", highlight=False)
    log = Console(stderr=True, log_path=False)  # the time of each line, not cli.py's line
    doc = runner.run(lambda m: log.log(m, highlight=False))
    if json_file is not None:
        json_file.write_text(json.dumps(doc, indent=2) + "\n")
    if plot is not None:
        benchplot.write(doc, plot)
    rows = lab_bench.rows(doc)
    m = doc["machine"]
    title = (f"halab bench: {m['cores']} cores, load {m['load']['before'][0]} -> "
             f"{m['load']['after'][0]}, {m['provider']}, {m['halab_commit'][:12]}")
    if not _tty():
        sys.stdout.write(f"# {title}\n")
        _plain(rows)
    else:
        t = Table(title=title)
        for col in rows[0]:
            t.add_column(col)
        for row in rows[1:]:
            t.add_row(*row)
        out.print(t)


@app.command()
def soak(minutes: Annotated[float, typer.Option(help="how long: failovers until then")],
         seed: Annotated[int | None, typer.Option(
             help="the random sequence (default: a new one, printed)")] = None,
         scenarios: Annotated[list[str] | None, typer.Option(
             "--scenarios", "-s", help="scenario names or files (default: the LB "
             "failovers); repeat or comma-separate")] = None,
         report: Annotated[Path, typer.Option(help="folder for journal.json")] = Path(
             "soak-report"),
         file: LabFile = Path("lab.yaml")) -> None:
    """Random failovers under probes for --minutes; then checks that the journal lost no
    record and that the harness's memory and open files stayed flat; exit 1 if not."""
    from lab import soak as lab_soak
    from lab.chaos import scenario

    chosen = scenario.load_all(names=_scenario_names(scenarios)
                               or list(lab_soak.DEFAULT_SCENARIOS))
    seed = _seed(seed)
    with _running(file) as lab:
        data, verdict = lab_soak.soak(lab, chosen, minutes, seed, report,
                                      note=lambda m: out.print(m, highlight=False))
    s = data.get("summary", {})
    # Whole lines, also in a pipe: they are the soak's record, and scripts grep them.
    out.print(f"soak seed {seed}: {len(data.get('runs', []))} failovers, "
              f"{s.get('passed', 0)} passed, {s.get('failed', 0)} failed, "
              f"{s.get('skipped', 0)} skipped, {s.get('inconclusive', 0)} inconclusive; "
              f"journal: {report / 'journal.json'}", highlight=False, soft_wrap=True)
    for c in verdict.checks:
        out.print(f"{'ok' if c.ok else 'FAILED'}: {c.name}: {c.detail}", highlight=False,
                  markup=False, soft_wrap=True)
    out.print(verdict.lines[-1], highlight=False, soft_wrap=True)  # threads
    if not verdict.ok or s.get("failed", 0):
        raise typer.Exit(1)


@app.command()
def lint(file: LabFile = Path("lab.yaml"),
         strict: Annotated[bool, typer.Option(
             "--strict", help="a check that could not run here fails too")] = False) -> None:
    """Check lab.yaml and the configs it renders (haproxy -c, keepalived -t) and warn about
    insecure settings; exit 0 clean, 1 warnings, 2 a bad file."""
    from lab import lint as lab_lint

    report = lab_lint.lint(file)
    for f in report.findings:
        head = f"{f.level}: {f.where}: " if f.level != lab_lint.OK else f"ok: {f.where}: "
        out.print(head + f.message, highlight=False, markup=False, soft_wrap=not _tty())
    n = {lvl: len(report.of(lvl)) for lvl in (lab_lint.ERROR, lab_lint.WARNING, lab_lint.NOTE)}
    out.print(f"halab lint: {n['error']} error(s), {n['warning']} warning(s), "
              f"{n['note']} check(s) skipped", highlight=False)
    code = report.exit_code(strict)
    if code:
        raise typer.Exit(code)


@app.command()
def ui(file: LabFile = Path("lab.yaml"),
       port: Annotated[int, typer.Option("--port", min=0, max=65535,
                                         help="the port (0: any free one)")] = 8080,
       address: Annotated[str, typer.Option(
           "--address", help="127.0.0.1, and nothing else: the page can break the lab")]
       = "127.0.0.1") -> None:
    """The classroom web page: the lab live (VIP holder, LBs, backends, the client's probes),
    buttons for every fault and its undo, the exercises. Served on 127.0.0.1 only."""
    from lab.ui import server

    server.check_address(address)  # before anything else is asked
    lab = _open(file)
    try:
        lab.require_up()
    finally:
        lab.close()
    import signal

    with server.UiServer(file, port=port, address=address) as page:
        # SIGTERM (a service manager, `kill PID`) stops it as cleanly as Ctrl-C does.
        signal.signal(signal.SIGTERM, lambda *_: page.request_stop())
        out.print(f"halab ui: {page.url} (lab '{lab.topo.name}'); Ctrl-C stops it",
                  highlight=False)
        try:
            page.wait()
        except KeyboardInterrupt:
            pass
    out.print("halab ui: stopped")


# -- exercises (lab/exercises/cli.py) -------------------------------------------------------
def _mount_exercises() -> None:
    from lab.exercises.cli import app as exercise_app

    app.add_typer(exercise_app, name="exercise")


_mount_exercises()
# -- a classroom: N labs on one machine ----------------------------------------------------
class_app = typer.Typer(no_args_is_help=True, help="A classroom: N independent labs "
                        "(learner01...) from one lab file, on one machine.")
app.add_typer(class_app, name="class")
ParallelOpt = Annotated[int, typer.Option(
    "--parallel", help="labs brought up (or asked) at the same time")]


@class_app.command("up")
def class_up(n: Annotated[int, typer.Argument(help="how many learners (1-999)")],
             file: LabFile = Path("lab.yaml"),
             parallel: ParallelOpt = classroom.DEFAULT_PARALLEL,
             stem: Annotated[str, typer.Option(
                 help="the learners' names: STEM01, STEM02, ...")] = classroom.STEM) -> None:
    """Bring N learners' labs up in parallel, each with its own namespaces, keys and state,
    all on the lab file's addresses. A lab that fails is reported and removed; exit 1."""
    room = classroom.Classroom(file)
    t0 = time.monotonic()
    done: list[classroom.Outcome] = []
    with out.status(f"class of {n} from {file}: starting") as st:
        def finished(o: classroom.Outcome) -> None:
            done.append(o)
            if o.ok:
                out.log(f"{o.name} up in {o.seconds:.1f} s", highlight=False)
            else:
                out.log(f"[red]{o.name} failed after {o.seconds:.1f} s and was removed:[/] "
                        f"{o.error}", highlight=False)
            ok = sum(d.ok for d in done)
            st.update(f"class of {n}: {ok} up, {len(done) - ok} failed, "
                      f"{n - len(done)} to go ({time.monotonic() - t0:.0f} s)")

        outcomes = room.up(n, parallel, stem, done=finished,
                           notice=lambda m: out.log(m, highlight=False))
    failed = [o for o in outcomes if not o.ok]
    out.print(f"class up: {n - len(failed)} of {n} labs up in {time.monotonic() - t0:.1f} s "
              f"({parallel} at a time); learners' lab files in {room.dir}/ "
              f"(e.g. `halab ssh lb02 -f {room.lab_file(outcomes[0].name)}`)",
              highlight=False)
    if failed:
        out.print(f"[red]failed: {', '.join(o.name for o in failed)}[/] (their logs stay in "
                  f"{room.dir / '.halab'}/NAME/nodes/)", highlight=False)
        raise typer.Exit(1)


def _class_rows(s: classroom.ClassStatus) -> list[list[str]]:
    rows = [["learner", "state", "VIP", "steady", "exercise"]]
    for ls in s.learners:
        vip = "?" if ls.vip_holders is None else ", ".join(ls.vip_holders) or "none"
        if ls.problems is None:
            steady_ = f"unknown: {ls.error}" if ls.error else "-"
        else:
            steady_ = "steady" if not ls.problems else "; ".join(ls.problems)
            if ls.error:
                steady_ += f" (unknown: {ls.error})"
        ex = ls.exercise
        ex = "" if ex is None else (ex.get("name", str(ex)) if isinstance(ex, dict) else str(ex))
        rows.append([ls.name, ls.state, vip, steady_ if ls.state == "up" else (ls.error or ""),
                     ex])
    return rows


@class_app.command("status")
def class_status(file: LabFile = Path("lab.yaml"), as_json: JsonOpt = False,
                 parallel: ParallelOpt = classroom.DEFAULT_PARALLEL) -> None:
    """Each learner's lab: who holds the VIP, what keeps it from steady, the exercise."""
    s = classroom.Classroom(file).status(parallel)
    if as_json:
        _json(s.as_dict())
        return
    rows = _class_rows(s)
    healthy = sum(ls.healthy for ls in s.learners)
    title = f"class of {len(s.learners)} from {file}: {healthy} steady"
    if not _tty():
        sys.stdout.write(f"# {title}\n")
        _plain(rows)
        return
    t = Table(title=title)
    for col in rows[0]:
        t.add_column(col, overflow="fold")
    for row in rows[1:]:
        t.add_row(*row, style=None if row[3] == "steady" else "yellow")
    out.print(t)


@class_app.command("down")
def class_down(file: LabFile = Path("lab.yaml")) -> None:
    """Remove every learner's lab and the class folder (also after a crash)."""
    room = classroom.Classroom(file)
    names = room.learners()
    removed = room.down()
    out.print(f"class down: {len(names)} learners' labs removed ({len(removed)} namespaces)"
              if names else "class down: no class here (nothing to remove)", highlight=False)


@class_app.command("bench")
def class_bench(n: Annotated[int, typer.Argument(help="how many learners (1-999)")],
                file: LabFile = Path("lab.yaml"),
                parallel: ParallelOpt = classroom.DEFAULT_PARALLEL,
                idle: Annotated[float, typer.Option(help="seconds to watch the idle class")]
                = 180.0,
                keep: Annotated[bool, typer.Option(help="leave the class up afterwards")]
                = False,
                out_file: Annotated[Path | None, typer.Option(
                    "--out", help="write the figures as JSON here")] = None) -> None:
    """Measure a class: bring N labs up, watch them idle (memory, CPU, VRRP transitions,
    every VIP serving), fail one learner over with the whole class around it, take it down.
    Exit 1 when any lab failed to come up, moved or stopped serving, or the failover failed."""
    from lab import classbench

    room = classroom.Classroom(file)
    result = classbench.bench(room, n, parallel, idle, keep,
                              note=lambda m: out.log(m, highlight=False))
    data = result.as_dict()
    if out_file is not None:
        out_file.write_text(json.dumps(data, indent=2) + "\n")
    _plain([["figure", "value"], *[[k, json.dumps(v) if isinstance(v, dict | list) else str(v)]
                                   for k, v in data.items()]])
    if (result.failed or result.vip_not_on_master or result.not_serving or result.transitions
            or not result.failover_passed or result.labs_up < n
            or result.steady_after < result.labs_up):
        raise typer.Exit(1)


def main() -> None:
    try:
        app(standalone_mode=True)
    except HalabError as e:
        # Plain text: the terminal wraps it, and scripts can grep it whole.
        sys.stderr.write(f"halab: {e}\n")
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print("halab: interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
