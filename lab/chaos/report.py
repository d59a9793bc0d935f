"""report.html of a chaos run: a summary table and one timeline plot per scenario run.

The plots are inline SVG drawn here (no plotting library): per LB a lane that shows when
it held the VIP, per probe kind a lane of outcomes, the LB that forwarded each API probe,
every probe's latency, the fault windows, the expected bound and the measured outage.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import Any

import jinja2
import markupsafe

from lab.chaos.scenario import PROBE_KINDS

W, LEFT, RIGHT = 980, 120, 20
LANE, GAP = 14, 4
LAT_H = 110
OK, FAIL, UNKNOWN, FAULT = "#2e9d4f", "#d7301f", "#c8c8c8", "#f8c471"
LB_COLOURS = ["#2f6fd0", "#8e44ad", "#16a085", "#d35400"]
LAT_MIN_MS, LAT_MAX_MS = 0.3, 1000.0


class _Plot:
    def __init__(self, t_max: float) -> None:
        self.t_max = max(t_max, 1.0)
        self.parts: list[str] = []
        self.y = 0

    def x(self, t: float) -> float:
        return LEFT + (W - LEFT - RIGHT) * max(0.0, min(t, self.t_max)) / self.t_max

    def add(self, s: str) -> None:
        self.parts.append(s)

    def rect(self, t0: float, t1: float, y: float, h: float, fill: str, tip: str = "") -> None:
        x0, x1 = self.x(t0), self.x(t1)
        title = f"<title>{escape(tip)}</title>" if tip else ""
        self.add(f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0, 0.8):.1f}" '
                 f'height="{h}" fill="{fill}">{title}</rect>')

    def label(self, text: str, y: float, size: int = 11, x: float = LEFT - 6,
              anchor: str = "end", fill: str = "#333") -> None:
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
                 f'fill="{fill}">{escape(text)}</text>')


def _runs_of(items: list[tuple[float, Any]], end_gap: float) -> list[tuple[float, float, Any]]:
    """Consecutive samples with the same value merged: [(start, end, value)]."""
    out: list[tuple[float, float, Any]] = []
    for i, (t, v) in enumerate(items):
        nxt = items[i + 1][0] if i + 1 < len(items) else t + end_gap
        if out and out[-1][2] == v and abs(out[-1][1] - t) < 1e-9:
            out[-1] = (out[-1][0], nxt, v)
        else:
            out.append((t, nxt, v))
    return out


def timeline_svg(run: dict[str, Any]) -> str:
    tl = run.get("timeline") or {}
    records, holdings = tl.get("records", []), tl.get("holdings", [])
    interval = tl.get("interval", 0.05)
    if not records:
        return "<p><em>no timeline (the scenario did not get to its method)</em></p>"
    t_max = max([r["t"] + r["latency"] for r in records]
                + [h["t"] for h in holdings] + [0.0]) + 0.2
    p = _Plot(t_max)
    lbs = sorted({h["lb"] for h in holdings})
    colour = {lb: LB_COLOURS[i % len(LB_COLOURS)] for i, lb in enumerate(lbs)}
    via_name = run.get("_lb_addresses", {})

    # Expectations: the bound (dashed bracket) and the measured outage (red bar).
    p.y = 6
    for e in run.get("expected", []):
        y = p.y + 4
        t0 = e["from"]
        p.label(f"{e['kind']} {e['phase']}", y + 8)
        p.rect(t0, t0 + e["measured"], y, 10, FAIL,
               f"measured outage {e['measured']:.2f} s")
        xa, xb = p.x(t0), p.x(t0 + e["allowed"])
        stroke = "#333" if e["ok"] else FAIL
        p.add(f'<path d="M{xa:.1f},{y - 2} v14 M{xa:.1f},{y + 5} H{xb:.1f} M{xb:.1f},{y - 2} '
              f'v14" stroke="{stroke}" stroke-dasharray="4 2" fill="none"/>')
        verdict = "ok" if e["ok"] else "EXCEEDED"
        p.label(f"outage {e['measured']:.2f} s / bound {e['allowed']:.2f} s ({e['bound']}) "
                f"{verdict}", y + 9, 10, x=max(xb, p.x(t0 + e["measured"])) + 4, anchor="start",
                fill=stroke)
        p.y += 20
    lanes_top = p.y + 4
    p.y = lanes_top

    # The faults, each in a bar of its own row.
    for w in run.get("windows", []):
        end = w["end"] if w["end"] is not None else t_max
        p.label("fault", p.y + 11)
        p.rect(w["start"], end, p.y, LANE, FAULT, f"{w['label']}: {w['start']:.2f}-{end:.2f} s")
        p.label(f"⚡ {w['label']} ({end - w['start']:.1f} s)", p.y + 11, 10,
                x=p.x(w["start"]) + 3, anchor="start", fill="#7a3d00")
        p.y += LANE + GAP

    # VIP holder lanes: runs of samples; a gap in the samples stays grey.
    for lb in lbs:
        hs = sorted(((h["t"], h["holds"]) for h in holdings if h["lb"] == lb),
                    key=lambda x: x[0])
        p.label(f"VIP on {lb}", p.y + 11)
        p.rect(0, t_max, p.y, LANE, UNKNOWN, f"{lb}: no sample (unreachable, frozen, down)")
        start = 0
        for i in range(1, len(hs) + 1):
            gap = i == len(hs) or hs[i][0] - hs[i - 1][0] > 4 * interval + 0.1
            if i < len(hs) and not gap and hs[i][1] == hs[start][1]:
                continue
            t0, holds = hs[start]
            t1 = hs[i - 1][0] + interval if gap else hs[i][0]
            # holds None: the LB was running but could not be asked (unknown, grey).
            fill = UNKNOWN if holds is None else colour[lb] if holds else "#ffffff"
            what = {None: "could not be asked whether it holds", True: "holds",
                    False: "does not hold"}[holds]
            p.rect(t0, t1, p.y, LANE, fill, f"{lb} {what} the VIP {t0:.2f}-{t1:.2f} s")
            start = i
        p.y += LANE + GAP
    # Probe outcome lanes.
    for kind in PROBE_KINDS:
        recs = sorted((r["t"], r["ok"]) for r in records if r["kind"] == kind)
        if not recs:
            continue
        p.label(f"{kind} probe", p.y + 11)
        for t0, t1, ok in _runs_of(recs, interval):
            n = sum(1 for t, _ in recs if t0 <= t < t1)
            p.rect(t0, t1, p.y, LANE, OK if ok else FAIL,
                   f"{kind}: {n} probe(s) {'ok' if ok else 'FAILED'} {t0:.2f}-{t1:.2f} s")
        p.y += LANE + GAP
    # Which LB forwarded each API probe.
    api = sorted((r["t"], via_name.get(r.get("via") or "", "") if r["ok"] else "")
                 for r in records if r["kind"] == "api")
    p.label("api via LB", p.y + 11)
    for t0, t1, lb in _runs_of(api, interval):
        p.rect(t0, t1, p.y, LANE, colour.get(lb, FAIL) if lb else FAIL,
               f"forwarded by {lb}" if lb else "failed")
    p.y += LANE + GAP

    # Latency, log scale.
    top = p.y + 8
    p.label("latency", top + 10)
    p.label("(log, ms)", top + 23, 9)

    def ly(ms: float) -> float:
        v = (math.log10(max(ms, LAT_MIN_MS)) - math.log10(LAT_MIN_MS)) / (
            math.log10(LAT_MAX_MS) - math.log10(LAT_MIN_MS))
        return top + LAT_H - v * LAT_H

    for ms in (1, 10, 100, 1000):
        p.add(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{ly(ms):.1f}" y2="{ly(ms):.1f}" '
              'stroke="#eee"/>')
        p.label(f"{ms:g}", ly(ms) + 3, 9)
    shapes = {"tcp": "#7f8c8d", "api": "#2c3e50", "http": "#27ae60", "https": "#2980b9"}
    for r in records:
        fill = shapes.get(r["kind"], "#555") if r["ok"] else FAIL
        p.add(f'<circle cx="{p.x(r["t"]):.1f}" cy="{ly(r["latency"] * 1000):.1f}" r="1.6" '
              f'fill="{fill}"><title>{escape(r["kind"])} {r["latency"] * 1000:.1f} ms '
              f'{escape(r.get("error") or "ok")} master={r.get("master")}</title></circle>')
    p.y = top + LAT_H + 6

    # Fault boundaries across every lane, step marks, the time axis.
    for w in run.get("windows", []):
        for t in (w["start"], w["end"] if w["end"] is not None else t_max):
            p.add(f'<line x1="{p.x(t):.1f}" x2="{p.x(t):.1f}" y1="{lanes_top - 2}" '
                  f'y2="{p.y}" stroke="#e67e22" stroke-width="1.2"/>')
    p.y += 16
    for s in run.get("steps", []):
        x = p.x(s["t"])
        colour_s = "#555" if s["ok"] else FAIL
        p.add(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{lanes_top - 2}" y2="{p.y - 16}" '
              f'stroke="{colour_s}" stroke-width="0.6" stroke-dasharray="2 2">'
              f'<title>{escape(s["phase"])}: {escape(s["label"])} at {s["t"]:.2f} s</title>'
              '</line>')
    step_s = next(s for s in (0.5, 1, 2, 5, 10, 20, 30, 60, 120) if t_max / s <= 14)
    t = 0.0
    while t <= t_max:
        x = p.x(t)
        p.add(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{p.y - 4}" y2="{p.y}" stroke="#333"/>')
        p.label(f"{t:g} s", p.y + 11, 9, x=x, anchor="middle")
        t += step_s
    p.add(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{p.y - 4}" y2="{p.y - 4}" stroke="#333"/>')
    height = p.y + 18
    legend = " ".join(
        f'<span class="sw" style="background:{c}"></span>{escape(lb)}' for lb, c in colour.items())
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" '
            f'viewBox="0 0 {W} {height}" font-family="sans-serif">'
            + "".join(p.parts) + "</svg>"
            + f'<div class="legend">{legend} <span class="sw" style="background:{OK}"></span>'
              f'probe ok <span class="sw" style="background:{FAIL}"></span>failed / outage '
              f'<span class="sw" style="background:{UNKNOWN}"></span>no sample '
              f'<span class="sw" style="background:{FAULT}"></span>fault active; dashed '
              'bracket: the bound from the config; orange lines: fault start and end</div>')


PAGE = jinja2.Template("""<!doctype html>
<html><head><meta charset="utf-8"><title>halab chaos report (seed {{ j.seed }})</title>
<style>
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1040px; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: 13px; }
td, th { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
.passed { color: #1e7b3a; font-weight: bold; } .failed, .error, .running { color: #c0261b;
 font-weight: bold; } .skipped, .inconclusive { color: #8a6d00; font-weight: bold; }
.legend { font-size: 12px; color: #444; margin: 2px 0 10px; }
.sw { display: inline-block; width: 12px; height: 10px; margin: 0 3px 0 10px; }
section { border-top: 2px solid #ddd; margin-top: 1.2em; }
small { color: #666; }
</style></head><body>
<h1>halab chaos report</h1>
<p>lab <b>{{ j.lab }}</b> ({{ j.provider }}), seed <b>{{ j.seed }}</b>, {{ j.iterations }}
iteration(s), started {{ j.started }}, finished {{ j.finished or "(not finished)" }}.
Reproduce: <code>halab chaos --iterations {{ j.iterations }} --seed {{ j.seed }}</code>.</p>
<table><tr><th>#</th><th>scenario</th><th>result</th><th>outage (api)</th>
<th>allowed</th><th>duration</th><th>notes</th></tr>
{% for r in j.runs %}<tr><td>{{ r.index }}</td><td><a href="#run{{ r.index }}">{{ r.scenario
}}</a></td><td class="{{ r.status }}">{{ r.status }}</td>
<td>{% if r.outages %}{{ "%.2f"|format(r.outages.get("api", 0)) }} s{% endif %}</td>
<td>{% for e in r.expected if e.kind == "api" and e.phase == "method" %}{{ "%.2f"|format(e.allowed)
}} s{% endfor %}</td><td>{{ "%.1f"|format(r.duration or 0) }} s</td>
<td>{{ (r.problems or [r.skip_reason or ""])[0] }}</td></tr>
{% endfor %}</table>
{% for r in j.runs %}<section id="run{{ r.index }}">
<h2>{{ r.index }}. {{ r.title }} <small>({{ r.scenario }})</small>
 <span class="{{ r.status }}">{{ r.status }}</span></h2>
{% if r.skip_reason %}<p><b>skipped:</b> {{ r.skip_reason }}</p>{% endif %}
{% for why in r.inconclusive or [] %}<p><b>inconclusive:</b> {{ why }}</p>{% endfor %}
{% for p in r.problems %}<p class="failed">{{ p }}</p>{% endfor %}
{{ r._svg }}
<table><tr><th>steady state</th><th>before</th><th>after</th></tr>
{% for c in r.before %}<tr><td>{{ c.label }}</td><td class="{{ 'passed' if c.ok else 'failed'
}}">{{ c.detail }}</td><td>{% if r.after|length > loop.index0 %}{% set a = r.after[loop.index0]
%}<span class="{{ 'passed' if a.ok else 'failed' }}">{{ a.detail }}</span>{% endif %}</td></tr>
{% endfor %}</table>
<table><tr><th>t (s)</th><th>step</th><th>took (s)</th><th>result</th></tr>
{% for s in r.steps %}<tr><td>{{ "%.2f"|format(s.t) }}</td><td>{{ s.phase }}: {{ s.label }}</td>
<td>{{ "%.2f"|format(s.took) }}</td><td class="{{ 'passed' if s.ok else ('skipped' if s.skipped
else 'failed') }}">{{ "ok" if s.ok else s.error }}</td></tr>{% endfor %}</table>
{% if r.outages %}<p><small>outages (s): {% for k, v in r.outages.items() %}{{ k }} {{
"%.2f"|format(v) }}; {% endfor %}{% if r.restored %} restored afterwards: {{
r.restored|join(", ") }}{% endif %}</small></p>{% endif %}
</section>{% endfor %}
</body></html>
""", autoescape=True)


def render(journal: dict[str, Any], lb_addresses: dict[str, str] | None = None) -> str:
    runs = []
    for r in journal.get("runs", []):
        r = {**r, "_lb_addresses": lb_addresses or journal.get("lb_addresses", {})}
        r["_svg"] = markupsafe.Markup(timeline_svg(r))  # built from escaped parts
        runs.append(r)
    return PAGE.render(j={**journal, "runs": runs})


def write(path: Path, journal: dict[str, Any]) -> None:
    path.write_text(render(journal))
