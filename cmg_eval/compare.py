"""Statistics over seeds and items: bootstrap intervals, paired tests, and the regression gate."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from cmg_eval.errors import CmgError

Rescore = Callable[[np.ndarray], float]  # metric value on the items at these indices


def bootstrap_indices(n_items: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n_items) item indices drawn with replacement from a seeded generator."""
    return np.random.default_rng(seed).integers(0, n_items, (resamples, n_items))


def bootstrap_interval(rescore: Rescore, n_items: int, resamples: int = 1000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the metric over item resamples."""
    values = np.array([rescore(idx) for idx in bootstrap_indices(n_items, resamples, seed)])
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def paired_bootstrap(rescore_a: Rescore, rescore_b: Rescore, n_items: int, resamples: int = 1000,
                     seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """Difference a - b with items resampled together: point value and percentile interval."""
    everything = np.arange(n_items)
    diffs = np.array([rescore_a(idx) - rescore_b(idx) for idx in bootstrap_indices(n_items, resamples, seed)])
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return {"diff": float(rescore_a(everything) - rescore_b(everything)), "ci_low": float(low), "ci_high": float(high)}


def paired_permutation_p(statistic: Callable[[np.ndarray], float], n_items: int, resamples: int = 1000,
                         seed: int = 0, exact_below: int = 12) -> float:
    """Two-sided p-value of a paired swap test.

    `statistic(swap)` is the metric difference a - b after swapping the two models' predictions
    on items where `swap` is True. Exact enumeration for few items, seeded Monte Carlo otherwise.
    """
    observed = abs(statistic(np.zeros(n_items, bool)))
    if n_items <= exact_below:
        swaps = ((np.arange(2 ** n_items)[:, None] >> np.arange(n_items)) & 1).astype(bool)
        values = np.abs([statistic(s) for s in swaps])
        return float(np.mean(values >= observed - 1e-12))
    rng = np.random.default_rng(seed)
    values = np.abs([statistic(rng.random(n_items) < 0.5) for _ in range(resamples)])
    return float((1 + np.sum(values >= observed - 1e-12)) / (1 + resamples))


def mcnemar_p(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Exact McNemar test (two-sided binomial on the discordant pairs)."""
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2 ** n
    return float(min(1.0, 2 * tail))


# ------------------------------------------------------------------------------------------ the gate


@dataclass
class GateRow:
    """One primary-metric row of a baseline/current comparison."""

    key: tuple[str, str, str, str]   # model, task, direction, metric
    baseline: float | None
    current: float | None
    allowed: float
    lower_is_better: bool

    @property
    def drop(self) -> float | None:
        """How much worse current is than baseline (positive = worse)."""
        if self.baseline is None or self.current is None:
            return None
        return self.current - self.baseline if self.lower_is_better else self.baseline - self.current

    def failed(self, allow_missing: bool) -> bool:
        if self.drop is None:
            return not allow_missing
        return self.drop > self.allowed


def gated_rows(document: dict[str, Any], metric: str | None = None) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """Rows of the primary metric (or of `metric`), keyed by model, task, direction and metric."""
    return {(r["model"], r["task"], r["direction"], r["metric"]): r for r in document["results"]
            if (r["metric"] == metric if metric else r.get("primary"))}


def gate(baseline: dict[str, Any], current: dict[str, Any], k: float = 3.0, floor: float = 1.0,
         metric: str | None = None) -> list[GateRow]:
    """Rows of both documents; a row fails when its metric drops by more than max(k * std, floor)."""
    if metric and not any(r["metric"] == metric for r in baseline["results"] + current["results"]):
        known = sorted({r["metric"] for r in baseline["results"] + current["results"]})
        raise CmgError(f"--metric {metric!r}: no such metric in either document (known: {', '.join(known)})")
    base_rows, current_rows = gated_rows(baseline, metric), gated_rows(current, metric)
    rows = []
    for key in sorted(set(base_rows) | set(current_rows)):
        base, cur = base_rows.get(key), current_rows.get(key)
        std = max(float((base or {}).get("std", 0.0)), float((cur or {}).get("std", 0.0)))
        lower = bool((base or cur).get("lower_is_better", False))
        rows.append(GateRow(key, base["value"] if base else None, cur["value"] if cur else None,
                            max(k * std, floor), lower))
    return rows


# ------------------------------------------------------------------------------------------ rows of a run

BOOTSTRAP_SEED = 0
SIGNIFICANCE = 0.05


def take(predictions: dict[str, np.ndarray], items: np.ndarray, swap_from: dict[str, np.ndarray] | None = None,
         swap: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Predictions restricted to `items`; where `swap` is set, the other model's predictions instead."""
    if swap_from is None:
        return {key: value[items] for key, value in predictions.items()}
    return {key: np.where(swap.reshape(-1, *([1] * (value.ndim - 1))), swap_from[key], value)
            for key, value in predictions.items()}


def seed_mean_metric(task: Any, data: Any, runs: list, metric: str) -> Rescore | None:
    """items -> the metric on those items, averaged over head seeds; None if the task cannot rescore."""
    if not runs[0].predictions or task.rescore(data, runs[0].predictions) is None:
        return None
    return lambda items: float(np.mean([task.rescore(data, take(r.predictions, items))[metric] for r in runs]))


def add_interval(rows: list[dict[str, Any]], task: Any, data: Any, runs: list, resamples: int) -> None:
    """95% bootstrap interval over items for the primary-metric row (seeds averaged)."""
    for row in rows:
        row["ci_low"] = row["ci_high"] = None
        if row["primary"] and resamples:
            score = seed_mean_metric(task, data, runs, row["metric"])
            if score is not None:
                row["ci_low"], row["ci_high"] = bootstrap_interval(score, runs[0].n_items, resamples, BOOTSTRAP_SEED)


def same_items(first: list, second: list) -> bool:
    items = [r.predictions.get("item") for r in (*first, *second)]
    return len(first) == len(second) and all(i is not None and np.array_equal(i, items[0]) for i in items)


def compare_models(task: Any, data: Any, by_model: dict[str, list], values: dict[str, float],
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
            left = [task.rescore(data, take(ra.predictions, every, rb.predictions, swap))[metric] for ra, rb in zip(a, b)]
            right = [task.rescore(data, take(rb.predictions, every, ra.predictions, swap))[metric] for ra, rb in zip(a, b)]
            return float(np.mean(left) - np.mean(right))

        entry = {"task": task.name, "metric": metric, "best": best, "other": other,
                 **paired_bootstrap(score_a, score_b, n, resamples, BOOTSTRAP_SEED),
                 "p_permutation": paired_permutation_p(swapped_difference, n, resamples, BOOTSTRAP_SEED)}
        if {"y_true", "y_pred"} <= set(a[0].predictions) and a[0].predictions["y_pred"].ndim == 1:
            correct = [np.mean([r.predictions["y_pred"] == r.predictions["y_true"] for r in runs], 0) >= 0.5
                       for runs in (a, b)]
            entry["p_mcnemar"] = mcnemar_p(*correct)
        entry["significant"] = entry["p_permutation"] < SIGNIFICANCE
        out.append(entry)
    return out
