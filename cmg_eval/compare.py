"""Statistics over seeds and items: bootstrap intervals, paired tests, and the regression gate."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

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


def primary_rows(document: dict[str, Any]) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    return {(r["model"], r["task"], r["direction"], r["metric"]): r for r in document["results"] if r.get("primary")}


def gate(baseline: dict[str, Any], current: dict[str, Any], k: float = 3.0, floor: float = 1.0) -> list[GateRow]:
    """Rows of both documents; a row fails when its primary metric drops by more than max(k * std, floor)."""
    base_rows, current_rows = primary_rows(baseline), primary_rows(current)
    rows = []
    for key in sorted(set(base_rows) | set(current_rows)):
        base, cur = base_rows.get(key), current_rows.get(key)
        std = max(float((base or {}).get("std", 0.0)), float((cur or {}).get("std", 0.0)))
        lower = bool((base or cur).get("lower_is_better", False))
        rows.append(GateRow(key, base["value"] if base else None, cur["value"] if cur else None,
                            max(k * std, floor), lower))
    return rows
