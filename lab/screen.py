"""What `halab watch` draws from a ``lab.watch.Frame``: a screen at a terminal, lines in a
pipe. Nothing here observes or judges; it only draws what the frame says, in words as well
as colours (a screen read without colour, or a log, must say the same).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from lab import graph
from lab.probes import Record
from lab.watch import Event, Frame, KindView, Watch

# How often the screen (and a pipe's lines) catch up with the watch.
REFRESH_S = 0.25

VERDICT_STYLES = {"steady": "bold white on green", "degraded": "bold black on yellow",
                  "outage": "bold white on red", "unknown": "bold black on bright_yellow"}
OK, FAIL, NONE = "▇", "x", "·"
# The VIP strip: an LB by its place in lab.yaml (1 = the first LB), and what is not one LB.
NO_HOLDER, SPLIT, UNKNOWN = "_", "!", "?"
LB_STYLES = ("green", "cyan", "magenta", "blue")


def _t(f: Frame, t: float) -> str:
    return f"t+{t - f.started:7.2f} s"


def vip_strip(f: Frame) -> Text:
    text = Text()
    width = f.window / max(1, len(f.vip_cells))
    for i, cell in enumerate(f.vip_cells):
        if f.t - f.window + (i + 1) * width <= f.started:
            text.append(NONE, style="dim")  # before the watch began: not unknown, not seen
        elif cell is None:
            text.append(UNKNOWN, style="yellow")
        elif not cell:
            text.append(NO_HOLDER, style="bold red")
        elif len(cell) > 1:
            text.append(SPLIT, style="bold red")
        else:
            place = f.load_balancers.index(cell[0])
            text.append(str(place + 1), style=LB_STYLES[place % len(LB_STYLES)])
    return text


def probe_strip(k: KindView) -> Text:
    text = Text()
    for cell in k.cells:
        text.append(OK if cell == "ok" else FAIL if cell == "fail" else NONE,
                    style="green" if cell == "ok" else "bold red" if cell == "fail" else "dim")
    return text


def _lb_of(f: Frame, via: str | None) -> str:
    st = f.status
    if st is not None:
        for n in st.nodes:
            if n.address == via:
                return n.name
    return via or "?"


def kind_now(f: Frame, k: KindView) -> Text:
    if k.last is None:
        return Text("no probe yet", style="yellow")
    if k.served is None:
        return Text(f"no probe for {f.t - k.last.t:.1f} s", style="yellow")
    if k.served:
        text = Text(f"ok {k.last.latency * 1000:.0f} ms via {_lb_of(f, k.last.via)} → "
                    f"{k.last.master or '?'}", style="green")
    else:
        since = k.failing_since if k.failing_since is not None else k.last.t
        text = Text(f"FAILING for {f.t - since:.1f} s ({k.last.stage}: {k.last.error})",
                    style="bold red")
    if k.last_outage is not None:
        o = k.last_outage
        text.append(f"   last outage {o.seconds:.2f} s ({o.failed} failed), "
                    f"{f.t - o.end:.0f} s ago", style="dim")
    return text


def holders_now(f: Frame) -> Text:
    if f.holders is None:
        return Text("unknown", style="yellow")
    if not f.holders:
        return Text("held by no LB", style="bold red")
    if len(f.holders) > 1:
        return Text(f"SPLIT BRAIN: {' and '.join(f.holders)}", style="bold red")
    return Text(f"on {f.holders[0]}", style="green")


def arp_now(f: Frame) -> Text:
    p = f.polled
    if p is None:
        return Text("not asked yet", style="yellow")
    if p.arp is None:
        return Text(f"? ({p.arp_error})", style="yellow")
    if p.arp == "":
        return Text("no entry (the client will ask who has the VIP)", style="dim")
    if f.holders is not None and p.arp in f.load_balancers and p.arp not in f.holders:
        return Text(f"the client sends the VIP's packets to {p.arp}, which does not hold it",
                    style="bold red")
    return Text(f"the client sends the VIP's packets to {p.arp}",
                style="green" if p.arp in f.load_balancers else "yellow")


def legend(f: Frame) -> str:
    lbs = "  ".join(f"{i + 1} {lb}" for i, lb in enumerate(f.load_balancers))
    return (f"VIP: {lbs}  {NO_HOLDER} none  {SPLIT} split brain  {UNKNOWN} unknown    "
            f"probes: {OK} ok  {FAIL} failed  {NONE} none    one column = "
            f"{f.window / max(1, len(f.vip_cells)):.2g} s, newest on the right")


def render(f: Frame, events: int = 8, show_graph: bool = True) -> RenderableType:
    word, why = f.verdict
    age = f.status_age
    head = Text.assemble((f" {word.upper()} ", VERDICT_STYLES[word]),
                         f"  lab {f.topo.name}  VIP {f.vip}  ", (_t(f, f.t), "dim"),
                         (f"  (status asked {age:.1f} s ago)" if age is not None else "", "dim"))
    parts: list[RenderableType] = [head]
    for line in why[:6]:
        parts.append(Text(f"  {line}", style="red" if word == "outage" else "yellow"
                          if word in ("unknown", "degraded") else ""))
    if len(why) > 6:
        parts.append(Text(f"  ... and {len(why) - 6} more", style="dim"))
    strips = Table.grid(padding=(0, 1))
    strips.add_column(style="bold", no_wrap=True)
    strips.add_column(no_wrap=True)
    strips.add_column()
    strips.add_row("VIP", vip_strip(f), holders_now(f))
    for k in f.kinds.values():
        strips.add_row(k.kind, probe_strip(k), kind_now(f, k))
    strips.add_row("ARP", Text(""), arp_now(f))
    parts += [Text(""), strips, Text(legend(f), style="dim"), Text("")]
    if events:
        parts.append(Text("what happened", style="bold"))
        for e in f.events[-events:]:
            parts.append(event_text(f, e))
        parts.append(Text(""))
    if show_graph:
        parts.append(graph.to_rich(graph.build(f.topo, f.status, latest_probes(f))))
    return Group(*parts)


def latest_probes(f: Frame) -> dict[str, Record | None]:
    """Each kind's latest probe for the graph; None where it is stale (unknown)."""
    return {k: v.last if v.served is not None else None for k, v in f.kinds.items()}


