"""The topology as a picture for the page: lab.graph's graph of the lab with its live
state (the one `halab graph` draws), rendered to SVG text by Graphviz's `dot`."""

from __future__ import annotations

import subprocess

from lab import graph
from lab.errors import HalabError
from lab.status import LabStatus
from lab.topology import Topology

GREEN, GREY, RED, YELLOW = "#b7e4c7", "#e9ecef", "#f5c2c7", "#ffe69c"


class PictureError(HalabError):
    """Graphviz could not draw the topology."""


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def topology_dot(topo: Topology, status: LabStatus) -> str:
    """The lab as DOT, drawn by lab.graph: the page and `halab graph` draw it the same way."""
    return graph.to_dot(graph.build(topo, status))


def topology_svg(topo: Topology, status: LabStatus) -> str:
    """The picture the page shows: lab.graph's drawing, as SVG text."""
    dot = topology_dot(topo, status)
    try:
        p = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True,
                           timeout=20)
    except FileNotFoundError:
        raise PictureError("the topology picture needs Graphviz's `dot` (Debian package "
                           "graphviz: `make setup` installs it)") from None
    except subprocess.TimeoutExpired:
        raise PictureError("Graphviz's `dot` did not draw the topology within 20 s") from None
    if p.returncode != 0:
        raise PictureError(f"Graphviz's `dot` failed (exit {p.returncode}): "
                           f"{p.stderr.strip()[:300]}")
    return p.stdout
