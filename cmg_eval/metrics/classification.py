"""Classification metrics (percent): per-class counts from torchmetrics, macro averages over the classes present."""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_confusion_matrix, multiclass_stat_scores


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """counts[i, j] = items of true class i predicted as j."""
    return multiclass_confusion_matrix(torch.as_tensor(np.asarray(y_pred)), torch.as_tensor(np.asarray(y_true)),
                                       n_classes, validate_args=False).numpy().astype(np.int64)


def per_class(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class (0 where undefined), from torchmetrics' per-class counts."""
    stats = multiclass_stat_scores(torch.as_tensor(np.asarray(y_pred)), torch.as_tensor(np.asarray(y_true)),
                                   n_classes, average="none", validate_args=False).numpy().astype(float)
    true_pos, false_pos, support = stats[:, 0], stats[:, 1], stats[:, 4]
    predicted = true_pos + false_pos
    precision = np.divide(true_pos, predicted, out=np.zeros_like(true_pos), where=predicted > 0)
    recall = np.divide(true_pos, support, out=np.zeros_like(true_pos), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(true_pos), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def classification(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, float]:
    """`accuracy` and macro precision / recall / F1 over the classes present in `y_true` (a class no item
    belongs to is left out of the macro mean, whatever was predicted; torchmetrics' own macro keeps it)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.size == 0:
        raise ValueError("no items to score")
    stats = per_class(y_true, y_pred, n_classes)
    present = stats["support"] > 0
    return {
        "accuracy": 100.0 * float(np.sum(y_true == y_pred)) / len(y_true),
        "macro_precision": 100.0 * float(stats["precision"][present].mean()),
        "macro_recall": 100.0 * float(stats["recall"][present].mean()),
        "macro_f1": 100.0 * float(stats["f1"][present].mean()),
    }
