"""Report writers: `table.md`, `table.csv`, `table.tex`, `index.html`, and the rich terminal table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cmg_eval.errors import CmgError
from cmg_eval.io import write_text
from cmg_eval.report.html import html_report
from cmg_eval.report.table import columns
from cmg_eval.report.text import LEGEND, csv_report, latex_report, markdown_report, primary_grid

__all__ = ["REPORT_FILES", "write_tables", "rich_table"]

REPORT_FILES = ("table.md", "table.csv", "table.tex", "index.html")


def renderers(out: Path) -> dict[str, Any]:
    return {"table.md": markdown_report, "table.csv": csv_report, "table.tex": latex_report,
            "index.html": lambda document: html_report(document, out)}


def write_tables(out: str | Path, document: dict[str, Any]) -> None:
    """Every report file but results.json (which the runner writes first). Each renderer runs on its own: one
    that fails leaves no file of its name and the others are still written, then one line names what failed."""
    out = Path(out)
    failed = []
    for name, render in renderers(out).items():
        try:
            text = render(document)
        except Exception as error:  # a renderer's bug or an unforeseen string: the run's numbers stay
            (out / name).unlink(missing_ok=True)
            failed.append(f"{name} ({type(error).__name__}: {error})")
            continue
        write_text(out / name, text)
    if failed:
        raise CmgError(f"{out}: results.json is complete, but {len(failed)} report file(s) could not be rendered: "
                       f"{'; '.join(failed)}; `cmg-eval report {out}` renders them again")


def rich_table(document: dict[str, Any]) -> Group:
    """One terminal table per task (rows = models, columns = directions), then the averages; every cell is
    rich markup built here from escaped text, so it renders the same on any console."""
    header, body = primary_grid(document, bold=lambda s: f"[bold]{s}[/bold]", escape=escape)
    header = [Text.from_markup(h) for h in header]
    body = [[Text.from_markup(cell) for cell in row] for row in body]
    tables = []
    cols = columns(document)   # body cell i + 1 is column i
    for task in dict.fromkeys(task for task, _ in cols):
        mine = [i for i, (name, _) in enumerate(cols) if name == task]
        metric = document["meta"]["tasks"][task]["primary_metric"]
        table = Table(title=Text(f"{task} ({metric})"), title_justify="left")
        table.add_column("model")
        for i in mine:
            table.add_column(Text(cols[i][1]), justify="right")
        for row in body:
            table.add_row(row[0], *(row[i + 1] for i in mine))
        tables.append(table)
    summary = Table(title=Text(f"average ({document['meta']['protocol']} protocol)"), title_justify="left")
    summary.add_column("model")
    summary.add_column(header[-1], justify="right")
    for row in body:
        summary.add_row(row[0], row[-1])
    return Group(*tables, summary, Text(LEGEND))
