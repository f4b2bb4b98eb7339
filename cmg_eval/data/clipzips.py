"""Per-clip feature zips of the releases (`<folder>/<id>.zip`, one pickled array each) as encoder inputs."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from cmg_eval.constants import STEPS
from cmg_eval.data.decode import Unit
from cmg_eval.data.zipfeat import read_feature_zip
from cmg_eval.errors import CmgError


def fit_steps(array: np.ndarray, steps: int) -> np.ndarray:
    """Truncate to `steps` rows, or pad by repeating the last row (the reference's rule for audio and UCF video)."""
    if len(array) >= steps:
        return array[:steps]
    return np.concatenate([array, np.repeat(array[-1:], steps - len(array), axis=0)])


def stack_float32(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Equal-shaped arrays as one float32 batch, each cast as it is copied in (one copy, not two)."""
    batch = np.empty((len(arrays), *arrays[0].shape), np.float32)
    with np.errstate(over="ignore"):  # beyond float32 range reads as inf, refused where batches are checked
        for slot, array in zip(batch, arrays):
            slot[...] = array
    return batch


# A clip of variable length T may hold this many steps at most; each value takes at most 8 bytes. A pickle of an
# array takes up to twice the array's bytes (protocol 2 writes bytes as latin-1 text), plus its header.
MAX_STEPS = 1024
PICKLE_OVERHEAD = 1 << 20
PATH_CHARACTERS = ("/", "\\", "\x00")


def feature_member(archive: zipfile.ZipFile) -> zipfile.ZipInfo | None:
    """The member `read_feature_zip` reads: the last `.pkl`, else the last file."""
    members = [m for m in archive.infolist() if not m.filename.endswith("/")]
    pickles = [m for m in members if m.filename.endswith(".pkl")] or members
    return pickles[-1] if pickles else None


def member_bound(steps: int, tail: tuple[int, ...]) -> int:
    """The most unpacked bytes a feature zip's pickle of a (steps, *tail) array can need."""
    return 2 * steps * int(np.prod(tail)) * 8 + PICKLE_OVERHEAD


def check_stem(clip_id: str, where: str, folder: Path) -> None:
    """An id from an annotation file names a file inside `folder`: no path separator, not empty."""
    if not clip_id or any(c in clip_id for c in PATH_CHARACTERS):
        raise CmgError(f"{where}: id {clip_id!r} is empty or holds a path separator, expected a feature file stem "
                       f"inside {folder}")


class ClipZips:
    """The feature zips of a list of clips (`<folder>/<id>.zip`, one pickled (T, *tail) array each), checked to
    exist up front and read on demand: the one per-clip feature reader of the head tasks, retrieval and pretraining.

    `steps`: each clip is cut or padded to it (`pad`) or must have exactly it (not `pad`); `None` keeps each clip's
    own length T >= 1 (retrieval items), and `order()` then sorts clips so that equal lengths are adjacent.
    """

    def __init__(self, folder: Path, ids: Sequence[str], names: Sequence[str], tail: tuple[int, ...],
                 listed_in: Path, lines: Sequence[int] | None, pad: bool, steps: int | None = STEPS,
                 what: str = "features"):
        self.folder, self.ids, self.names = Path(folder), list(ids), list(names)
        self.tail, self.pad, self.steps, self.what = tuple(tail), pad and steps is not None, steps, what
        if not self.folder.is_dir():
            raise CmgError(f"{self.folder}: missing folder (expected {what} zips <id>.zip for the clips of {listed_in})")
        self._stats = {}
        missing = []
        for row, (clip_id, name) in enumerate(zip(self.ids, self.names)):
            line = f"line {lines[row]}" if lines is not None else f"item {row + 1}"
            check_stem(clip_id, f"{listed_in}: {line} ({name!r})", self.folder)
            if clip_id not in self._stats:
                try:
                    stat = self.path(clip_id).stat()
                    self._stats[clip_id] = (stat.st_size, stat.st_mtime_ns)
                except FileNotFoundError:
                    missing.append((clip_id, name, line))
        if missing:
            clip_id, name, line = missing[0]
            raise CmgError(f"{self.path(clip_id)}: missing feature file of clip {name!r} ({listed_in.name} {line}; "
                           f"{len(missing)} of {len(self.ids)} clips lack one), expected a zip holding one pickled "
                           f"{self._shape_text()} array")
        # variable lengths: unpacked member sizes (equal T <=> equal size for one dtype), checked now
        self._sizes = None if steps is not None else np.asarray(
            [self._member_size(clip_id, name) for clip_id, name in zip(self.ids, self.names)], dtype=np.int64)

    def _shape_text(self) -> str:
        return f"({'T' if self.steps is None or self.pad else self.steps}, {', '.join(map(str, self.tail))})"

    def _bound(self) -> int:
        return member_bound(MAX_STEPS if self.steps is None or self.pad else self.steps, self.tail)

    def path(self, clip_id: str) -> Path:
        return self.folder / f"{clip_id}.zip"

    def __len__(self) -> int:
        return len(self.ids)

    def read(self, row: int) -> np.ndarray:
        """One clip's float32 (steps, *tail) array ((T, *tail) when `steps` is None)."""
        return self._read_stored(row).astype(np.float32, copy=False)

    def _read_stored(self, row: int) -> np.ndarray:
        """One clip's checked (steps, *tail) array in the dtype it was stored in."""
        path = self.path(self.ids[row])
        array = read_feature_zip(path, self._bound())
        if array.ndim != 1 + len(self.tail) or array.shape[1:] != self.tail or len(array) == 0 \
                or (self.steps is not None and not self.pad and len(array) != self.steps):
            raise CmgError(f"{path}: array of shape {array.shape}, expected {self._shape_text()} ({self.what} of "
                           f"clip {self.names[row]!r})")
        return fit_steps(array, self.steps) if self.pad else array

    def order(self) -> np.ndarray:
        """Rows with equal lengths adjacent (sorted by unpacked member size; stable: ties keep row order)."""
        if self._sizes is None:
            return np.arange(len(self.ids))
        return np.argsort(self._sizes, kind="stable")

    def _member_size(self, clip_id: str, name: str) -> int:
        path = self.path(clip_id)
        try:
            with zipfile.ZipFile(path) as archive:
                member = feature_member(archive)
        except (zipfile.BadZipFile, OSError) as error:
            raise CmgError(f"{path}: not a readable zip for clip {name!r} ({error})") from None
        if member is None:
            raise CmgError(f"{path}: empty zip for clip {name!r}, expected one pickled numpy array")
        if member.file_size > self._bound():
            raise CmgError(f"{path}:{member.filename}: declares {member.file_size} bytes unpacked, expected at most "
                           f"{self._bound()} for a {self._shape_text()} array (T <= {MAX_STEPS})")
        return member.file_size

    def iter_rows(self, rows: Sequence[int], batch_size: int,
                  check: Callable[[np.ndarray, Path, str], None] | None = None) -> Iterator[np.ndarray]:
        """Float32 batches of clips in the given order, a new batch wherever the length changes (never padded);
        `check(array, path, name)` sees each clip first."""
        batch: list[np.ndarray] = []
        for row in np.asarray(rows, dtype=np.int64).tolist():
            array = self._read_stored(row) if check is None else self.read(row)
            if check is not None:
                check(array, self.path(self.ids[row]), self.names[row])
            if batch and (len(batch) == batch_size or array.shape[0] != batch[0].shape[0]):
                yield stack_float32(batch)
                batch = []
            batch.append(array)
        if batch:
            yield stack_float32(batch)

    def key(self) -> str:
        """Identity of the clip list and its files (names, sizes, modification times): part of cache keys."""
        digest = hashlib.sha256(f"{self.folder.resolve()}|{self.steps}|{self.pad}".encode())
        for clip_id in self.ids:
            digest.update(f"|{clip_id}:{self._stats[clip_id]}".encode())
        return digest.hexdigest()

    def units(self, quick: bool) -> list[Unit]:
        """One read per distinct file, in first-use order (quick: the first), decoded and checked as `read` does."""
        first_row = {}
        for row, clip_id in enumerate(self.ids):
            first_row.setdefault(clip_id, row)
        units = [Unit(self.path(clip_id), f"its {self.what} array", lambda row=row: self.read(row))
                 for clip_id, row in first_row.items()]
        return units[:1] if quick else units

    def paths(self) -> list[Path]:
        """The distinct files, in first-use order."""
        return [self.path(clip_id) for clip_id in dict.fromkeys(self.ids)]
