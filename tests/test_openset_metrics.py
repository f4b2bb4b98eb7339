"""Open-set metrics and rejection rules against hand-computed cases and a brute-force AUROC."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cmg_eval.metrics.openset import (auroc, best_paper_threshold, chance_h_score, confidence, missing_sets, open_set_scores,
                                      paper_thresholds, quantile_threshold, reject)


def test_scores_hand_computed():
    # 2 known classes; clips 3 and 4 are unknown (classes 2 and 3). At 0.5: clip 2 (known) and 3 are rejected.
    y_true = np.array([0, 1, 1, 2, 3])
    predicted = np.array([0, 1, 0, 1, 0])
    conf = np.array([0.9, 0.8, 0.3, 0.4, 0.95])
    y_pred = reject(predicted, conf, 0.5, 2)
    assert y_pred.tolist() == [0, 1, 2, 2, 0]
    scores = open_set_scores(y_true, y_pred, conf, 2, 0.5)
    assert scores["known_acc"] == pytest.approx(200 / 3)      # the rejected known clip is an error
    assert scores["unknown_acc"] == pytest.approx(50.0)
    assert scores["h_score"] == pytest.approx(2 * (200 / 3) * 50 / (200 / 3 + 50))   # 57.14
    assert scores["auroc"] == pytest.approx(100 * 2 / 6)      # known > unknown in 2 of the 6 pairs
    assert scores["threshold"] == pytest.approx(50.0)


def test_rejection_is_strict():
    assert reject(np.array([1, 1]), np.array([0.5, 0.49]), 0.5, 3).tolist() == [1, 3]


def test_empty_unknown_set_reports_zero():
    y_true = np.array([0, 1, 1])
    conf = np.array([0.9, 0.8, 0.7])
    scores = open_set_scores(y_true, np.array([0, 1, 1]), conf, 2, 0.1)
    assert scores["known_acc"] == 100.0
    assert scores["unknown_acc"] == 0.0 and scores["h_score"] == 0.0 and scores["auroc"] == 0.0
    assert missing_sets(y_true, 2) == ["unknown"]
    assert best_paper_threshold(y_true, np.array([0, 1, 1]), conf, 2) == pytest.approx(0.7)  # every H is 0


def test_empty_known_set_reports_zero():
    y_true = np.array([2, 3])
    scores = open_set_scores(y_true, np.array([2, 2]), np.array([0.2, 0.3]), 2, 0.5)
    assert scores["unknown_acc"] == 100.0 and scores["known_acc"] == 0.0 and scores["h_score"] == 0.0
    assert missing_sets(y_true, 2) == ["known"]
    assert missing_sets(np.array([0, 2]), 2) == []


def test_nothing_right_gives_zero_not_a_division_error():
    scores = open_set_scores(np.array([0, 2]), np.array([1, 0]), np.array([0.9, 0.9]), 2, 0.1)
    assert scores["h_score"] == 0.0


def test_paper_thresholds_and_best_hand_computed():
    # one known class; clips 2 and 3 unknown. Candidates 0.1 + 0.8 k / 9: k = 0 rejects nothing (H 0), k = 1..4
    # reject clip 3 (H 66.7), k = 5 (0.544) rejects both unknown clips and no known one (H 100), k = 6 clip 1 too.
    y_true = np.array([0, 0, 1, 1])
    predicted = np.zeros(4, np.int64)
    conf = np.array([0.9, 0.6, 0.5, 0.1])
    assert paper_thresholds(conf) == pytest.approx([0.1 + 0.8 * k / 9 for k in range(10)])
    threshold = best_paper_threshold(y_true, predicted, conf, 1)
    assert threshold == pytest.approx(0.1 + 0.8 * 5 / 9)
    assert open_set_scores(y_true, reject(predicted, conf, threshold, 1), conf, 1, threshold)["h_score"] == 100.0


def test_quantile_threshold_hand_computed():
    # position 0.1 * (5 - 1) = 0.4 between 0.2 and 0.4
    assert quantile_threshold(np.array([1.0, 0.4, 0.8, 0.2, 0.6]), 0.1) == pytest.approx(0.28)
    with pytest.raises(ValueError, match="no held-out"):
        quantile_threshold(np.array([]), 0.1)


def test_confidence_is_the_float64_softmax_maximum():
    predicted, conf = confidence(np.array([[0.0, np.log(3.0)], [5.0, 1.0]], np.float32))
    assert predicted.tolist() == [1, 0]
    assert conf == pytest.approx([0.75, np.exp(5) / (np.exp(5) + np.exp(1))])
    _, saturated = confidence(np.array([[0.0, 30.0], [0.0, 25.0]], np.float32))
    assert saturated[0] > saturated[1]        # float32 softmax would read both as exactly 1


def test_auroc_matches_scikit_learn_and_brute_force_with_ties():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 5, 200)
    conf = rng.integers(0, 10, 200) / 10          # many ties
    known, unknown = conf[y_true < 3], conf[y_true >= 3]
    pairs = (known[:, None] > unknown[None, :]) + 0.5 * (known[:, None] == unknown[None, :])
    assert auroc(y_true, conf, 3) == pytest.approx(100 * pairs.mean())
    conf = rng.random(200)
    assert auroc(y_true, conf, 3) == pytest.approx(100 * roc_auc_score(y_true < 3, conf))


def test_quantile_threshold_scaled_log_odds_hand_computed():
    # quantile 0.9 (all equal): log-odds ln 9, halved: ln 3, confidence 3 / 4
    assert quantile_threshold(np.full(4, 0.9), 0.05, 0.5) == pytest.approx(0.75)
    assert quantile_threshold(np.full(4, 1.0), 0.05, 0.5) == 1.0


def test_chance_h_score():
    # one known class (always right when kept): H = 2 r (1 - r), best at r = 1/2
    assert chance_h_score(1) == pytest.approx(50.0)
    # K = 3: known (1 - r) / 3, unknown r; H = 2 (1 - r) r / (1 + 2 r), best at r = (sqrt(3) - 1) / 2
    rate = (np.sqrt(3) - 1) / 2
    assert chance_h_score(3) == pytest.approx(100 * 2 * (1 - rate) * rate / (1 + 2 * rate), abs=1e-4)
