"""Markdown, CSV and LaTeX (booktabs) renderings of a results document."""

from __future__ import annotations

import re
from typing import Any

from cmg_eval.report.table import AVERAGE, LONG_COLUMNS, averages, columns, long_frame, primary_cells

MARK = "†"
LEGEND = (f"Bold: best in its column. {MARK}: significantly worse than the column's best "
          "(paired permutation test over the same items, p < 0.05).")


def markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def primary_grid(document: dict[str, Any], bold=lambda s: s, mark: str = MARK,
                 escape=lambda s: s) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the primary table, every text escaped for the output format by `escape`;
    `bold` wraps the best cell's escaped text."""
    cols = columns(document)
    header = [escape(text) for text in ("model", *(f"{task} {direction}" for task, direction in cols), AVERAGE)]
    body = []
    means = averages(document)
    for model, row in primary_cells(document).items():
        cells = []
        for col in cols:
            cell = row.get(col)
            text = escape("n/a" if cell is None else cell.text() + (mark if cell.worse else ""))
            cells.append(bold(text) if cell is not None and cell.best else text)
        body.append([escape(model), *cells, escape("n/a" if means[model] is None else f"{means[model]:.2f}")])
    return header, body


# Markdown: characters that start code, emphasis, links, HTML, strike-through or math, or end a table cell, inside
# a line; `_` only at a word's edge (inside a word, as in `ave_avvp`, it is literal).
MARKDOWN_SPECIAL = re.compile(r"[\\`*\[\]<|~$]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def markdown_escape(text: Any) -> str:
    """A user string (label, task or class name, path) as literal markdown text on one line."""
    return MARKDOWN_SPECIAL.sub(lambda m: "\\" + m.group(), " ".join(str(text).splitlines()))


def detail_tables(document: dict[str, Any]) -> str:
    """Every metric of every task, one markdown table per task, with the primary metric's 95% interval."""
    frame = long_frame(document)
    parts = []
    for task, rows in frame.groupby("task", sort=False):
        metrics = list(dict.fromkeys(rows["metric"]))
        header = ["model", "direction", *map(markdown_escape, metrics), "95% CI (primary)", "n_items"]
        body = []
        for (model, direction), group in rows.groupby(["model", "direction"], sort=False):
            by_metric = {r.metric: (f"{r.value:.2f} ± {r.std:.2f}" if r.n_seeds > 1 else f"{r.value:.2f}")
                         for r in group.itertuples()}
            primary = group[group["primary"] == True]  # noqa: E712 (pandas mask)
            ci = "n/a"
            if len(primary) and primary["ci_low"].iloc[0] is not None and primary["ci_low"].notna().iloc[0]:
                ci = f"[{primary['ci_low'].iloc[0]:.2f}, {primary['ci_high'].iloc[0]:.2f}]"
            body.append([markdown_escape(model), markdown_escape(direction), *(by_metric.get(m, "n/a") for m in metrics), ci,
                         str(group["n_items"].iloc[0])])
        parts.append(f"### {markdown_escape(task)}\n\n" + markdown(header, body))
    return "\n".join(parts)


def markdown_report(document: dict[str, Any]) -> str:
    meta = document["meta"]
    lines = [
        "# cmg-eval results", "",
        f"protocol {markdown_escape(meta['protocol'])}, head seeds {markdown_escape(meta['seeds'])}, data manifest "
        f"{markdown_escape(meta['data']['manifest_hash'][:12])}, cmg-eval {markdown_escape(meta['versions']['cmg_eval'])} "
        f"({markdown_escape(meta.get('git_commit') or 'no git')})", "",
        "Primary metric per task and direction (mean ± std over head seeds; the average is over the cross-modal "
        "columns of the classification and localization tasks, not retrieval).", "",
        markdown(*primary_grid(document, bold=lambda s: f"**{s}**", escape=markdown_escape)),
        LEGEND, "",
        "## All metrics", "",
        detail_tables(document),
    ]
    about = {t: a["about"] for t, a in meta["tasks"].items() if a.get("about")}
    if about:
        lines += ["## Data", ""] + [f"- {markdown_escape(task)}: {markdown_escape(facts)}"
                                    for task, facts in about.items()] + [""]
    if meta.get("skipped"):
        lines += ["## Skipped", ""] + [f"- {markdown_escape(' '.join((s['model'], s['task'], s['direction'])))}: "
                                       f"{markdown_escape(s['reason'])}" for s in meta["skipped"]] + [""]
    lines += ["## Models", ""] + [f"- {markdown_escape(m['label'])}: {markdown_escape(m['path'])} "
                                  f"({markdown_escape(m['encoder'])}, readout {markdown_escape(m['readout'])}, "
                                  f"sha256 {markdown_escape(m['sha256'][:12])})" for m in meta["models"]]
    return "\n".join(lines) + "\n"


# A spreadsheet runs a cell starting with one of these as a formula (also after a tab or carriage return).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formula(value: Any) -> Any:
    """A text cell a spreadsheet would evaluate, prefixed with `'` so it stays text; numbers unchanged."""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_START) else value


def csv_report(document: dict[str, Any]) -> str:
    return long_frame(document)[LONG_COLUMNS].map(neutralise_formula).to_csv(index=False)


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
                 "{": r"\{", "}": r"\}", "^": r"\textasciicircum{}", "~": r"\textasciitilde{}",
                 "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}
LATEX_SYMBOLS = {"->": r"$\to$", "±": r"$\pm$", MARK: r"$^\dagger$"}


def latex_escape(text: str) -> str:
    """Text as literal LaTeX (one pass, so an escape is never escaped again); arrows, ± and the mark as symbols."""
    parts = re.split(f"({'|'.join(map(re.escape, LATEX_SYMBOLS))})", str(text))
    return "".join(LATEX_SYMBOLS[part] if part in LATEX_SYMBOLS else "".join(LATEX_SPECIAL.get(c, c) for c in part)
                   for part in parts).replace("\r", " ").replace("\n", " ")


def latex_report(document: dict[str, Any]) -> str:
    """A booktabs table in the papers' layout."""
    header, body = primary_grid(document, bold=lambda s: f"\\textbf{{{s}}}", escape=latex_escape)
    lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}", r"\toprule",
             " & ".join(header) + r" \\", r"\midrule"]
    lines += [" & ".join(row) + r" \\" for row in body]
    lines += [r"\bottomrule", r"\end{tabular}",
              r"\caption{" + latex_escape(f"cmg-eval, {document['meta']['protocol']} protocol. {LEGEND}") + "}",
              r"\end{table}"]
    return "\n".join(lines) + "\n"
