"""The papers' comparison tables from one run, rows grouped by pretraining seed (`cmg_eval.seedgroups`).

Table I: AVE accuracy in-modal (V->V, A->A) and cross-modal (V->A, A->V). Table II: every cross-modal
head-based column (AVE, AVVP, AVE->AVVP, UCF<->VGG) and their average. Table III: zero-shot retrieval
R@10 with each task's chance level. A cell is `mean ± std across pretraining seeds [mean head-seed std]`;
pairs of models whose difference exceeds the pretraining-seed spread (Welch's t-test over pretraining
seeds) are listed under the tables.
"""

from __future__ import annotations

import warnings
from itertools import combinations
from typing import Any

import numpy as np
from scipy import stats

from cmg_eval.report.table import averaged
from cmg_eval.report.text import markdown
from cmg_eval.seedgroups import group_by_pretrain_seed

TABLE_I = [("ave", "V->V"), ("ave", "A->A"), ("ave", "V->A"), ("ave", "A->V")]
TABLE_II_TASKS = ("ave", "avvp", "ave_avvp", "ucf_vgg")
RETRIEVAL_METRIC = "r10"
SIGNIFICANCE = 0.05


def primary_rows(grouped: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(group, task, direction) -> the grouped primary row."""
    return {(r["model"], r["task"], r["direction"]): r for r in grouped["results"] if r.get("primary")}


def cell_text(row: dict[str, Any] | None) -> str:
    if row is None:
        return "n/a"
    text = f"{row['value']:.2f}"
    if row["n_seeds"] > 1:
        text += f" ± {row['std']:.2f}"
    if row.get("head_seeds", 1) > 1:
        text += f" [{row['head_std']:.2f}]"
    return text


def member_averages(grouped: dict[str, Any], group: str, cols: list[tuple[str, str]]) -> list[float]:
    """Per pretraining seed of `group`, the mean over `cols` of its values (seeds missing a column skipped)."""
    rows = primary_rows(grouped)
    found = [rows.get((group, task, direction)) for task, direction in cols]
    if not cols or any(r is None for r in found):
        return []
    members = list(found[0]["members"])
    return [float(np.mean([r["members"][m] for r in found])) for m in members if all(m in r["members"] for r in found)]


def average_text(values: list[float], head_std: float | None) -> str:
    if not values:
        return "n/a"
    text = f"{np.mean(values):.2f}"
    if len(values) > 1:
        text += f" ± {np.std(values, ddof=1):.2f}"
    return text + (f" [{head_std:.2f}]" if head_std is not None else "")


def table_ii_columns(grouped: dict[str, Any]) -> list[tuple[str, str]]:
    tasks = grouped["meta"]["tasks"]
    return [(task, d) for task in TABLE_II_TASKS if task in tasks and averaged(grouped, task)
            for d in tasks[task]["directions"] if d[0] != d[-1]]


def retrieval_columns(grouped: dict[str, Any]) -> list[tuple[str, str]]:
    return [(task, d) for task, about in grouped["meta"]["tasks"].items()
            if about.get("primary_metric") == RETRIEVAL_METRIC for d in about["directions"]]


def grid(grouped: dict[str, Any], cols: list[tuple[str, str]], with_average: bool) -> tuple[list[str], list[list[str]]]:
    rows = primary_rows(grouped)
    groups = [m["label"] for m in grouped["meta"]["models"]]
    header = ["model", *(f"{task} {direction}" for task, direction in cols)] + (["average"] if with_average else [])
    body = []
    for group in groups:
        cells = [cell_text(rows.get((group, task, direction))) for task, direction in cols]
        if with_average:
            heads = [rows[(group, t, d)]["head_std"] for t, d in cols if (group, t, d) in rows]
            cells.append(average_text(member_averages(grouped, group, cols), float(np.mean(heads)) if heads else None))
        body.append([group, *cells])
    return header, body


def column_samples(grouped: dict[str, Any], col: tuple[str, str]) -> dict[str, list[float]]:
    """Group -> its members' values in one column."""
    rows = primary_rows(grouped)
    return {m["label"]: list(rows[(m["label"], *col)]["members"].values())
            for m in grouped["meta"]["models"] if (m["label"], *col) in rows}


def average_samples(grouped: dict[str, Any]) -> dict[str, list[float]]:
    """Group -> its members' Table II averages."""
    return {m["label"]: member_averages(grouped, m["label"], table_ii_columns(grouped)) for m in grouped["meta"]["models"]}


def separated_pairs(samples: dict[str, list[float]]) -> list[str]:
    """`a > b (p)` for pairs of groups with >= 2 pretraining seeds each whose means differ beyond the spread."""
    samples = {group: values for group, values in samples.items() if len(values) > 1}
    found = []
    for a, b in combinations(samples, 2):
        with warnings.catch_warnings():  # a group of equal values warns about precision; its p is still right
            warnings.simplefilter("ignore", RuntimeWarning)
            test = stats.ttest_ind(samples[a], samples[b], equal_var=False)
        if np.isfinite(test.pvalue) and test.pvalue < SIGNIFICANCE:
            high, low = (a, b) if np.mean(samples[a]) > np.mean(samples[b]) else (b, a)
            found.append(f"{high} > {low} (p {test.pvalue:.3f})")
    return found


def chance_row(grouped: dict[str, Any], cols: list[tuple[str, str]]) -> list[str]:
    tasks = grouped["meta"]["tasks"]
    values = [tasks[t].get("about", {}).get("chance", {}).get(d, {}).get(RETRIEVAL_METRIC) for t, d in cols]
    return ["chance", *("n/a" if v is None else f"{v:.2f}" for v in values)]


def paper_tables(document: dict[str, Any]) -> str:
    """The markdown report: Tables I, II, III and the differences beyond the pretraining-seed spread."""
    grouped = group_by_pretrain_seed(document)
    seeds = sorted({s for m in grouped["meta"]["models"] for s in m.get("pretrain_seeds", [])})
    head_seeds = document["meta"].get("seeds")
    parts = ["# cmg-eval paper tables", "",
             f"Protocol `{document['meta'].get('protocol')}`; head seeds {head_seeds}; pretraining seeds "
             f"{seeds or 'one per model'} (rows `NAME+seedN` grouped into `NAME`). A cell is the mean over "
             "pretraining seeds ± their std [mean head-seed std].", ""]
    present = {(r["task"], r["direction"]) for r in grouped["results"]}
    table_i = [c for c in TABLE_I if c in present]
    if table_i:
        parts += ["## Table I: AVE accuracy in-modal (V->V, A->A) and cross-modal (V->A, A->V)", "",
                  markdown(*grid(grouped, table_i, with_average=False))]
    table_ii = table_ii_columns(grouped)
    if table_ii:
        parts += ["## Table II: cross-modal transfer (classification and localization) and the average", "",
                  markdown(*grid(grouped, table_ii, with_average=True))]
    table_iii = retrieval_columns(grouped)
    if table_iii:
        header, body = grid(grouped, table_iii, with_average=False)
        parts += ["## Table III: zero-shot retrieval R@10", "", markdown(header, [*body, chance_row(grouped, table_iii)])]
    lines = []
    for col in dict.fromkeys([*table_i, *table_ii, *table_iii]):
        pairs = separated_pairs(column_samples(grouped, col))
        if pairs:
            lines.append(f"- {col[0]} {col[1]}: " + "; ".join(pairs))
    pairs = separated_pairs(average_samples(grouped)) if table_ii else []
    if pairs:
        lines.append("- Table II average: " + "; ".join(pairs))
    parts += ["## Differences beyond the pretraining-seed spread", "",
              "Welch's t-test over pretraining seeds, p < 0.05; only models with at least 2 pretraining seeds.", "",
              *(lines or ["- none"]), ""]
    return "\n".join(parts)
