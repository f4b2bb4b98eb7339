"""A self-contained `index.html`: the table and matplotlib plots embedded as PNG data URIs."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cmg_eval.io import folder_name  # noqa: E402
from cmg_eval.metrics import confusion_matrix  # noqa: E402
from cmg_eval.report.table import primary_cells  # noqa: E402
from cmg_eval.report.text import LEGEND, primary_grid  # noqa: E402
from cmg_eval.task import Predictions  # noqa: E402

MODALITY_ORDER = ("video", "audio", "text")
STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
         "td:first-child,th:first-child{text-align:left}img{max-width:100%}.note{color:#555;font-size:90%}")


def png(figure) -> str:
    """A figure as an <img> with an embedded PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def task_rows(document: dict[str, Any], task: str) -> list[dict[str, Any]]:
    return [r for r in document["results"] if r.get("primary") and r["task"] == task]


def bar_chart(document: dict[str, Any], task: str) -> str:
    """Primary metric per direction, one bar per model, std as error bars."""
    rows = task_rows(document, task)
    present = {r["direction"] for r in rows}
    directions = [d for d in document["meta"]["tasks"][task]["directions"] if d in present]
    models = list(dict.fromkeys(r["model"] for r in rows))
    figure, axis = plt.subplots(figsize=(1.2 + 1.1 * len(directions) * max(1, len(models)) / 2, 3))
    width = 0.8 / len(models)
    for i, model in enumerate(models):
        mine = {r["direction"]: r for r in rows if r["model"] == model}
        values = [mine[d]["value"] if d in mine else np.nan for d in directions]
        errors = [mine[d]["std"] if d in mine else 0 for d in directions]
        axis.bar(np.arange(len(directions)) + i * width, values, width, yerr=errors, capsize=3, label=model)
    axis.set_xticks(np.arange(len(directions)) + 0.4 - width / 2, directions)
    axis.set_ylabel(rows[0]["metric"])
    axis.set_title(task)
    axis.legend(fontsize=8)
    return png(figure)


def transfer_matrices(document: dict[str, Any], task: str) -> str:
    """source x target matrix of the primary metric per model (diagonal = same-modality head)."""
    rows = task_rows(document, task)
    models = list(dict.fromkeys(r["model"] for r in rows))
    modalities = [m for m in MODALITY_ORDER if any(m in (r["source"], r["target"]) for r in rows)]
    figure, axes = plt.subplots(1, len(models), figsize=(2.6 * len(models), 2.6), squeeze=False)
    for axis, model in zip(axes[0], models):
        grid = np.full((len(modalities), len(modalities)), np.nan)
        for r in rows:
            if r["model"] == model:
                grid[modalities.index(r["source"]), modalities.index(r["target"])] = r["value"]
        axis.imshow(grid, cmap="viridis", vmin=0, vmax=100)
        for (i, j), value in np.ndenumerate(grid):
            if not np.isnan(value):
                axis.text(j, i, f"{value:.1f}", ha="center", va="center", color="w" if value < 60 else "k")
        axis.set_xticks(range(len(modalities)), modalities)
        axis.set_yticks(range(len(modalities)), modalities)
        axis.set_xlabel("target")
        axis.set_ylabel("source")
        axis.set_title(model, fontsize=9)
    figure.suptitle(f"{task}: transfer matrix")
    return png(figure)


def drop_chart(document: dict[str, Any]) -> str:
    """Per model and task: mean same-modality score minus mean cross-modal score."""
    cells = primary_cells(document)
    tasks = list(document["meta"]["tasks"])
    figure, axis = plt.subplots(figsize=(1.5 + 1.2 * len(tasks), 3))
    width = 0.8 / max(1, len(cells))
    for i, (model, row) in enumerate(cells.items()):
        drops = []
        for task in tasks:
            same = [c.value for (t, d), c in row.items() if t == task and d[0] == d[-1]]
            cross = [c.value for (t, d), c in row.items() if t == task and d[0] != d[-1]]
            drops.append(np.mean(same) - np.mean(cross) if same and cross else np.nan)
        axis.bar(np.arange(len(tasks)) + i * width, drops, width, label=model)
    axis.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2, tasks)
    axis.set_ylabel("same-modality − cross-modal")
    axis.axhline(0, color="k", linewidth=0.5)
    axis.legend(fontsize=8)
    return png(figure)


