"""`halab`: bring a lab up, look at it, step inside it, break it, clean it away.

Every command takes `-f FILE` for the lab file. Errors a user can fix print one
paragraph and exit non-zero, with no traceback.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lab import faults, observe, timing
from lab.errors import HalabError, PrerequisiteError
from lab.lab import PROVIDERS, Lab

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
                  help="Highly available Kubernetes control-plane labs, broken on purpose.")
out = Console()
err = Console(stderr=True)

LabFile = Annotated[Path, typer.Option("-f", "--file", help="the lab file")]
ProviderOpt = Annotated[str | None, typer.Option(
    "--provider", help=f"one of {', '.join(PROVIDERS)} (default: lab.yaml's, or netns)")]


def _open(file: Path, provider: str | None = None) -> Lab:
    return Lab.open(file, provider)


@app.command()
def up(file: LabFile = Path("lab.yaml"), provider: ProviderOpt = None) -> None:
    """Create the lab's nodes and provision them (HAProxy, keepalived, API servers)."""
    lab = _open(file, provider)
    t0 = time.monotonic()
    with out.status(f"bringing lab '{lab.topo.name}' up ({lab.provider.name})") as st:
        def progress(msg: str) -> None:
            st.update(f"[bold]{lab.topo.name}[/]: {msg}")
            out.log(msg, highlight=False)

        lab.up(progress)
        st.update("waiting for the VIP and every backend")
        faults.wait_steady(lab, 30)
    out.print(f"lab '{lab.topo.name}' is up ({lab.provider.name}) in "
              f"{time.monotonic() - t0:.1f} s; VIP {lab.vip}")
    _status_table(lab)
    lab.close()


@app.command()
def doctor(provider: Annotated[str, typer.Option(
               "--provider", help="netns (the embedded lab) or vagrant (VMs)")] = "netns",
           as_json: Annotated[bool, typer.Option("--json", help="the report as JSON")] = False,
           ) -> None:
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
    lab.down()
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
        removed = clean_prefix("halab-")
        for d in Path(".halab").glob("*") if Path(".halab").exists() else []:
            if d.name == "box":
                continue  # the built vagrant box is not a lab: `make box` made it
            _rm(d)
            removed.append(str(d))
    else:
        lab = _open(file)
        removed = clean_prefix(lab.topo.prefix)
        if lab.state.dir.exists():
            removed.append(str(lab.state.dir))
            lab.state.remove()
    out.print("removed: " + (", ".join(removed) if removed else "nothing (already clean)"))


def _rm(d: Path) -> None:
    import shutil

    shutil.rmtree(d, ignore_errors=True)


def _status_table(lab: Lab) -> None:
    holders = observe.vip_holders(lab)
    t = Table(title=f"lab {lab.topo.name} ({lab.provider.name}), VIP {lab.vip}")
    for col in ("node", "roles", "address", "state", "VIP", "daemons"):
        t.add_column(col)
    for name, node in lab.nodes.items():
        state = lab.provider.node_state(name)
        daemons = ""
        if node.managed and state not in ("crashed", "absent"):
            daemons = ", ".join(
                f"{s}{'' if node.services.status(s).active else ' (stopped)'}"
                for s in node.services.installed())
        t.add_row(name, ", ".join(r.value for r in node.roles), node.address, state,
                  "holds" if name in holders else "", daemons)
    out.print(t)
    b = Table(title="HAProxy backends (k8s-api-server / ingress)")
    b.add_column("server")
    lbs = [lb.name for lb in lab.load_balancers if lab.provider.node_state(lb.name) == "running"]
    for lb in lbs:
        b.add_column(lb)
    states = {lb: {(x.proxy, x.server): x.status for x in observe.backends(lab, lb)}
              for lb in lbs}
    keys = sorted({k for s in states.values() for k in s}, key=lambda k: (k[0], k[1]))
    for k in keys:
        b.add_row(f"{k[0]}/{k[1]}", *[states[lb].get(k, "?") for lb in lbs])
    out.print(b)


@app.command()
def status(file: LabFile = Path("lab.yaml")) -> None:
    """Nodes, roles, addresses, who holds the VIP, HAProxy's backends, daemons."""
    lab = _open(file)
    lab.require_up()
    _status_table(lab)
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


