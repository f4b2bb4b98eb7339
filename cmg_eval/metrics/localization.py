"""Segment-level localization metrics (percent) for per-segment multi-label predictions (AVVP style).

Inputs are boolean arrays (clips, segments, columns) with the background column last. Everything is
computed from per-clip counts (`clip_counts`), so a subset of clips is rescored by summing rows.
Global metrics are micro over cells; the `legacy_*` ones reproduce the reference's batch-weighted
averages of per-batch ratios (docs/protocols.md, `## paper-protocol quirks`).
Hand-written: no library computes the legacy batch-weighted ratios or AVVP's event matching, and per-clip counts
let bootstrap and paired tests rescore any subset by summing rows (the tests check the micro scores against
scikit-learn).
"""

from __future__ import annotations

import numpy as np

# Columns of `clip_counts`: foreground cells, every cell (background included), foreground events.
COUNT_COLUMNS = ("fg_tp", "fg_predicted", "fg_true", "all_tp", "all_predicted", "all_true",
                 "event_tp", "event_fp", "event_fn")


def runs(sequence: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of True as half-open (start, end) segment intervals."""
    padded = np.concatenate(([0], np.asarray(sequence, bool).astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


def _matches(first: tuple[int, int], second: tuple[int, int]) -> bool:
    """IoU of two intervals >= 0.5, the AVVP benchmark's event match."""
    inter = max(0, min(first[1], second[1]) - max(first[0], second[0]))
    union = (first[1] - first[0]) + (second[1] - second[0]) - inter
    return 2 * inter >= union


def event_counts(truth: np.ndarray, predicted: np.ndarray) -> tuple[int, int, int]:
    """TP, FP, FN of one class in one clip: events are runs; a predicted event is a hit if it matches
    any true event, a true event is missed if no predicted event matches it (as the AVVP benchmark)."""
    true_events, predicted_events = runs(truth), runs(predicted)
    hits = sum(any(_matches(p, t) for t in true_events) for p in predicted_events)
    missed = sum(not any(_matches(t, p) for p in predicted_events) for t in true_events)
    return hits, len(predicted_events) - hits, missed


def _check(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true, bool), np.asarray(y_pred, bool)
    if y_true.shape != y_pred.shape or y_true.ndim != 3 or y_true.shape[2] < 2:
        raise ValueError(f"expected two (clips, segments, columns) arrays, got {y_true.shape} and {y_pred.shape}")
    return y_true, y_pred


def clip_counts(y_true: np.ndarray, y_pred: np.ndarray, events: bool = True) -> np.ndarray:
    """(clips, 9) int64 counts in COUNT_COLUMNS order; the event columns stay 0 unless `events`."""
    y_true, y_pred = _check(y_true, y_pred)
    hits = y_true & y_pred
    cells = [a[..., :-1].sum((1, 2)) for a in (hits, y_pred, y_true)] + [a.sum((1, 2)) for a in (hits, y_pred, y_true)]
    matched = np.zeros((len(y_true), 3), np.int64)
    active = (y_true[..., :-1].any(1) | y_pred[..., :-1].any(1)) if events else np.zeros((0, 0), bool)
    for clip, column in zip(*np.nonzero(active)):
        matched[clip] += event_counts(y_true[clip, :, column], y_pred[clip, :, column])
    return np.column_stack([*cells, matched]).astype(np.int64)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def _f1(precision: float, recall: float) -> float:
    return _ratio(2 * precision * recall, precision + recall)


def legacy_scores(counts: np.ndarray, batch_size: int) -> dict[str, float]:
    """The reference's numbers: per-batch micro P and R over every column (background included),
    both 0 for a batch without predicted positives, averaged with batch-size weights; F1 from the averages."""
    precisions, recalls, weights = [], [], []
    for start in range(0, len(counts), batch_size):
        true_pos, predicted, actual = counts[start:start + batch_size, 3:6].sum(0)
        precisions.append(_ratio(true_pos, predicted))
        recalls.append(_ratio(true_pos, actual) if predicted else 0.0)
        weights.append(len(counts[start:start + batch_size]))
    precision, recall = float(np.average(precisions, weights=weights)), float(np.average(recalls, weights=weights))
    return {"legacy_precision": 100 * precision, "legacy_f1": 100 * _f1(precision, recall)}


def scores_from_counts(counts: np.ndarray, batch_size: int | None = None) -> dict[str, float]:
    """Every metric from `clip_counts` rows (in item order); the legacy ones only with a batch size."""
    counts = np.asarray(counts, np.int64)
    if counts.ndim != 2 or counts.shape[1] != len(COUNT_COLUMNS) or len(counts) == 0:
        raise ValueError(f"expected (clips >= 1, {len(COUNT_COLUMNS)}) counts, got {counts.shape}")
    fg_tp, fg_predicted, fg_true, all_tp, all_predicted, all_true, ev_tp, ev_fp, ev_fn = counts.sum(0).tolist()
    precision, recall = _ratio(fg_tp, fg_predicted), _ratio(fg_tp, fg_true)
    scores = {"seg_precision": 100 * precision, "seg_recall": 100 * recall, "seg_f1": 100 * _f1(precision, recall),
              "seg_f1_bg": 100 * _f1(_ratio(all_tp, all_predicted), _ratio(all_tp, all_true)),
              "event_f1": 100 * _ratio(2 * ev_tp, 2 * ev_tp + ev_fp + ev_fn)}
    if batch_size:
        scores.update(legacy_scores(counts, batch_size))
    return scores


def localization(y_true: np.ndarray, y_pred: np.ndarray, batch_size: int | None = None) -> dict[str, float]:
    """Every localization metric of boolean (clips, segments, columns) arrays, background column last."""
    return scores_from_counts(clip_counts(y_true, y_pred), batch_size)
