"""Markdown, CSV and LaTeX (booktabs) renderings of a results document."""

from __future__ import annotations

from typing import Any

from cmg_eval.report.table import AVERAGE, LONG_COLUMNS, averages, columns, long_frame, primary_cells

MARK = "†"
LEGEND = (f"Bold: best in its column. {MARK}: significantly worse than the column's best "
          "(paired permutation test over the same items, p < 0.05).")


def markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def primary_grid(document: dict[str, Any], bold=lambda s: s, mark: str = MARK) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the primary table; `bold` wraps the best cell for the output format."""
    cols = columns(document)
    header = ["model", *(f"{task} {direction}" for task, direction in cols), AVERAGE]
    body = []
    means = averages(document)
    for model, row in primary_cells(document).items():
        cells = []
        for col in cols:
            cell = row.get(col)
            text = "n/a" if cell is None else cell.text() + (mark if cell.worse else "")
            cells.append(bold(text) if cell is not None and cell.best else text)
        body.append([model, *cells, "n/a" if means[model] is None else f"{means[model]:.2f}"])
    return header, body


def detail_tables(document: dict[str, Any]) -> str:
    """Every metric of every task, one markdown table per task, with the primary metric's 95% interval."""
    frame = long_frame(document)
    parts = []
    for task, rows in frame.groupby("task", sort=False):
        metrics = list(dict.fromkeys(rows["metric"]))
        header = ["model", "direction", *metrics, "95% CI (primary)", "n_items"]
        body = []
        for (model, direction), group in rows.groupby(["model", "direction"], sort=False):
            by_metric = {r.metric: (f"{r.value:.2f} ± {r.std:.2f}" if r.n_seeds > 1 else f"{r.value:.2f}")
                         for r in group.itertuples()}
            primary = group[group["primary"] == True]  # noqa: E712 (pandas mask)
            ci = "n/a"
            if len(primary) and primary["ci_low"].iloc[0] is not None and primary["ci_low"].notna().iloc[0]:
                ci = f"[{primary['ci_low'].iloc[0]:.2f}, {primary['ci_high'].iloc[0]:.2f}]"
            body.append([model, direction, *(by_metric.get(m, "n/a") for m in metrics), ci,
                         str(group["n_items"].iloc[0])])
        parts.append(f"### {task}\n\n" + markdown(header, body))
    return "\n".join(parts)


def markdown_report(document: dict[str, Any]) -> str:
    meta = document["meta"]
    lines = [
        "# cmg-eval results", "",
        f"protocol `{meta['protocol']}`, head seeds {meta['seeds']}, data manifest `{meta['data']['manifest_hash'][:12]}`,"
        f" cmg-eval {meta['versions']['cmg_eval']} ({meta.get('git_commit') or 'no git'})", "",
        "Primary metric per task and direction (mean ± std over head seeds; the average is over the cross-modal "
        "columns of the classification and localization tasks, not retrieval).", "",
        markdown(*primary_grid(document, bold=lambda s: f"**{s}**")),
        LEGEND, "",
        "## All metrics", "",
        detail_tables(document),
    ]
    about = {t: a["about"] for t, a in meta["tasks"].items() if a.get("about")}
    if about:
        lines += ["## Data", ""] + [f"- {task}: {facts}" for task, facts in about.items()] + [""]
    if meta.get("skipped"):
        lines += ["## Skipped", ""] + [f"- {s['model']} {s['task']} {s['direction']}: {s['reason']}"
                                       for s in meta["skipped"]] + [""]
    lines += ["## Models", ""] + [f"- {m['label']}: `{m['path']}` ({m['encoder']}, readout {m['readout']}, "
                                  f"sha256 {m['sha256'][:12]})" for m in meta["models"]]
    return "\n".join(lines) + "\n"


def csv_report(document: dict[str, Any]) -> str:
    return long_frame(document)[LONG_COLUMNS].to_csv(index=False)


def latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                          ("$", r"\$"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(char, escaped)
    return text.replace("->", r"$\to$").replace("±", r"$\pm$").replace(MARK, r"$^\dagger$")


def latex_report(document: dict[str, Any]) -> str:
    """A booktabs table in the papers' layout."""
    header, body = primary_grid(document, bold=lambda s: f"\\textbf{{{latex_escape(s)}}}")
    escape = lambda s: s if s.startswith("\\textbf") else latex_escape(s)  # noqa: E731
    lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}", r"\toprule",
             " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(escape(c) for c in row) + r" \\" for row in body]
    lines += [r"\bottomrule", r"\end{tabular}",
              r"\caption{" + latex_escape(f"cmg-eval, {document['meta']['protocol']} protocol. {LEGEND}") + "}",
              r"\end{table}"]
    return "\n".join(lines) + "\n"