@app.command()
def demo(file: LabFile = Path("lab.yaml")) -> None:
    """The headline, live: kill HAProxy on the MASTER LB and watch the VIP move."""
    lab = _open(file)
    if not lab.is_up():
        up(file)
        lab = _open(file)
    faults.restore(lab)
    with out.status("waiting for the lab to be steady"):
        faults.wait_steady(lab, 30)
    master = lab.topo.master_lb.name
    backup = max(lab.topo.backup_lbs, key=lambda n: n.vrrp.priority if n.vrrp else 0).name
    bound = timing.haproxy_crash(lab.topo)
    out.print(f"VIP {lab.vip} is on [bold]{', '.join(observe.vip_holders(lab))}[/]; "
              f"the config promises a failover within {bound}")
    probe = lab.prober
    with probe.continuous() as tl:
        time.sleep(1)
        t_kill = tl.mark("kill")
        out.print(f"[red]SIGKILL haproxy on {master}[/]")
        faults.kill(lab, master, "haproxy", signal.SIGKILL)
        last = None
        while time.monotonic() - t_kill < bound.with_margin + 2:
            holders = observe.vip_holders(lab)
            recent = tl.of()[-1] if tl.of() else None
            seen = f"ok via {recent.via}" if recent and recent.ok else "FAIL"
            line = (f"t+{time.monotonic() - t_kill:5.2f} s  VIP on "
                    f"{', '.join(holders) or '-':5}  client: {seen}")
            if line[14:] != last:
                out.print(line)
                last = line[14:]
            if holders == [backup] and recent and recent.ok:
                break
            time.sleep(0.1)
        time.sleep(0.5)
    outage = tl.outage_after(t_kill)
    moved = observe.vip_holders(lab) == [backup]
    out.print(f"VIP {'moved to [bold]' + backup + '[/]' if moved else 'did NOT move'}; "
              f"client outage {outage:.2f} s (bound {bound.with_margin:.2f} s); "
              f"{len(tl.failures(after=t_kill))} of {len(tl.of())} probes failed")
    out.print(f"restoring haproxy on {master}...")
    faults.start(lab, master, "haproxy")
    faults.wait_steady(lab, timing.preempt_back(lab.topo).with_margin + 10)
    out.print(f"VIP back on {', '.join(observe.vip_holders(lab))}")
    lab.close()
    if not moved or outage > bound.with_margin:
        raise typer.Exit(1)


# -- faults and chaos runs -------------------------------------------------------------------
def _params(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HalabError(f"a fault parameter is KEY=VALUE (e.g. `-p service=haproxy`), "
                             f"got {item!r}")
        out[key.strip()] = value.strip()
    return out


@app.command()
def fault(name: Annotated[str | None, typer.Argument(help="a fault of the catalogue")] = None,
          nodes: Annotated[list[str] | None, typer.Argument(help="the nodes it acts on")] = None,
          param: Annotated[list[str] | None, typer.Option(
              "-p", "--param", help="KEY=VALUE, e.g. service=haproxy, percent=20")] = None,
          undo: Annotated[bool, typer.Option("--undo", help="undo the fault")] = False,
          list_: Annotated[bool, typer.Option("--list", help="show the catalogue")] = False,
          file: LabFile = Path("lab.yaml")) -> None:
    """Inject a fault by hand (or undo it): `halab fault kill lb01 -p service=haproxy`."""
    if list_ or name is None:
        t = Table(title="halab fault catalogue")
        t.add_column("fault", no_wrap=True)
        for col in ("nodes", "parameters", "what it does", "undo", "providers"):
            t.add_column(col)
        for f in faults.CATALOGUE.values():
            t.add_row(f.name, f.nodes, ", ".join(f"{k}={'(required)' if v is None else v}"
                                                 for k, v in f.params.items()),
                      f.summary, f.undo_summary, ", ".join(sorted(f.providers)))
        out.print(t)
        if name is None and not list_:
            raise typer.Exit(2)
        return
    lab = _open(file)
    lab.require_up()
    from lab.chaos.scenario import resolve

    targets = resolve(lab.topo, nodes or [])
    (faults.undo if undo else faults.inject)(lab, name, targets, _params(param or []))
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
    import random

    from lab.chaos import runner, scenario

    names = [n for item in scenarios or [] for n in item.split(",") if n.strip()]
    chosen = scenario.load_all(names=names or None)
    if seed is None:
        seed = random.SystemRandom().randrange(1, 10**6)
    lab = _open(file)
    lab.require_up()
    try:
        data = runner.chaos(lab, chosen, iterations, seed, report,
                            note=lambda m: out.print(m, highlight=False))
    finally:
        lab.prober.close()
        lab.close()
    s = data.get("summary", {})
    out.print(f"chaos seed {seed}: {s.get('passed', 0)} passed, {s.get('failed', 0)} failed, "
              f"{s.get('skipped', 0)} skipped; report: {report / 'report.html'}")
    if runner.failed(data):
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
