"""Validated, lazily read HDF5 datasets (the AVE release and the h5 label/order files)."""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Iterator, Sequence

import h5py
import numpy as np

from cmg_eval.data.decode import Unit
from cmg_eval.errors import CmgError

BLOCK_ROWS = 64  # rows per read when `validate` decodes a whole dataset


# A dataset may declare more than it stores only by compression (deflate reaches about 1000:1): beyond this
# ratio its rows are unallocated fill values (a tiny file declaring billions of rows), refused before a read.
MAX_INFLATION = 4096
ALWAYS_READABLE = 64 << 20   # bytes a dataset may declare whatever it stores


def _shape_text(tail: Sequence[int | None]) -> str:
    return "(N, " + ", ".join("*" if d is None else str(d) for d in tail) + ")"


def _dataset(handle: h5py.File, path: Path, key: str, expected: str) -> h5py.Dataset:
    """The dataset `key` whose data lives in this file: external links, virtual datasets and external raw storage
    are refused (their data is elsewhere: missing, unchecked, and unseen by the file's fingerprint)."""
    link = handle.get(key, getlink=True)
    if isinstance(link, h5py.ExternalLink):
        raise CmgError(f"{path}: {key!r} is an external link to {link.filename}:{link.path}, expected {expected} "
                       f"stored in this file")
    try:
        dataset = handle.get(key) if link is not None else None
    except (KeyError, OSError) as error:
        raise CmgError(f"{path}: {key!r} cannot be opened ({error}), expected {expected}") from None
    if not isinstance(dataset, h5py.Dataset):
        found = ", ".join(sorted(handle.keys())) or "nothing"
        raise CmgError(f"{path}: no dataset {key!r} (found: {found}); expected {expected}")
    if dataset.is_virtual or dataset.external:
        kind = "a virtual dataset" if dataset.is_virtual else "stored in external files"
        raise CmgError(f"{path}: dataset {key!r} is {kind}, expected {expected} stored in this file")
    declared, stored = dataset.size * dataset.dtype.itemsize, dataset.id.get_storage_size()
    if declared > ALWAYS_READABLE and declared > MAX_INFLATION * stored:
        raise CmgError(f"{path}: dataset {key!r} declares shape {dataset.shape} ({declared / 2 ** 20:.0f} MiB) but "
                       f"stores {stored} bytes, expected its rows in the file ({expected})")
    return dataset


