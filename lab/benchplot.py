"""The bench's plot: the client's outage per scenario per profile, as an SVG written here.

Horizontal bars on a log-scale time axis (the seed's outages are seconds, a tuned
profile's a tenth of one): one group per scenario, one bar per profile (its median), a
whisker to the p95, the figures written beside it. An outage of 0 (no failed probe) is
drawn at the axis' left end and labelled 0; a scenario with no figure says so. Plain SVG
1.1, no script, no external font: it opens anywhere and parses as XML.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

# Colour-blind-safe (Okabe-Ito), one per profile in order.
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")
FLOOR_S = 0.01  # the axis never starts below 10 ms: the probes are 50 ms apart
BAR_H, GAP, LEFT, RIGHT, TOP = 16, 14, 150, 150, 56
PLOT_W = 560


def _cells(doc: dict[str, Any]) -> tuple[list[str], list[str]]:
    profiles = list(doc["profiles"])
    scenarios: list[str] = []
    for res in doc["profiles"].values():
        scenarios += [s for s in res if not s.startswith("_") and s not in scenarios]
    return profiles, scenarios


def _axis(values: list[float]) -> tuple[int, int]:
    """The decades the axis spans: from below the smallest figure (a bar needs length; and
    never above 0.1 s, so that profiles from different runs compare on one scale) to
    above the largest."""
    pos = [v for v in values if v > 0] or [1.0]
    small = max(FLOOR_S, min(pos))
    lo = math.floor(math.log10(small))
    if 10.0 ** lo >= small * 0.999:  # exactly on a decade: one more, or the bar is a dot
        lo -= 1
    lo = max(min(lo, -1), round(math.log10(FLOOR_S)))
    hi = math.ceil(math.log10(max(pos)))
    return lo, max(hi, lo + 1)


def _fmt(x: float) -> str:
    return f"{x:.2f} s" if x >= 0.1 else f"{x * 1000:.0f} ms"


def _tick(x: float) -> str:
    return f"{x:g} s" if x >= 0.1 else f"{x * 1000:.0f} ms"


def svg(doc: dict[str, Any], title: str = "client outage per scenario (median, whisker: p95)"
        ) -> str:
    profiles, scenarios = _cells(doc)
    figs = {(p, s): doc["profiles"][p].get(s, {}).get("outage_s", {}) for p in profiles
            for s in scenarios}
    values = [v for f in figs.values() for v in (f.get("median"), f.get("p95"))
              if v is not None]
    lo, hi = _axis(values)

    def x(v: float) -> float:
        v = max(v, 10.0 ** lo)
        return LEFT + (math.log10(v) - lo) / (hi - lo) * PLOT_W

    group_h = len(profiles) * BAR_H + GAP
    height = TOP + len(scenarios) * group_h + 56 + 18 * len(profiles)
    width = LEFT + PLOT_W + RIGHT
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" '
           'font-size="12">',
           f'<title>{escape(title)}</title>',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>']
    bottom = TOP + len(scenarios) * group_h
    # Decades and the values between them (2, 5): a log axis one can read figures off.
    for d in range(lo, hi + 1):
        for m in (1, 2, 5):
            v = m * 10.0 ** d
            if v > 10.0 ** hi:
                break
            gx = x(v)
            out.append(f'<line x1="{gx:.1f}" y1="{TOP - 6}" x2="{gx:.1f}" y2="{bottom}" '
                       f'stroke="{"#bbb" if m == 1 else "#eee"}"/>')
            if m == 1 or hi - lo <= 3:
                out.append(f'<text x="{gx:.1f}" y="{bottom + 16}" text-anchor="middle" '
                           f'fill="#444">{escape(_tick(v))}</text>')
    out.append(f'<text x="{LEFT + PLOT_W / 2}" y="{bottom + 32}" text-anchor="middle">'
               'seconds (log scale)</text>')
    for i, s in enumerate(scenarios):
        y0 = TOP + i * group_h
        out.append(f'<text x="{LEFT - 8}" y="{y0 + len(profiles) * BAR_H / 2 + 4}" '
                   f'text-anchor="end" font-weight="bold">{escape(s)}</text>')
        for j, p in enumerate(profiles):
            f = figs[(p, s)]
            y = y0 + j * BAR_H
            med, top = f.get("median"), f.get("p95")
            colour = COLOURS[j % len(COLOURS)]
            attrs = f'class="bar" data-profile="{escape(p)}" data-scenario="{escape(s)}"'
            if med is None:
                out.append(f'<rect {attrs} x="{LEFT}" y="{y + 2}" width="0" '
                           f'height="{BAR_H - 4}" fill="{colour}"/>')
                out.append(f'<text x="{LEFT + 4}" y="{y + BAR_H - 4}" fill="#888">'
                           f'{escape(p)}: no figure</text>')
                continue
            w = max(1.0, x(med) - LEFT) if med > 0 else 1.0
            out.append(f'<rect {attrs} x="{LEFT}" y="{y + 2}" width="{w:.1f}" '
                       f'height="{BAR_H - 4}" fill="{colour}"><title>{escape(p)} {escape(s)}: '
                       f'median {_fmt(med)}, p95 {_fmt(top or 0)}</title></rect>')
            end = LEFT + w
            if top is not None and top > med:
                tx = x(top)
                out.append(f'<line x1="{end:.1f}" y1="{y + BAR_H / 2}" x2="{tx:.1f}" '
                           f'y2="{y + BAR_H / 2}" stroke="#333"/>'
                           f'<line x1="{tx:.1f}" y1="{y + 4}" x2="{tx:.1f}" '
                           f'y2="{y + BAR_H - 4}" stroke="#333"/>')
                end = tx
            label = "0" if med == 0 else _fmt(med)
            if top is not None and top != med:
                label += f" (p95 {_fmt(top)})"
            elif med == 0:
                label += " (no outage in any run)"
            out.append(f'<text x="{end + 4:.1f}" y="{y + BAR_H - 4}" fill="#222">'
                       f'{escape(label)}</text>')
    ly = bottom + 48
    for j, p in enumerate(profiles):
        out.append(f'<rect x="{LEFT}" y="{ly + 18 * j - 10}" width="12" height="12" '
                   f'fill="{COLOURS[j % len(COLOURS)]}"/>'
                   f'<text x="{LEFT + 18}" y="{ly + 18 * j}">{escape(p)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write(doc: dict[str, Any], path: Path) -> None:
    path.write_text(svg(doc))
