"""Report writers: the paper-style table (markdown, csv) and its rich terminal form."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from rich.table import Table

from cmg_eval.io import write_text

LONG_COLUMNS = ["model", "task", "direction", "source", "target", "metric", "value", "std", "n_seeds", "n_items",
                "readout", "protocol"]


def long_frame(document: dict[str, Any]) -> pd.DataFrame:
    """One row per (model, task, direction, metric)."""
    return pd.DataFrame(document["results"], columns=LONG_COLUMNS + ["primary"])


def cell(value: float, std: float, n_seeds: int) -> str:
    return f"{value:.2f} ± {std:.2f}" if n_seeds > 1 else f"{value:.2f}"


def primary_table(document: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Rows = models, columns = `task direction` of each task's primary metric, plus the cross-modal mean."""
    frame = long_frame(document)
    frame = frame[frame["primary"]]
    models = [m["label"] for m in document["meta"]["models"]]
    declared = [f"{task} {d}" for task, about in document["meta"]["tasks"].items() for d in about["directions"]]
    present = set(f"{t} {d}" for t, d in zip(frame["task"], frame["direction"]))
    columns = [c for c in declared if c in present]
    header = ["model", *columns, "cross-modal mean"]
    body = []
    for model in models:
        mine = frame[frame["model"] == model]
        cells = {f"{r.task} {r.direction}": cell(r.value, r.std, r.n_seeds) for r in mine.itertuples()}
        cross = mine[mine["source"] != mine["target"]]["value"]
        body.append([model, *(cells.get(c, "n/a") for c in columns), f"{cross.mean():.2f}" if len(cross) else "n/a"])
    return header, body


def markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def detail_tables(document: dict[str, Any]) -> str:
    """Every metric of every task, one markdown table per task."""
    frame = long_frame(document)
    parts = []
    for task, rows in frame.groupby("task", sort=False):
        metrics = list(dict.fromkeys(rows["metric"]))
        header = ["model", "direction", *metrics, "n_items"]
        body = []
        for (model, direction), group in rows.groupby(["model", "direction"], sort=False):
            by_metric = {r.metric: cell(r.value, r.std, r.n_seeds) for r in group.itertuples()}
            body.append([model, direction, *(by_metric[m] for m in metrics), str(group["n_items"].iloc[0])])
        parts.append(f"### {task}\n\n" + markdown(header, body))
    return "\n".join(parts)


def markdown_report(document: dict[str, Any]) -> str:
    meta = document["meta"]
    lines = [
        "# cmg-eval results", "",
        f"protocol `{meta['protocol']}`, head seeds {meta['seeds']}, data manifest `{meta['data']['manifest_hash'][:12]}`,"
        f" cmg-eval {meta['versions']['cmg_eval']} ({meta.get('git_commit') or 'no git'})", "",
        "Primary metric per task (percent; mean ± std over head seeds).", "",
        markdown(*primary_table(document)),
        "## All metrics", "",
        detail_tables(document),
    ]
    if meta.get("skipped"):
        lines += ["## Skipped", ""] + [f"- {s['model']} {s['task']} {s['direction']}: {s['reason']}"
                                       for s in meta["skipped"]] + [""]
    lines += ["## Models", ""] + [f"- {m['label']}: `{m['path']}` ({m['encoder']}, readout {m['readout']}, "
                                  f"sha256 {m['sha256'][:12]})" for m in meta["models"]]
    return "\n".join(lines) + "\n"


def write_tables(out: str | Path, document: dict[str, Any]) -> None:
    """`table.md` and `table.csv` (long form, every metric)."""
    out = Path(out)
    write_text(out / "table.md", markdown_report(document))
    write_text(out / "table.csv", long_frame(document)[LONG_COLUMNS].to_csv(index=False))


def rich_table(document: dict[str, Any]) -> Table:
    header, body = primary_table(document)
    table = Table(title=f"cmg-eval ({document['meta']['protocol']} protocol, primary metrics, %)")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in body:
        table.add_row(*row)
    return table
