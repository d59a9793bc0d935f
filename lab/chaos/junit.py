"""JUnit XML of a chaos run: one test case per scenario run, for any CI's test tab."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any


def write(path: Path, journal: dict[str, Any]) -> None:
    runs = journal.get("runs", [])
    suite = ET.Element("testsuite", {
        "name": f"halab-chaos (seed {journal.get('seed')})",
        "tests": str(len(runs)),
        "failures": str(sum(r.get("status") == "failed" for r in runs)),
        "errors": str(sum(r.get("status") in ("error", "running") for r in runs)),
        "skipped": str(sum(r.get("status") in ("skipped", "inconclusive") for r in runs)),
        "time": f"{sum(r.get('duration', 0.0) for r in runs):.3f}",
        "timestamp": str(journal.get("started", "")),
    })
    props = ET.SubElement(suite, "properties")
    for k in ("seed", "iterations", "lab", "provider"):
        ET.SubElement(props, "property", name=k, value=str(journal.get(k, "")))
    for r in runs:
        case = ET.SubElement(suite, "testcase", {
            "classname": f"chaos.{r['scenario']}",
            "name": f"{r['index']:03d} {r['scenario']}",
            "time": f"{r.get('duration', 0.0):.3f}",
        })
        if r.get("outages"):
            cprops = ET.SubElement(case, "properties")
            for label, value in sorted(r["outages"].items()):
                ET.SubElement(cprops, "property", name=f"outage:{label}", value=f"{value:.3f}")
        status = r.get("status")
        problems = "\n".join(r.get("problems", []))
        if status == "failed":
            ET.SubElement(case, "failure", message=(r.get("problems") or ["failed"])[0]).text = \
                problems
        elif status in ("error", "running"):
            ET.SubElement(case, "error", message="the run did not finish").text = problems
        elif status == "skipped":
            ET.SubElement(case, "skipped", message=r.get("skip_reason", ""))
        elif status == "inconclusive":
            # Neither a pass nor a failure: the lab did not keep its own timers.
            ET.SubElement(case, "skipped", message="inconclusive: " + "; ".join(
                r.get("inconclusive", [])))
        ET.SubElement(case, "system-out").text = "\n".join(
            f"{s['label']}: {'ok' if s['ok'] else 'FAILED ' + s.get('error', '')}"
            for s in r.get("steps", []))
    tree = ET.ElementTree(suite)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
