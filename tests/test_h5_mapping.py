"""Rows of h5 feature files: mapped from the file's pages where the layout allows (contiguous float32 in this
machine's byte order), read through HDF5 otherwise; the same values as the arrays written, whatever the layout."""

import mmap

import h5py
import numpy as np
import pytest

from cmg_eval.data.h5 import H5Array

WRITTEN = np.random.default_rng(0).normal(size=(9, 3, 4))
ROWS = [np.arange(2, 7), np.arange(9), np.array([8, 0, 3]), np.array([4, 4, 1]), np.array([5])]


def is_mapped(array: np.ndarray) -> bool:
    """Whether the array's memory is an mmap (the file's pages), not a buffer of its own."""
    while isinstance(array, np.ndarray):
        array = array.base
    return isinstance(array.obj if isinstance(array, memoryview) else array, mmap.mmap)


def write(path, file_options=None, **dataset_options):
    with h5py.File(path, "w", **(file_options or {})) as handle:
        handle.create_dataset("x", data=WRITTEN.astype(dataset_options.pop("dtype", "<f4")), **dataset_options)
    return path


LAYOUTS = {  # name -> (file options, dataset options, mapped)
    "contiguous float32": ({}, {}, True),
    "after a 512-byte user block": ({"userblock_size": 512}, {}, True),
    "chunked, gzip": ({}, {"chunks": (2, 3, 4), "compression": "gzip"}, False),
    "chunked, uncompressed": ({}, {"chunks": (4, 3, 4)}, False),
    "float64": ({}, {"dtype": "<f8"}, False),
    "float16": ({}, {"dtype": "<f2"}, False),
    "big-endian float32": ({}, {"dtype": ">f4"}, False),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rows_equal_the_written_array_in_every_layout(tmp_path, layout):
    file_options, dataset_options, mapped = LAYOUTS[layout]
    dtype = dataset_options.get("dtype", "<f4")
    array = H5Array(write(tmp_path / "x.h5", file_options, **dataset_options), "x", (3, 4))
    expected = WRITTEN.astype(dtype).astype(np.float32)
    for rows in ROWS:
        read = array.read_rows(rows)
        np.testing.assert_array_equal(read, expected[rows])
        assert read.dtype == np.float32
    assert is_mapped(array.read_rows(np.arange(1, 5))) == mapped
    assert not is_mapped(array.read_rows(np.array([1, 3])))   # not one run of rows: copied out
    batches = list(array.iter_rows(np.arange(9), 4))
    np.testing.assert_array_equal(np.concatenate(batches), expected)
    array.close()


def test_unallocated_rows_read_as_hdf5_fill_values(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as handle:
        handle.create_dataset("x", shape=(5, 3, 4), dtype="<f4", fillvalue=2.5)
    array = H5Array(tmp_path / "x.h5", "x", (3, 4))
    read = array.read_rows(np.arange(5))
    assert not is_mapped(read) and (read == 2.5).all()


def test_writes_to_mapped_rows_stay_private(tmp_path):
    path = write(tmp_path / "x.h5")
    array = H5Array(path, "x", (3, 4))
    rows = array.read_rows(np.arange(3))
    assert is_mapped(rows)
    rows[:] = 0
    np.testing.assert_array_equal(array.read_rows(np.arange(3)), WRITTEN[:3].astype(np.float32))
    array.close()
    with h5py.File(path) as handle:
        np.testing.assert_array_equal(handle["x"][:3], WRITTEN[:3].astype(np.float32))


def test_a_file_cut_short_after_opening_is_never_mapped_past_its_end(tmp_path):
    """Touching a mapping past the end of its file would kill the process (SIGBUS): rows the file no longer
    holds are left to HDF5, and rows it still holds stay readable."""
    path = write(tmp_path / "x.h5")
    array = H5Array(path, "x", (3, 4))
    with h5py.File(path) as handle:
        end_of_row_4 = handle["x"].id.get_offset() + 4 * 3 * 4 * 4
    with open(path, "r+b") as handle:
        handle.truncate(end_of_row_4)
    np.testing.assert_array_equal(array.read_rows(np.arange(4)), WRITTEN[:4].astype(np.float32))
    past = array.read_rows(np.arange(4, 9))   # what HDF5 gives for bytes past the end of the file
    assert not is_mapped(past) and past.shape == (5, 3, 4)
    array.close()
