"""The AVE reader on the release format: float64 and float32 files, lazy reads, clip labels."""

import tracemalloc

import h5py
import numpy as np
import pytest

from cmg_eval.errors import CmgError
from conftest import MICRO_COUNTS, write_micro_ave
from cmg_eval.data.ave import clip_labels
from cmg_eval.tasks.ave import Ave


@pytest.fixture(scope="module")
def both_dtypes(tmp_path_factory):
    return {dtype: write_micro_ave(tmp_path_factory.mktemp(np.dtype(dtype).name), dtype=dtype)
            for dtype in (np.float32, np.float64)}


def test_release_layout(micro_data):
    data = micro_data / "AVE-ECCV18-master" / "data"
    with h5py.File(data / "visual_feature.h5") as f:
        assert f["avadataset"].shape == (sum(MICRO_COUNTS), 10, 7, 7, 512)
    with h5py.File(data / "labels.h5") as f:
        labels = f["avadataset"][()]
        assert labels.shape == (sum(MICRO_COUNTS), 10, 29) and np.all(labels.sum(-1) == 1)
    with h5py.File(data / "train_order.h5") as f:
        assert f["order"].dtype == np.int64 and f["order"].shape == (MICRO_COUNTS[0],)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reader_reads_both_dtypes(both_dtypes, dtype):
    data = Ave().load(both_dtypes[dtype])
    assert data.features["video"].dataset.dtype == dtype
    source = data.source("video", "test")
    batches = list(source.batches(5))
    assert sum(len(b) for b in batches) == source.n_items == MICRO_COUNTS[2]
    assert all(b.dtype == np.float32 for b in batches)
    # same content as a direct read of the rows in split order
    with h5py.File(both_dtypes[dtype] / "AVE-ECCV18-master/data/visual_feature.h5") as f:
        direct = f["avadataset"][()][data.orders["test"]]
    np.testing.assert_allclose(np.concatenate(batches), direct.astype(np.float32))


def test_float64_and_float32_files_agree(both_dtypes):
    first, second = (Ave().load(both_dtypes[d]) for d in (np.float32, np.float64))
    np.testing.assert_array_equal(first.labels, second.labels)
    a = np.concatenate(list(first.source("audio", "train").batches(16)))
    b = np.concatenate(list(second.source("audio", "train").batches(16)))
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_reader_streams_without_loading_the_visual_array(both_dtypes):
    data = Ave().load(both_dtypes[np.float64])
    whole = data.features["video"].dataset.size * 8
    tracemalloc.start()
    for _ in data.source("video", "train").batches(4):
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < whole / 4, f"peak {peak} bytes while the array is {whole}"


def test_clip_label_rule():
    labels = np.zeros((3, 10, 29))
    labels[0, :, 28] = 1                      # all background: argmax over 28 gives 0
    labels[1, :4, 28] = 1
    labels[1, 4:, 5] = 1                      # event 5 after background
    labels[2, :, 28] = 1
    labels[2, 2, 27] = 1                      # one segment of class 27
    assert clip_labels(labels).tolist() == [0, 5, 27]


def test_synthetic_classes_are_balanced(micro_data):
    data = Ave().load(micro_data)
    counts = np.bincount(data.labels, minlength=28)
    assert counts.max() - counts.min() <= 1
    assert sorted(np.concatenate(list(data.orders.values()))) == list(range(sum(MICRO_COUNTS)))


def test_order_out_of_range(tmp_path):
    root = write_micro_ave(tmp_path)
    with h5py.File(root / "AVE-ECCV18-master/data/val_order.h5", "w") as f:
        f.create_dataset("order", data=np.array([0, 10_000]))
    with pytest.raises(CmgError, match="val_order.h5.*index 10000"):
        Ave().load(root)