def confusion_plot(document: dict[str, Any], run_dir: Path) -> str | None:
    """Confusion matrix of the first model on its first cross-modal classification direction (first seed)."""
    for r in document["results"]:
        if not r.get("primary") or r["source"] == r["target"]:
            continue
        name = f"{r['direction'].replace('->', '_to_')}_seed{document['meta']['seeds'][0]}.npz"
        path = run_dir / "predictions" / folder_name(r["model"]) / folder_name(r["task"]) / folder_name(name)
        if not path.is_file():
            continue
        with np.load(path, allow_pickle=False) as saved:
            labels = Predictions.from_arrays(dict(saved)).class_labels() if "item" in saved.files else None
        if labels is None:
            continue
        y_true, y_pred = labels
        n_classes = int(max(y_true.max(), y_pred.max())) + 1
        counts = confusion_matrix(y_true, y_pred, n_classes)
        figure, axis = plt.subplots(figsize=(4.5, 4))
        image = axis.imshow(counts, cmap="Blues")
        figure.colorbar(image, ax=axis)
        axis.set_xlabel("predicted class")
        axis.set_ylabel("true class")
        axis.set_title(f"{r['model']} {r['task']} {r['direction']}", fontsize=9)
        return png(figure)
    return None


def codebook_table(document: dict[str, Any]) -> str | None:
    """Code usage, perplexity, dead codes and paired-segment agreement, where the run recorded them."""
    diagnostics = document["meta"].get("codebook") or {}
    body = []
    for model, about in diagnostics.items():
        for column in about["columns"]:
            agreement = ", ".join(f"{pair} {100 * a.get('segment', a['clip_mode']):.1f}%"
                                  for pair, a in column["agreement"].items())
            for modality, use in column["modalities"].items():
                body.append([html.escape(str(text)) for text in (model, column["column"], modality, use["used"],
                                                                  f"{use['perplexity']:.1f}", column["dead_codes"],
                                                                  agreement)])
    if not body:
        return None
    header = ["model", "column", "modality", "codes used", "perplexity", "dead codes (column)",
              "same code on paired segments"]  # plain text, nothing to escape
    n_items = max(about["n_items"] for about in diagnostics.values())
    return (html_table(header, body) + f"<p class='note'>On the first {n_items} paired clips of the "
            "VGGSound-AVEL40k set; a column is an RVQ level or an SRCID layer.</p>")


def html_table(header: list[str], body: list[list[str]]) -> str:
    """A table of cells already escaped (or marked up) as HTML."""
    head = "".join(f"<th>{h}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><tr>{head}</tr>{rows}</table>"


def html_report(document: dict[str, Any], run_dir: Path) -> str:
    """The page; plot texts are literal (matplotlib's mathtext off, so a `$` in a label is a dollar sign)."""
    with matplotlib.rc_context({"text.parse_math": False}):
        return _html_report(document, run_dir)


def _html_report(document: dict[str, Any], run_dir: Path) -> str:
    header, body = primary_grid(document, bold=lambda s: f"<b>{s}</b>", escape=html.escape)
    meta = document["meta"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>cmg-eval results</title>"
             f"<style>{STYLE}</style></head><body>",
             "<h1>cmg-eval results</h1>",
             f"<p class='note'>protocol {html.escape(str(meta['protocol']))}, head seeds "
             f"{html.escape(str(meta['seeds']))}, cmg-eval {html.escape(str(meta['versions']['cmg_eval']))}, "
             f"data manifest {html.escape(str(meta['data']['manifest_hash'])[:12])}</p>",
             html_table(header, body),
             f"<p class='note'>{html.escape(LEGEND)}</p>", "<h2>Per task</h2>"]
    for task in meta["tasks"]:
        if task_rows(document, task):
            parts += [f"<h3>{html.escape(str(task))}</h3>", bar_chart(document, task),
                      transfer_matrices(document, task)]
    parts += ["<h2>Same-modality to cross-modal drop</h2>", drop_chart(document)]
    for title, plot in (("Confusion matrix", confusion_plot(document, run_dir)), ("Codebook", codebook_table(document))):
        if plot:
            parts += [f"<h2>{title}</h2>", plot]
    parts.append("</body></html>")
    return "\n".join(parts)
