"""Metric code against scikit-learn on random inputs."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix as sk_confusion, precision_recall_fscore_support

from cmg_eval.metrics import classification, confusion_matrix


@pytest.mark.parametrize("seed", range(8))
def test_classification_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(2, 30))
    y_true = rng.integers(0, n_classes, int(rng.integers(5, 300)))
    # mix right and wrong predictions; some classes never predicted, some never true
    y_pred = np.where(rng.random(len(y_true)) < 0.4, y_true, rng.integers(0, n_classes, len(y_true)))
    ours = classification(y_true, y_pred, n_classes)
    present = np.unique(y_true)
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=present, average="macro",
                                                               zero_division=0)
    assert ours["accuracy"] == pytest.approx(100 * accuracy_score(y_true, y_pred))
    assert ours["macro_precision"] == pytest.approx(100 * precision)
    assert ours["macro_recall"] == pytest.approx(100 * recall)
    assert ours["macro_f1"] == pytest.approx(100 * f1)
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, n_classes),
                                  sk_confusion(y_true, y_pred, labels=np.arange(n_classes)))


def test_empty_input_is_an_error():
    with pytest.raises(ValueError):
        classification(np.array([], int), np.array([], int), 3)
