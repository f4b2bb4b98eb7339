"""Report writers: `table.md`, `table.csv`, `table.tex`, `index.html`, and the rich terminal table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

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


def rich_table(document: dict[str, Any]) -> Table:
    header, body = primary_grid(document, bold=lambda s: f"[bold]{s}[/bold]")
    table = Table(title=f"cmg-eval ({document['meta']['protocol']} protocol, primary metrics)", caption=LEGEND)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in body:
        table.add_row(*row)
    return table
