"""Statistics over seeds and items: bootstrap intervals, paired tests, and the regression gate."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy import stats

from cmg_eval.errors import CmgError
from cmg_eval.task import Scored, Task

Rescore = Callable[[np.ndarray], float]  # metric value on the items at these indices
# Resamples scipy draws at once: it holds (batch, items) indices, 200 MB for 1000 x 25,000 captions; the
# draws, and so every interval and p-value, are the same for any batch.
RESAMPLE_BATCH = 100


def _percentile_bootstrap(statistic: Rescore, n_items: int, resamples: int, seed: int, level: float) -> tuple[float, float]:
    """scipy's percentile bootstrap of `statistic(item indices)` over items resampled with replacement."""
    result = stats.bootstrap((np.arange(n_items),), statistic, n_resamples=resamples, vectorized=False,
                             confidence_level=level, method="percentile", random_state=np.random.default_rng(seed),
                             batch=RESAMPLE_BATCH)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def bootstrap_interval(rescore: Rescore, n_items: int, resamples: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the metric over item resamples."""
    return _percentile_bootstrap(rescore, n_items, resamples, seed, level)


def paired_bootstrap(rescore_a: Rescore, rescore_b: Rescore, n_items: int, resamples: int = 1000,
                     seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """Difference a - b with items resampled together: point value and percentile interval."""
    low, high = _percentile_bootstrap(lambda idx: rescore_a(idx) - rescore_b(idx), n_items, resamples, seed, level)
    everything = np.arange(n_items)
    return {"diff": float(rescore_a(everything) - rescore_b(everything)), "ci_low": low, "ci_high": high}


def paired_permutation_p(statistic: Callable[[np.ndarray], float], n_items: int, resamples: int = 1000,
                         seed: int = 0, exact_below: int = 12) -> float:
    """Two-sided p-value of a paired swap test (scipy's `permutation_test`): every swap enumerated for at most
    `exact_below` items, seeded Monte Carlo otherwise.

    `statistic(swap)` is the metric difference a - b after swapping the two models' predictions on items where
    `swap` is True; p is the share of swaps whose |difference| reaches the observed one.
    """
    def absolute(first: np.ndarray, second: np.ndarray) -> float:   # item i of the first sample: i (a) or n + i (b)
        return abs(statistic(first >= n_items))

    result = stats.permutation_test((np.arange(n_items), np.arange(n_items) + n_items), absolute,
                                    permutation_type="samples", vectorized=False,
                                    n_resamples=np.inf if n_items <= exact_below else resamples,
                                    alternative="greater", random_state=np.random.default_rng(seed),
                                    batch=RESAMPLE_BATCH)
    return float(result.pvalue)


def mcnemar_p(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Exact McNemar test: scipy's two-sided binomial test on the discordant pairs."""
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)


# ------------------------------------------------------------------------------------------ the gate


GateKey = tuple[str, str, str, str]   # model, task, direction, metric
KEY_FIELDS = ("model", "task", "direction", "metric")
PERCENT = (0.0, 100.0)   # every higher-is-better metric of a task is a percent


@dataclass
class GateRow:
    """One primary-metric row of a baseline/current comparison."""

    key: GateKey
    baseline: float | None
    current: float | None
    allowed: float
    lower_is_better: bool
    problem: str | None = None   # a value, std or threshold the gate cannot trust: the row fails

    @property
    def drop(self) -> float | None:
        """How much worse current is than baseline (positive = worse)."""
        if self.baseline is None or self.current is None:
            return None
        return self.current - self.baseline if self.lower_is_better else self.baseline - self.current

    def failed(self, allow_missing: bool) -> bool:
        if self.problem is not None:
            return True
        if self.drop is None:
            return not allow_missing
        return not self.drop <= self.allowed   # fail closed: a NaN drop fails

    def reason(self) -> str:
        """Why the row fails (or passes), for its own line."""
        if self.problem is not None:
            return self.problem
        if self.drop is None:
            return f"missing in the {'current' if self.current is None else 'baseline'} document"
        return f"dropped by {self.drop:.2f}, allowed {self.allowed:.2f}"


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_threshold(name: str, value: float) -> float:
    """--k and --floor: finite and non-negative, or the gate could never fail."""
    if not is_number(value) or not math.isfinite(value) or value < 0:
        raise CmgError(f"{name} {value}: expected a finite number >= 0")
    return float(value)


def checked_rows(document: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """The rows of a results document, each readable by the gate and present once (one-line errors)."""
    rows = document.get("results")
    if not isinstance(rows, list):
        raise CmgError(f"{where}: 'results' is {type(rows).__name__}, expected a list of rows")
    first: dict[tuple, int] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise CmgError(f"{where}: results[{i}] is {type(row).__name__}, expected a row object")
        missing = [f for f in KEY_FIELDS if not isinstance(row.get(f), str)]
        if missing:
            raise CmgError(f"{where}: results[{i}] has no string {missing[0]!r}, expected {', '.join(KEY_FIELDS)}")
        name = " ".join(row[f] for f in KEY_FIELDS)
        if "value" not in row:
            raise CmgError(f"{where}: results[{i}] ({name}) has no 'value', expected a number")
        for field in ("value", "std"):
            if field in row and not is_number(row[field]):
                raise CmgError(f"{where}: results[{i}] ({name}): {field} {row[field]!r} is not a number")
        keys = [tuple(row[f] for f in KEY_FIELDS)]
        if "source" in row and "target" in row:
            keys.append(("source-target", row["model"], row["task"], str(row["source"]), str(row["target"]),
                         row["metric"]))
        for key in keys:
            if key in first:
                raise CmgError(f"{where}: results[{first[key]}] and results[{i}] are both {name}, "
                               f"expected one row per model, task, source, target and metric")
            first[key] = i
    return rows


def row_problem(row: dict[str, Any], side: str) -> str | None:
    """Why one side's row cannot be compared: a non-finite or negative std, a value outside the metric's range."""
    value, std = float(row["value"]), float(row.get("std", 0.0))
    if not math.isfinite(value):
        return f"{side} value {value} is not finite"
    if not math.isfinite(std) or std < 0:
        return f"{side} std {std} is not a finite number >= 0"
    if not row.get("lower_is_better", False):
        low, high = PERCENT
        if not low <= value <= high:
            return f"{side} value {value:g} is outside the metric's range {low:g}..{high:g}"
        if std > high - low:
            return f"{side} std {std:g} exceeds the metric's range {low:g}..{high:g}"
    return None


def gated_rows(document: dict[str, Any], metric: str | None = None) -> dict[GateKey, dict[str, Any]]:
    """Rows of the primary metric (or of `metric`), keyed by model, task, direction and metric."""
    return {tuple(r[f] for f in KEY_FIELDS): r for r in document["results"]
            if (r["metric"] == metric if metric else r.get("primary") is True)}


def gate_row(key: GateKey, base: dict[str, Any] | None, cur: dict[str, Any] | None, k: float,
             floor: float) -> GateRow:
    sides = [(name, row) for name, row in (("baseline", base), ("current", cur)) if row is not None]
    problems = [p for p in (row_problem(row, name) for name, row in sides) if p]
    lower = {bool(row.get("lower_is_better", False)) for _, row in sides}
    if len(lower) > 1:
        problems.append("baseline and current disagree on lower_is_better")
    std = max(float(row.get("std", 0.0)) for _, row in sides)
    allowed = max(k * std, floor)
    if not problems and not math.isfinite(allowed):
        problems.append(f"allowed drop {allowed} is not finite")
    return GateRow(key, float(base["value"]) if base else None, float(cur["value"]) if cur else None, allowed,
                   lower.pop() if len(lower) == 1 else False, problems[0] if problems else None)


def gate(baseline: dict[str, Any], current: dict[str, Any], k: float = 3.0, floor: float = 1.0,
         metric: str | None = None, names: tuple[str, str] = ("baseline", "current")) -> list[GateRow]:
    """Rows of both documents; a row fails when its metric drops by more than max(k * std, floor), or when
    a value, std or threshold in it is not a finite number in the metric's range (the gate fails closed)."""
    k, floor = check_threshold("--k", k), check_threshold("--floor", floor)
    every = checked_rows(baseline, names[0]) + checked_rows(current, names[1])
    if metric and not any(r["metric"] == metric for r in every):
        known = sorted({r["metric"] for r in every})
        raise CmgError(f"--metric {metric!r}: no such metric in either document (known: {', '.join(known)})")
    base_rows, current_rows = gated_rows(baseline, metric), gated_rows(current, metric)
    for name, document, compared in ((names[0], baseline, base_rows), (names[1], current, current_rows)):
        compared_ids = {id(row) for row in compared.values()}
        for i, row in enumerate(document["results"]):
            value, std = float(row["value"]), float(row.get("std", 0.0))
            if not (math.isfinite(value) and math.isfinite(std)) and id(row) not in compared_ids:
                raise CmgError(f"{name}: results[{i}] ({' '.join(row[f] for f in KEY_FIELDS)}) holds value {value} "
                               f"and std {std}, expected finite numbers (a run never writes others)")
    if not base_rows and not current_rows:
        raise CmgError(f"{names[0]}, {names[1]}: no {metric or 'primary-metric'} rows to compare")
    return [gate_row(key, base_rows.get(key), current_rows.get(key), k, floor)
            for key in sorted(set(base_rows) | set(current_rows))]


# ------------------------------------------------------------------------------------------ rows of a run

BOOTSTRAP_SEED = 0
SIGNIFICANCE = 0.05


def seed_mean_metric(task: Task, data: Any, runs: list[Scored], metric: str) -> Rescore | None:
    """items -> the metric on those items, averaged over head seeds; None if the task cannot rescore."""
    if runs[0].predictions is None or task.rescore(data, runs[0].predictions) is None:
        return None
    return lambda items: float(np.mean([task.rescore(data, r.predictions.take(items))[metric] for r in runs]))


def add_interval(rows: list[dict[str, Any]], task: Task, data: Any, runs: list[Scored], resamples: int) -> None:
    """95% bootstrap interval over items for the primary-metric row (seeds averaged)."""
    for row in rows:
        row["ci_low"] = row["ci_high"] = None
        if row["primary"] and resamples:
            score = seed_mean_metric(task, data, runs, row["metric"])
            if score is not None:
                row["ci_low"], row["ci_high"] = bootstrap_interval(score, runs[0].n_items, resamples, BOOTSTRAP_SEED)


def same_items(first: list[Scored], second: list[Scored]) -> bool:
    runs = (*first, *second)
    return len(first) == len(second) and all(r.predictions is not None for r in runs) and \
        all(np.array_equal(r.predictions.item, runs[0].predictions.item) for r in runs)


def compare_models(task: Task, data: Any, by_model: dict[str, list[Scored]], values: dict[str, float],
                   resamples: int) -> list[dict[str, Any]]:
    """The best model of one column against each other model on the same items: paired tests."""
    metric = task.primary_metric
    best = (min if metric in task.lower_is_better else max)(values, key=values.get)
    out = []
    for other in values:
        a, b = by_model[best], by_model[other]
        score_a, score_b = seed_mean_metric(task, data, a, metric), seed_mean_metric(task, data, b, metric)
        if other == best or score_a is None or score_b is None or not same_items(a, b):
            continue
        n = a[0].n_items

        def swapped_difference(swap: np.ndarray) -> float:
            every = np.arange(n)
            left = [task.rescore(data, ra.predictions.swapped(rb.predictions, swap))[metric] for ra, rb in zip(a, b)]
            right = [task.rescore(data, rb.predictions.swapped(ra.predictions, swap))[metric] for ra, rb in zip(a, b)]
            return float(np.mean(left) - np.mean(right))

        entry = {"task": task.name, "metric": metric, "best": best, "other": other,
                 **paired_bootstrap(score_a, score_b, n, resamples, BOOTSTRAP_SEED),
                 "p_permutation": paired_permutation_p(swapped_difference, n, resamples, BOOTSTRAP_SEED)}
        if a[0].predictions.class_labels() is not None:
            correct = [np.mean([np.equal(*r.predictions.class_labels()) for r in runs], 0) >= 0.5 for runs in (a, b)]
            entry["p_mcnemar"] = mcnemar_p(*correct)
        entry["significant"] = entry["p_permutation"] < SIGNIFICANCE
        out.append(entry)
    return out
