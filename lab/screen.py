"""What `halab watch` draws from a ``lab.watch.Frame``: a screen at a terminal, lines in a
pipe. Nothing here observes or judges; it only draws what the frame says, in words as well
as colours (a screen read without colour, or a log, must say the same).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.text import Text

from lab import graph
from lab.probes import Record
from lab.watch import Event, Frame, KindView, Watch
from provision import names

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
    for n in f.topo.load_balancers:
        if str(n.address) == via:
            return n.name
    return via or "?"


def kind_now(f: Frame, k: KindView) -> Text:
    """The kind's latest word: served (rate over the window, median latency, the path) or
    failing (for how long, why), and its last outage."""
    if k.last is None:
        return Text("no probe yet", style="yellow")
    if k.served is None:
        return Text(f"unknown: no probe for {f.t - k.last.t:.1f} s", style="yellow")
    rate = f"{k.rate * 100:.0f}%" if k.rate is not None else "?"
    if k.served:
        text = Text(f"ok {rate}", style="green")
        if k.latency is not None:
            text.append(f" {k.latency * 1000:.0f} ms", style="green")
        text.append(f" via {_lb_of(f, k.last.via)}→{k.last.master or '?'}", style="green")
    else:
        since = k.failing_since if k.failing_since is not None else k.last.t
        text = Text(f"FAILING {f.t - since:.1f} s ({k.last.stage}: {k.last.error})",
                    style="bold red")
    if k.last_outage is not None and k.served:
        o = k.last_outage
        text.append(f"; last outage {o.seconds:.2f} s, {f.t - o.end:.0f} s ago", style="dim")
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
        return Text(f"unknown ({p.arp_error})", style="yellow")
    if p.arp == "":
        return Text("no entry (the client will ask who has the VIP)", style="dim")
    if f.holders is not None and p.arp in f.load_balancers and p.arp not in f.holders:
        return Text(f"the client sends the VIP's packets to {p.arp}, which does not hold it",
                    style="bold red")
    return Text(f"the client sends the VIP's packets to {p.arp}",
                style="green" if p.arp in f.load_balancers else "yellow")


def legend(f: Frame) -> str:
    lbs = " ".join(f"{i + 1} {lb}" for i, lb in enumerate(f.load_balancers))
    return (f"Ctrl-C quits · {lbs} {NO_HOLDER} none {SPLIT} split {UNKNOWN} unknown · {OK} ok "
            f"{FAIL} failed · {f.window / max(1, len(f.vip_cells)):.2g} s/column")


# -- the load balancers, as the last status says ---------------------------------------------
VRRP_STYLES = {"MASTER": "bold green", "BACKUP": "cyan", "FAULT": "bold red"}


def lb_rows(f: Frame) -> list[tuple[Text, ...]]:
    """Per LB: its name, the VIP, its daemons, VRRP as keepalived reports it, and what its
    HAProxy says of the backends. What could not be asked says unknown (the verdict's
    lines give the reason), never a blank."""
    st = f.status
    rows = []
    for name in f.load_balancers:
        n = next((x for x in st.nodes if x.name == name), None) if st else None
        if n is None:
            rows.append((Text(name, style="bold"), Text("not asked yet", style="yellow")))
            continue
        vip = (Text("?", style="yellow") if n.holds_vip is None
               else Text("holds", style="bold green") if n.holds_vip else Text("-"))
        if n.state != "running":
            down = Text(n.state, style="bold red")
            rows.append((Text(name, style="bold"), vip, down, down, Text("off", style="dim")))
            continue
        if n.daemons is None:
            daemons = Text("unknown", style="yellow")
        else:
            stopped = [d for d, s in n.daemons.items() if not s.active]
            daemons = (Text(f"{', '.join(stopped)} stopped", style="bold red") if stopped
                       else Text("up", style="green"))
        keepalived = (n.daemons or {}).get(names.KEEPALIVED_UNIT)
        if n.vrrp is not None:
            vrrp = Text(str(n.vrrp), style=VRRP_STYLES.get(n.vrrp.state, "yellow"))
        elif keepalived is not None and not keepalived.active:
            vrrp = Text("not running", style="bold red")
        else:
            vrrp = Text("unknown", style="yellow")
        rows.append((Text(name, style="bold"), vip, daemons, vrrp, backends_of(f, name)))
    return rows


def backends_of(f: Frame, lb: str) -> Text:
    st = f.status
    b = st.backends.get(lb) if st else None
    n = next((x for x in st.nodes if x.name == lb), None) if st else None
    haproxy = ((n.daemons or {}).get(names.HAPROXY_UNIT) if n else None)
    if haproxy is not None and not haproxy.active:
        return Text("off", style="dim")
    if b is None or b.servers is None:
        return Text("unknown", style="yellow")
    down = [f"{s.server}:{names.PORTS.get(s.proxy, '?')}" for s in b.servers if not s.up]
    if down:
        return Text(f"DOWN {' '.join(down)}", style="bold red")
    return Text(f"UP {len(b.servers)}/{len(b.servers)}", style="green")


# -- the screen --------------------------------------------------------------------------------
def _line(*parts: str | tuple[str, str]) -> Text:
    """One screen line: never wrapped, cut with an ellipsis at the terminal's width."""
    t = Text.assemble(*parts)
    t.no_wrap, t.overflow = True, "ellipsis"
    return t


