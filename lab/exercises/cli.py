"""`halab exercise ...`: list, start, hint, check, reset. A typer sub-application that
lab/cli.py mounts; errors a user can fix are HalabErrors, which lab.cli.main prints as one
paragraph with the error's exit code.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lab import exercises
from lab.errors import LabFileError
from lab.lab import Lab

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
                  help="Exercises: a broken lab to repair on its nodes, then checked.")
# soft_wrap: a problem is one line, whole, also in a pipe or a file.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)

LabFile = Annotated[Path, typer.Option("-f", "--file", help="the lab file")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable: JSON on stdout")]
NameArg = Annotated[str | None, typer.Argument(help="an exercise (`halab exercise list`)")]


def _json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _note(quiet: bool):  # noqa: ANN202 - a context manager and its update function
    """Progress on stderr for a person at a terminal; nothing for scripts and pipes."""
    if quiet or not err.is_terminal:
        return nullcontext(), lambda _: None
    status = err.status("")
    return status, lambda msg: status.update(msg)


def _close(lab: Lab) -> None:
    # The prober exists once something probed; closing it must not make one (its CA is
    # read at creation, and a lab that is not up has none).
    if "prober" in vars(lab):
        lab.prober.close()
    lab.close()


@app.command(name="list")
def list_(file: LabFile = Path("lab.yaml"), as_json: JsonOpt = False) -> None:
    """Every exercise, and this lab's progress on them when its lab file is there."""
    try:
        lab: Lab | None = Lab.open(file)
    except LabFileError:
        lab = None  # the catalogue needs no lab
    rows = exercises.catalogue()
    if lab is not None:
        p = exercises.progress(lab)
        current = p["active"] or {}
        solved = {s["name"] for s in p["solved"]}  # type: ignore[index, union-attr]
        for row in rows:
            ex = exercises.CATALOGUE[str(row["name"])]
            row["available"] = ex.available(lab.topo) is None
            row["solved"] = row["name"] in solved
            row["active"] = current.get("name") == row["name"]  # a mystery shows nowhere
    if as_json:
        _json(rows)
        return
    columns = ["name", "level", "title"] + (["status"] if lab is not None else [])

    def status(row: dict) -> str:
        return ("active" if row.get("active") else "solved" if row.get("solved")
                else "-" if row.get("available", True) else "not on this lab")

    table = [[str(r["name"]), str(r["level"]), str(r["title"])]
             + ([status(r)] if lab is not None else []) for r in rows]
    if not sys.stdout.isatty():
        for line in [columns, *table]:
            sys.stdout.write("\t".join(line) + "\n")
        return
    t = Table(title="halab exercises (docs/exercises/NAME.md)")
    for c in columns:
        t.add_column(c, no_wrap=c == "name")
    for line in table:
        t.add_row(*line)
    out.print(t)
    out.print("start one: `halab exercise start NAME` (or `--random` for a mystery one)")


@app.command()
def start(name: NameArg = None,
          random: Annotated[bool, typer.Option(
              "--random", help="a mystery exercise: its name is not shown")] = False,
          file: LabFile = Path("lab.yaml"), as_json: JsonOpt = False) -> None:
    """Break the lab the exercise's way; repair it on the nodes, then `check`."""
    lab = Lab.open(file)
    ctx, note = _note(as_json)
    try:
        with ctx:
            ex = exercises.start(lab, name, random=random, note=note)
    finally:
        lab.close()
    if as_json:
        _json(exercises.active(lab))
        return
    if random:
        out.print("A mystery exercise has started: something in the lab is wrong. Find it "
                  "(`halab status`, `halab ssh NODE`), repair it on the nodes, then run "
                  "`halab exercise check`. `halab exercise hint` helps, one hint at a time.")
        return
    out.print(f"[bold]{escape(ex.title)}[/] ({ex.name}, {ex.level})\n{escape(ex.summary)}\n\n"
              f"Repair it on the nodes, then `halab exercise check`. Hints: `halab exercise "
              f"hint`; the page: {ex.doc}; give up: `halab exercise reset`.")


@app.command()
def hint(name: NameArg = None,
         all_: Annotated[bool, typer.Option("--all", help="every hint at once")] = False,
         file: LabFile = Path("lab.yaml"), as_json: JsonOpt = False) -> None:
    """The next hint (each call one more); without a name, the active exercise's."""
    lab = Lab.open(file)
    h = exercises.hint(lab, name, all_)
    if as_json:
        _json(h.as_dict())
        return
    for number, text in h.hints:
        out.print(f"hint {number}/{h.total}: {text}", markup=False)
    if not h.more:
        out.print("(that was the last hint" + (f"; the exercise's page is docs/exercises/"
                                               f"{h.exercise}.md)" if h.exercise else ")"))


@app.command()
def check(name: NameArg = None, file: LabFile = Path("lab.yaml"),
          as_json: JsonOpt = False) -> None:
    """Is the lab healthy, and does it fail over within its bound? Exit 0 only then.
    Without a name: the active exercise (or the lab alone, when none is active)."""
    lab = Lab.open(file)
    ctx, note = _note(as_json)
    t0 = time.monotonic()
    try:
        with ctx:
            result = exercises.check(lab, name, note)
    finally:
        _close(lab)
    if as_json:
        _json(result.as_dict())
    else:
        for p in result.passed:
            out.print(f"[green]ok[/]    {escape(p)}")
        for p in result.problems:
            out.print(f"[red]wrong[/] {escape(p)}")
        took = f"(checked in {time.monotonic() - t0:.0f} s)"
        if result.ok:
            solved = (f"exercise '{result.exercise}' solved: " if result.exercise else
                      "the exercise is solved: ") if result.solved else ""
            out.print(f"[bold green]PASSED[/]: {solved}the lab is healthy and fails over "
                      f"within its bound {took}")
        else:
            out.print(f"[bold red]NOT YET[/]: {len(result.problems)} thing(s) still wrong "
                      f"{took}")
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def reset(file: LabFile = Path("lab.yaml"), as_json: JsonOpt = False) -> None:
    """Put back the configuration halab rendered (provisioning again) and end the active
    exercise."""
    lab = Lab.open(file)
    ctx, note = _note(as_json)
    try:
        with ctx:
            done = exercises.reset(lab, note)
    finally:
        _close(lab)
    if as_json:
        _json({"done": done})
        return
    for d in done:
        out.print(d, markup=False)
    out.print(f"lab '{lab.topo.name}' is as halab rendered it and steady; no exercise active")
