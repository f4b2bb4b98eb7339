"""The paper-style table as data: rows = models, columns = task and direction, last column the average."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

LONG_COLUMNS = ["model", "task", "direction", "source", "target", "metric", "value", "std", "ci_low", "ci_high",
                "n_seeds", "n_items", "readout", "protocol"]
AVERAGE = "average"


@dataclass
class Cell:
    """One model's primary metric in one column."""

    value: float
    std: float
    n_seeds: int
    best: bool = False
    worse: bool = False   # significantly worse than the column's best (paired test)

    def text(self) -> str:
        return f"{self.value:.2f} ± {self.std:.2f}" if self.n_seeds > 1 else f"{self.value:.2f}"


def long_frame(document: dict[str, Any]) -> pd.DataFrame:
    """One row per (model, task, direction, metric)."""
    frame = pd.DataFrame(document["results"])
    for column in LONG_COLUMNS + ["primary"]:
        if column not in frame:
            frame[column] = None
    return frame[LONG_COLUMNS + ["primary"]]


def columns(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(task, direction) in the order the tasks declare them, where the run has rows."""
    present = {(r["task"], r["direction"]) for r in document["results"] if r.get("primary")}
    declared = [(task, d) for task, about in document["meta"]["tasks"].items() for d in about["directions"]]
    return [c for c in declared if c in present]


def primary_cells(document: dict[str, Any]) -> dict[str, dict[tuple[str, str], Cell]]:
    """model -> column -> Cell, with the best per column and significant gaps marked."""
    cells: dict[str, dict[tuple[str, str], Cell]] = {m["label"]: {} for m in document["meta"]["models"]}
    lower = {t: set(a.get("lower_is_better", [])) for t, a in document["meta"]["tasks"].items()}
    for r in document["results"]:
        if r.get("primary"):
            cells[r["model"]][(r["task"], r["direction"])] = Cell(r["value"], r["std"], r["n_seeds"])
    for task, direction in columns(document):
        here = {m: c[(task, direction)] for m, c in cells.items() if (task, direction) in c}
        metric = next(r["metric"] for r in document["results"] if r.get("primary") and r["task"] == task)
        pick = min if metric in lower.get(task, set()) else max
        if len(here) > 1:
            here[pick(here, key=lambda m: here[m].value)].best = True
    for entry in document.get("comparisons", []):
        cell = cells.get(entry["other"], {}).get((entry["task"], entry["direction"]))
        if cell is not None and entry.get("significant"):
            cell.worse = True
    return cells


def averaged(document: dict[str, Any], task: str) -> bool:
    """Whether the task's metadata puts it in the average (`in_average`; results written before that field: yes)."""
    return bool(document["meta"]["tasks"][task].get("in_average", True))


def averages(document: dict[str, Any]) -> dict[str, float | None]:
    """Per model, the mean primary value over cross-modal head-based columns (the papers' average column)."""
    out = {}
    for model, row in primary_cells(document).items():
        cross = [c.value for (task, direction), c in row.items()
                 if direction[0] != direction[-1] and averaged(document, task)]
        out[model] = sum(cross) / len(cross) if cross else None
    return out
