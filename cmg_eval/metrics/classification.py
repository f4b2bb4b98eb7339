"""Classification metrics (percent), computed from a confusion matrix."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """counts[i, j] = items of true class i predicted as j."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return counts


def per_class(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class (0 where undefined)."""
    true_pos = np.diag(counts).astype(float)
    predicted = counts.sum(0).astype(float)
    support = counts.sum(1).astype(float)
    precision = np.divide(true_pos, predicted, out=np.zeros_like(true_pos), where=predicted > 0)
    recall = np.divide(true_pos, support, out=np.zeros_like(true_pos), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(true_pos), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def classification(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, float]:
    """`accuracy` and macro precision / recall / F1 over the classes present in `y_true`."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.size == 0:
        raise ValueError("no items to score")
    counts = confusion_matrix(y_true, y_pred, n_classes)
    stats = per_class(counts)
    present = stats["support"] > 0
    return {
        "accuracy": 100.0 * float(np.trace(counts)) / counts.sum(),
        "macro_precision": 100.0 * float(stats["precision"][present].mean()),
        "macro_recall": 100.0 * float(stats["recall"][present].mean()),
        "macro_f1": 100.0 * float(stats["f1"][present].mean()),
    }