def event_text(f: Frame, e: Event) -> Text:
    style = {"vip": "cyan", "lab": "yellow", "arp": "blue", "node": "magenta"}.get(e.what, "")
    if e.what in ("api", "https", "http"):
        style = "red" if "FAILING" in e.text else "green"
    return Text.assemble((_t(f, e.t) + "  ", "dim"), (e.text, style))


def event_line(f: Frame, e: Event) -> str:
    """One event as a plain line (a pipe, a log file): `t+   12.34 s  VIP: on lb02`."""
    return f"{_t(f, e.t)}  {e.text}"


def summary_lines(f: Frame) -> list[str]:
    """One frame as plain lines: the verdict and why, then each observer's latest word."""
    word, why = f.verdict
    lines = [f"{word}\t{'; '.join(why) or '-'}", f"VIP\t{holders_now(f).plain}"]
    lines += [f"{k.kind}\t{kind_now(f, k).plain}" for k in f.kinds.values()]
    lines.append(f"ARP\t{arp_now(f).plain}")
    return lines


# -- the ways `halab watch` shows a watch ----------------------------------------------------------
def once(w: Watch, console: Console | None, show_graph: bool) -> str:
    """One picture once every observer has answered (a few probes, one status); the word.
    ``console``: a terminal; None: plain lines (and the drawing) on stdout."""
    w.wait_polled()
    time.sleep(min(2.0, 3 * w.interval + w.prober.timeout))  # a few probes of each kind
    f = w.frame()
    if console is not None:
        console.print(render(f, show_graph=show_graph))
    else:
        sys.stdout.write("\n".join(summary_lines(f)) + "\n")
        if show_graph:
            sys.stdout.write("\n" + graph.to_text(graph.build(f.topo, f.status,
                                                               latest_probes(f))))
    return f.verdict[0]


def live(w: Watch, console: Console, duration: float | None, show_graph: bool) -> None:
    """The screen, redrawn until ``duration`` or Ctrl-C; then what happened, in the
    terminal's own scrollback (the screen goes with the alternate buffer)."""
    from rich.live import Live

    end = None if duration is None else time.monotonic() + duration
    f = w.frame()
    with Live(render(f, show_graph=show_graph), console=console, screen=True,
              auto_refresh=False) as shown:
        try:
            while end is None or time.monotonic() < end:
                time.sleep(REFRESH_S)
                f = w.frame()
                shown.update(render(f, show_graph=show_graph), refresh=True)
        except KeyboardInterrupt:
            pass
    f = w.frame()
    for e in f.events:
        console.print(event_text(f, e))


def lines(w: Watch, out: TextIO, duration: float | None) -> None:
    """In a pipe: a header, one line per change as it comes, and the state at the end."""
    out.write(f"# halab watch: lab {w.lab.topo.name}, VIP {w.lab.vip}; one line per "
              "change\n")
    end = None if duration is None else time.monotonic() + duration
    printed = 0
    try:
        while end is None or time.monotonic() < end:
            f = w.frame()
            for e in f.events[printed:]:
                out.write(event_line(f, e) + "\n")
            printed = len(f.events)
            out.flush()
            time.sleep(REFRESH_S)
    except KeyboardInterrupt:
        pass
    f = w.frame()
    for e in f.events[printed:]:
        out.write(event_line(f, e) + "\n")
    out.write("# now\n" + "\n".join(summary_lines(f)) + "\n")
    out.flush()
