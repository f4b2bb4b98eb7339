"""Report writers: `table.md`, `table.csv`, `table.tex`, `index.html`, and the rich terminal table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from cmg_eval.io import write_text
from cmg_eval.report.html import html_report
from cmg_eval.report.text import LEGEND, csv_report, latex_report, markdown_report, primary_grid

__all__ = ["write_tables", "rich_table"]


def write_tables(out: str | Path, document: dict[str, Any]) -> None:
    """Every report file but results.json (which the runner writes last)."""
    out = Path(out)
    write_text(out / "table.md", markdown_report(document))
    write_text(out / "table.csv", csv_report(document))
    write_text(out / "table.tex", latex_report(document))
    write_text(out / "index.html", html_report(document, out))


def rich_table(document: dict[str, Any]) -> Group:
    """One terminal table per task (rows = models, columns = directions), then the averages."""
    header, body = primary_grid(document, bold=lambda s: f"[bold]{s}[/bold]")
    tables = []
    tasks = list(dict.fromkeys(name.split(" ")[0] for name in header[1:-1]))
    for task in tasks:
        columns = [i for i, name in enumerate(header) if name.split(" ")[0] == task and i not in (0, len(header) - 1)]
        metric = document["meta"]["tasks"][task]["primary_metric"]
        table = Table(title=f"{task} ({metric})", title_justify="left")
        table.add_column("model")
        for i in columns:
            table.add_column(header[i].split(" ", 1)[1], justify="right")
        for row in body:
            table.add_row(row[0], *(row[i] for i in columns))
        tables.append(table)
    summary = Table(title=f"average ({document['meta']['protocol']} protocol)", title_justify="left")
    summary.add_column("model")
    summary.add_column(header[-1], justify="right")
    for row in body:
        summary.add_row(row[0], row[-1])
    return Group(*tables, summary, Text(LEGEND))
