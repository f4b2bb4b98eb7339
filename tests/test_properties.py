"""Property-based tests (hypothesis): metrics within bounds and equal to the reference; readers exact."""

import h5py
import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from cmg_eval.data.h5 import H5Array
from cmg_eval.metrics import classification


@st.composite
def label_pairs(draw):
    n_classes = draw(st.integers(1, 12))
    n = draw(st.integers(1, 60))
    y_true = draw(arrays(np.int64, n, elements=st.integers(0, n_classes - 1)))
    y_pred = draw(arrays(np.int64, n, elements=st.integers(0, n_classes - 1)))
    return y_true, y_pred, n_classes


@settings(max_examples=150, deadline=None)
@given(label_pairs())
def test_classification_bounds_and_reference(pair):
    y_true, y_pred, n_classes = pair
    ours = classification(y_true, y_pred, n_classes)
    assert all(0.0 <= value <= 100.0 for value in ours.values())
    labels = np.unique(y_true)
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro",
                                                               zero_division=0)
    assert np.isclose(ours["accuracy"], 100 * accuracy_score(y_true, y_pred))
    assert np.allclose([ours["macro_precision"], ours["macro_recall"], ours["macro_f1"]],
                       [100 * precision, 100 * recall, 100 * f1])


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 30), tail=st.sampled_from([(3,), (2, 4)]), data=st.data(),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_h5_rows_in_any_order(tmp_path_factory, rows, tail, data, dtype):
    path = tmp_path_factory.mktemp("h5") / "x.h5"
    values = np.random.default_rng(rows).random((rows, *tail)).astype(dtype)
    with h5py.File(path, "w") as f:
        f.create_dataset("d", data=values)
    indices = data.draw(st.lists(st.integers(0, rows - 1), max_size=40))
    array = H5Array(path, "d", tail)
    got = array.read_rows(indices)
    np.testing.assert_array_equal(got, values[indices].astype(np.float32))
    batches = list(array.iter_rows(indices, data.draw(st.integers(1, 7))))
    assert sum(len(b) for b in batches) == len(indices)
    array.close()


@st.composite
def tie_patterns(draw):
    """A small gallery whose scores tie often, and a non-empty set of positives."""
    size = draw(st.integers(1, 7))
    levels = draw(st.integers(1, 3))
    scores = np.array(draw(st.lists(st.integers(0, levels - 1), min_size=size, max_size=size)), float)
    positives = draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=size, unique=True))
    return scores, positives


@settings(max_examples=60, deadline=None)
@given(tie_patterns())
@example((np.array([0.0, 0.0, 1.0, 0.0, 1.0]), [2, 4, 0, 1, 3]))  # AP@3 summed to 1 + 1 ulp before the cap
def test_retrieval_expectations_against_every_tie_order(pattern):
    from cmg_eval.metrics.retrieval import pad_positives, per_query
    from test_retrieval_metrics import brute_force

    scores, positives = pattern
    ks, map_k = (1, 2, 5), 3
    got = per_query(scores[None], pad_positives([positives]), ks, map_k)
    ours = [float(got["rank"][0]), *(float(got[f"r{k}"][0]) for k in ks), float(got[f"map{map_k}"][0])]
    assert 1 <= ours[0] <= len(scores)
    assert all(0 <= value <= 1 for value in ours[1:])  # per query: probabilities
    np.testing.assert_allclose(ours, brute_force(scores, np.array(positives), ks, map_k), atol=1e-9)


@st.composite
def segment_labels(draw):
    clips, steps, classes = draw(st.integers(1, 6)), draw(st.integers(1, 10)), draw(st.integers(2, 5))
    shape = (clips, steps, classes)
    y_true = draw(arrays(np.int64, shape, elements=st.integers(0, 1)))
    y_pred = draw(arrays(np.int64, shape, elements=st.integers(0, 1)))
    return y_true, y_pred


@settings(max_examples=50, deadline=None)
@given(segment_labels())
def test_localization_within_bounds(pair):
    from cmg_eval.metrics.localization import localization

    y_true, y_pred = pair
    values = localization(y_true, y_pred)
    assert all(0.0 <= v <= 100.0 for v in values.values() if v == v)
    perfect = localization(y_true, y_true)
    if y_true[..., :-1].any():  # the last column is background, outside seg_f1
        assert perfect["seg_f1"] == 100.0