def _row(*cells: tuple[Text, int | None]) -> Text:
    """One line of fixed-width cells (each padded or cut to its width, a space between), the
    last one free; the line itself is cut at the terminal's width."""
    line = Text()
    for i, (cell, width) in enumerate(cells):
        cell = cell.copy()
        if width is not None:
            cell.truncate(width, overflow="ellipsis", pad=True)
        line.append_text(cell)
        if i < len(cells) - 1:
            line.append(" ")
    line.no_wrap, line.overflow = True, "ellipsis"
    return line


def strip_columns(width: int) -> int:
    """How many columns the strips get on a terminal ``width`` wide: what is left beside
    their label (6) and a short word of now (28)."""
    return max(10, min(120, width - 6 - 28 - 2))


def render(f: Frame, width: int = 80, height: int = 24, show_graph: bool = True,
           events: int | None = None) -> RenderableType:
    """The screen for a terminal ``width`` x ``height``: every line fits the width (cut
    with an ellipsis where it must), and what does not fit the height is left out, least
    needed first: the drawing of the topology, then older events, then reasons."""
    word, why = f.verdict
    age = f.status_age
    head = _line((f" {word.upper()} ", VERDICT_STYLES[word]), f" {f.topo.name} ",
                 (f"VIP {f.vip} ", ""), (_t(f, f.t).replace(" ", ""), "dim"),
                 (f" status {age:.1f}s old" if age is not None else " status: asking", "dim"))
    style = "red" if word == "outage" else "yellow"
    n = len(f.vip_cells)
    strips = [_row((Text("VIP", style="bold"), 5), (vip_strip(f), n), (holders_now(f), None))]
    strips += [_row((Text(k.kind, style="bold"), 5), (probe_strip(k), n), (kind_now(f, k), None))
               for k in f.kinds.values()]
    strips.append(_row((Text("ARP", style="bold"), 5), (arp_now(f), None)))
    widths = (6, 5, 18, 11, None)
    lbs = [_row(*zip((Text(h, style="dim") for h in ("LB", "VIP", "daemons", "VRRP",
                                                       "backends")), widths, strict=True))]
    lbs += [_row(*zip(row, widths, strict=False)) for row in lb_rows(f)]
    fixed = 1 + (len(f.kinds) + 2) + 1 + (len(f.load_balancers) + 1) + 1 + 1 + 1
    room = max(0, height - fixed)
    why_lines = why[:min(len(why), max(1, room // 3))] if why else []
    room -= len(why_lines)
    n_events = min(len(f.events), room if events is None else events)
    parts: list[RenderableType] = [head]
    parts += [_line(("  " + line, style)) for line in why_lines]
    parts += [*strips, Text(""), *lbs, Text(""), _line(("what happened", "bold"))]
    parts += [event_text(f, e) for e in f.events[len(f.events) - n_events:]] if n_events \
        else []
    parts.append(_line((legend(f), "dim")))
    if show_graph:
        drawing = graph.to_rich(graph.build(f.topo, f.status, latest_probes(f)))
        lines_used = fixed + len(why_lines) + n_events
        if height - lines_used >= GRAPH_ROWS and width >= GRAPH_COLUMNS:
            parts += [Text(""), drawing]
    return Group(*parts)


# The topology's drawing of the default lab: ~27 rows, ~75 columns (more LBs or masters
# take more columns); drawn only where it fits whole.
GRAPH_ROWS, GRAPH_COLUMNS = 30, 80


def latest_probes(f: Frame) -> dict[str, Record | None]:
    """Each kind's latest probe for the graph; None where it is stale (unknown)."""
    return {k: v.last if v.served is not None else None for k, v in f.kinds.items()}


def event_text(f: Frame, e: Event) -> Text:
    style = {"vip": "cyan", "lab": "yellow", "arp": "blue", "node": "magenta",
             "vrrp": "cyan", "backend": "magenta"}.get(e.what, "")
    if e.what in ("api", "https", "http"):
        style = "red" if "FAILING" in e.text else "green"
    return _line((_t(f, e.t) + "  ", "dim"), (e.text, style))


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
        console.print(render(f, console.width, console.height, show_graph))
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
    with Live(render(f, console.width, console.height, show_graph), console=console,
              screen=True, auto_refresh=False) as shown:
        try:
            while end is None or time.monotonic() < end:
                time.sleep(REFRESH_S)
                f = w.frame()
                # The terminal's size, asked anew: a window resized meanwhile is drawn to.
                shown.update(render(f, console.width, console.height, show_graph),
                             refresh=True)
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
