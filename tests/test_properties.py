"""Property-based tests (hypothesis): metrics within bounds and equal to the reference; readers exact."""

import h5py
import numpy as np
from hypothesis import given, settings
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
