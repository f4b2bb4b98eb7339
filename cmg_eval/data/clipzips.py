"""Per-clip feature zips of the releases (`<folder>/<id>.zip`, one pickled array each) as encoder inputs."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from cmg_eval.data.decode import Unit
from cmg_eval.data.zipfeat import read_feature_zip
from cmg_eval.errors import CmgError


def fit_steps(array: np.ndarray, steps: int) -> np.ndarray:
    """Truncate to `steps` rows, or pad by repeating the last row (the reference's rule for audio and UCF video)."""
    if len(array) >= steps:
        return array[:steps]
    return np.concatenate([array, np.repeat(array[-1:], steps - len(array), axis=0)])


# A clip of variable length T may hold this many steps at most; each value takes at most 8 bytes. A pickle of an
# array takes up to twice the array's bytes (protocol 2 writes bytes as latin-1 text), plus its header.
MAX_STEPS = 1024
PICKLE_OVERHEAD = 1 << 20
PATH_CHARACTERS = ("/", "\\", "\x00")


def member_bound(steps: int, tail: tuple[int, ...]) -> int:
    """The most unpacked bytes a feature zip's pickle of a (steps, *tail) array can need."""
    return 2 * steps * int(np.prod(tail)) * 8 + PICKLE_OVERHEAD


def check_stem(clip_id: str, where: str, folder: Path) -> None:
    """An id from an annotation file names a file inside `folder`: no path separator, not empty."""
    if not clip_id or any(c in clip_id for c in PATH_CHARACTERS):
        raise CmgError(f"{where}: id {clip_id!r} is empty or holds a path separator, expected a feature file stem "
                       f"inside {folder}")


class ClipZips:
    """The feature zips of a list of clips, checked to exist up front; arrays are read on demand."""

    def __init__(self, folder: Path, ids: Sequence[str], names: Sequence[str], tail: tuple[int, ...],
                 listed_in: Path, lines: Sequence[int], pad: bool, steps: int = 10, what: str = "features"):
        self.folder, self.ids, self.tail, self.pad, self.steps, self.what = Path(folder), list(ids), tail, pad, steps, what
        if not self.folder.is_dir():
            raise CmgError(f"{self.folder}: missing folder (expected {what} zips <id>.zip for the clips of {listed_in})")
        self._stats = {}
        missing = []
        for clip_id, name, line in zip(self.ids, names, lines):
            check_stem(clip_id, f"{listed_in}: line {line} ({name!r})", self.folder)
            if clip_id not in self._stats:
                try:
                    stat = self.path(clip_id).stat()
                    self._stats[clip_id] = (stat.st_size, stat.st_mtime_ns)
                except FileNotFoundError:
                    missing.append((clip_id, name, line))
        if missing:
            clip_id, name, line = missing[0]
            raise CmgError(f"{self.path(clip_id)}: missing feature file of clip {name!r} ({listed_in.name} line {line}; "
                           f"{len(missing)} of {len(self.ids)} clips lack one), expected a zip holding one pickled "
                           f"{self._shape_text()} array")

    def _shape_text(self) -> str:
        return f"({'T' if self.pad else self.steps}, {', '.join(map(str, self.tail))})"

    def path(self, clip_id: str) -> Path:
        return self.folder / f"{clip_id}.zip"

    def __len__(self) -> int:
        return len(self.ids)

    def read(self, row: int) -> np.ndarray:
        """One clip's (steps, *tail) float32 array."""
        path = self.path(self.ids[row])
        array = read_feature_zip(path, member_bound(MAX_STEPS if self.pad else self.steps, self.tail))
        if array.ndim != 1 + len(self.tail) or array.shape[1:] != self.tail or len(array) == 0 \
                or (not self.pad and len(array) != self.steps):
            raise CmgError(f"{path}: array of shape {array.shape}, expected {self._shape_text()} ({self.what})")
        return (fit_steps(array, self.steps) if self.pad else array).astype(np.float32, copy=False)

    def iter_rows(self, rows: Sequence[int], batch_size: int) -> Iterator[np.ndarray]:
        """Float32 batches of clips in the given order."""
        for start in range(0, len(rows), batch_size):
            yield np.stack([self.read(int(row)) for row in rows[start:start + batch_size]])

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
