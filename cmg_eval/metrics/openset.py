"""Open-set classification metrics (percent) and the rules that pick a rejection threshold.

A head knows `n_known` classes (0 .. n_known - 1); every true class >= n_known is "unknown", and a clip the head
rejects is predicted as class `n_known`. A clip is rejected when its confidence (the largest softmax probability)
is below the threshold (strictly, as the reference). Where the scored clips hold no known clip (or no unknown
clip) the accuracy on that set is undefined: it is reported as 0, and so are the H-score and the AUROC, and
`missing_sets` names the empty set so that a report can say so.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

PAPER_THRESHOLDS = 10   # the reference's sweep: this many thresholds from the lowest to the highest confidence
METRICS = ("h_score", "known_acc", "unknown_acc", "auroc", "threshold")


def confidence(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(argmax class, largest softmax probability) per row, the softmax taken in float64 so that confident rows
    (float32 rounds a probability within 6e-8 of 1 to exactly 1) keep distinct confidences."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return logits.argmax(axis=1), 1.0 / np.exp(shifted).sum(axis=1)


def reject(predicted: np.ndarray, conf: np.ndarray, threshold: float, n_known: int) -> np.ndarray:
    """Open-set predictions: the head's class, or `n_known` (unknown) where the confidence is below `threshold`."""
    return np.where(np.asarray(conf) < threshold, n_known, np.asarray(predicted))


def missing_sets(y_true: np.ndarray, n_known: int) -> list[str]:
    """Which of the two sets ("known", "unknown") has no clip among `y_true`: their metrics are reported as 0."""
    is_known = np.asarray(y_true) < n_known
    return [name for name, present in (("known", is_known.any()), ("unknown", (~is_known).any())) if not present]


def harmonic_mean(a: float, b: float) -> float:
    """2ab / (a + b), and 0 where both are 0."""
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


def known_unknown_accuracy(y_true: np.ndarray, y_pred: np.ndarray, n_known: int) -> tuple[float, float]:
    """Percent of known clips predicted as their class (a rejection is an error) and percent of unknown clips
    rejected; 0 for a set without clips."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    is_known = y_true < n_known
    known = 100.0 * float((y_pred[is_known] == y_true[is_known]).mean()) if is_known.any() else 0.0
    unknown = 100.0 * float((y_pred[~is_known] >= n_known).mean()) if (~is_known).any() else 0.0
    return known, unknown


def chance_h_score(n_known: int) -> float:
    """Percent H-score of a head that knows nothing: its class right on 1 in `n_known` known clips, and clips
    rejected at random, at the best rejection rate (a grid of 10001 rates)."""
    rate = np.linspace(0.0, 1.0, 10001)
    known, unknown = (1 - rate) / n_known, rate
    return 100.0 * float(np.max(np.divide(2 * known * unknown, known + unknown, out=np.zeros_like(rate),
                                          where=known + unknown > 0)))


def auroc(y_true: np.ndarray, conf: np.ndarray, n_known: int) -> float:
    """Percent area under the ROC curve of known (positive) against unknown clips ranked by confidence, ties
    counting one half: the Mann-Whitney statistic over scipy's average ranks (equal to scikit-learn's
    `roc_auc_score`, 40 times faster, which the bootstrap's thousands of rescorings need); 0 when either set has
    no clip."""
    is_known = np.asarray(y_true) < n_known
    if missing_sets(y_true, n_known):
        return 0.0
    n_pos, n_neg = int(is_known.sum()), int((~is_known).sum())
    ranks = rankdata(np.asarray(conf, np.float64))
    return 100.0 * float((ranks[is_known].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def open_set_scores(y_true: np.ndarray, y_pred: np.ndarray, conf: np.ndarray, n_known: int,
                    threshold: float) -> dict[str, float]:
    """Every open-set metric of open-set predictions `y_pred` (rejected: `n_known`) made at `threshold`:
    `h_score`, `known_acc`, `unknown_acc`, `auroc` (percent) and `threshold` (the confidence, percent)."""
    known, unknown = known_unknown_accuracy(y_true, y_pred, n_known)
    return {"h_score": harmonic_mean(known, unknown), "known_acc": known, "unknown_acc": unknown,
            "auroc": auroc(y_true, conf, n_known), "threshold": 100.0 * float(threshold)}


def quantile_threshold(known_conf: np.ndarray, quantile: float, scale: float = 1.0) -> float:
    """The clean protocol's rule: the `quantile` of the confidences of held-out known-class source clips (numpy's
    linear interpolation), its log-odds multiplied by `scale`: with `scale` 1, about that fraction of known clips
    like them is rejected; below 1, the threshold moves down towards confidence 1/2, a margin for the clips of
    another modality, which the head scores less confidently than those it was trained on."""
    known_conf = np.asarray(known_conf, np.float64)
    if known_conf.size == 0:
        raise ValueError("no held-out known-class clips to calibrate the rejection threshold on")
    value = float(np.clip(np.quantile(known_conf, quantile), 1e-300, 1.0))
    if value >= 1.0 or scale == 1.0:
        return value
    log_odds = scale * (np.log(value) - np.log1p(-value))
    return float(1.0 / (1.0 + np.exp(-log_odds)))


def paper_thresholds(conf: np.ndarray) -> np.ndarray:
    """The reference's candidates: ten thresholds evenly spaced from the lowest to the highest confidence."""
    conf = np.asarray(conf, np.float64)
    return np.linspace(conf.min(), conf.max(), PAPER_THRESHOLDS)


def best_paper_threshold(y_true: np.ndarray, predicted: np.ndarray, conf: np.ndarray, n_known: int) -> float:
    """The reference's test-set rule: the candidate threshold with the highest H-score (the lowest of equals)."""
    best_h, best_t = -1.0, 0.0
    for threshold in paper_thresholds(conf):
        h = harmonic_mean(*known_unknown_accuracy(y_true, reject(predicted, conf, threshold, n_known), n_known))
        if h > best_h:
            best_h, best_t = h, float(threshold)
    return best_t