class H5Array:
    """One dataset of one h5 file, checked for key, shape and dtype; rows are read on demand."""

    def __init__(self, path: str | Path, key: str, tail: Sequence[int | None], what: str = "features"):
        self.path = Path(path)
        self.key = key
        if not self.path.is_file():
            raise CmgError(f"{self.path}: missing file (expected h5 dataset {key!r} of shape {_shape_text(tail)}, {what})")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as error:
            raise CmgError(f"{self.path}: not a readable HDF5 file ({str(error).splitlines()[0]})") from None
        try:
            self.dataset = _dataset(self._file, self.path, key, f"{what} of shape {_shape_text(tail)}")
        except CmgError:
            self._file.close()
            raise
        shape = self.dataset.shape
        if len(shape) != 1 + len(tail) or any(d is not None and d != s for d, s in zip(tail, shape[1:])):
            raise CmgError(f"{self.path}: dataset {key!r} has shape {shape}, expected {_shape_text(tail)} ({what})")
        if self.dataset.dtype.kind not in "fiub":
            raise CmgError(f"{self.path}: dataset {key!r} has dtype {self.dataset.dtype}, expected numbers ({what})")
        self._offset = self._raw_offset()
        self._mappable = self._offset is not None and self._ends_read_the_same()

    def _raw_offset(self) -> int | None:
        """Where the rows start in the file when they are one contiguous, unfiltered, allocated block of float32
        in this machine's byte order (such rows are mapped batch by batch instead of copied out: `_mapped`)."""
        dataset = self.dataset
        if dataset.dtype != np.dtype(np.float32) or dataset.chunks is not None or not len(self) or \
                self._file.driver != "sec2":
            return None
        return dataset.id.get_offset()   # None when storage was never allocated (HDF5 reads fill values)

    def _ends_read_the_same(self) -> bool:
        """Rows 0 and N-1 read the same mapped as through HDF5."""
        for row in (0, len(self) - 1):
            try:
                mapped = self._mapped(row, row + 1)
            except (OSError, ValueError):   # e.g. an offset past what the system can map
                return False
            if mapped is None or mapped.tobytes() != self.dataset[row:row + 1].tobytes():
                return False
        return True

    def _mapped(self, start: int, stop: int) -> np.ndarray | None:
        """Rows start..stop-1 as a copy-on-write mapping of the file's pages (no copy; unmapped when the array is
        dropped), or None when the file has become shorter than they need."""
        handle = self._file.id.get_vfd_handle()   # the descriptor HDF5 reads through: the very file it checked
        row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * 4
        begin, length = self._offset + start * row_bytes, (stop - start) * row_bytes
        if os.fstat(handle).st_size < begin + length:
            return None
        base = begin - begin % mmap.ALLOCATIONGRANULARITY
        pages = mmap.mmap(handle, begin - base + length, flags=mmap.MAP_PRIVATE,
                          prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=base)
        return np.frombuffer(pages, np.float32, length // 4, begin - base).reshape(stop - start, *self.shape[1:])

    @property
    def shape(self) -> tuple[int, ...]:
        return self.dataset.shape

    def __len__(self) -> int:
        return self.shape[0]

    def read_all(self) -> np.ndarray:
        return self.dataset[()]

    def read_rows(self, indices: Sequence[int], dtype=np.float32) -> np.ndarray:
        """Rows in the given order (h5py needs increasing unique indices, so sort and scatter back); a run of
        consecutive float32 rows of a mappable dataset comes back mapped, not copied."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise CmgError(f"{self.path}: index {int(indices.max())} out of range for {len(self)} rows in {self.key!r}")
        if self._mappable and dtype == np.float32 and indices.size and \
                np.array_equal(indices, np.arange(indices[0], indices[0] + indices.size)):
            mapped = self._mapped(int(indices[0]), int(indices[-1]) + 1)
            if mapped is not None:
                return mapped
        unique, inverse = np.unique(indices, return_inverse=True)
        try:
            rows = self._read_sorted(unique)
        except OSError as error:  # e.g. a chunk that does not decompress
            raise CmgError(f"{self.path}: rows {int(unique[0])}-{int(unique[-1])} of dataset {self.key!r} are not "
                           f"readable ({str(error).splitlines()[0]})") from None
        if len(unique) != len(indices) or not np.array_equal(unique, indices):
            rows = rows[inverse]  # only when the order differs: this copy costs as much as the read
        return rows.astype(dtype, copy=False)

    def _read_sorted(self, unique: np.ndarray) -> np.ndarray:
        """Rows at increasing unique indices, each run of consecutive indices read as one slice
        (h5py's point selection is several times slower than slices on large rows)."""
        if not unique.size:
            return np.empty((0, *self.shape[1:]), self.dataset.dtype)
        breaks = np.flatnonzero(np.diff(unique) != 1) + 1
        starts = np.concatenate(([0], breaks))
        ends = np.concatenate((breaks, [len(unique)]))
        if len(starts) == 1:
            return self.dataset[int(unique[0]):int(unique[-1]) + 1]
        out = np.empty((len(unique), *self.shape[1:]), self.dataset.dtype)
        for lo, hi in zip(starts, ends):
            self.dataset.read_direct(out, np.s_[int(unique[lo]):int(unique[hi - 1]) + 1], np.s_[lo:hi])
        return out

    def iter_rows(self, indices: Sequence[int], batch_size: int) -> Iterator[np.ndarray]:
        """Float32 batches of rows, never holding more than one batch in memory."""
        for start in range(0, len(indices), batch_size):
            yield self.read_rows(indices[start:start + batch_size])

    def units(self, quick: bool) -> list[Unit]:
        """Every row in blocks (quick: the first row), read as a run reads them."""
        size = 1 if quick else BLOCK_ROWS
        starts = range(0, min(len(self), 1) if quick else len(self), size)
        return [Unit(self.path, f"rows {start}-{min(start + size, len(self)) - 1} of dataset {self.key!r}",
                     lambda start=start: self.read_rows(np.arange(start, min(start + size, len(self)))))
                for start in starts]

    def close(self) -> None:
        self._file.close()


def write_h5(path: Path, key: str, array: np.ndarray) -> None:
    with h5py.File(path, "w") as handle:
        handle.create_dataset(key, data=array)
