"""Content-addressed embedding store: each (model, data) pair is encoded once, read many times."""

from __future__ import annotations

import fcntl
import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from cmg_eval.errors import CmgError
from cmg_eval.io import atomic_write, write_json


def default_cache_dir() -> Path:
    return Path(os.environ.get("CMG_EVAL_CACHE", Path.home() / ".cache" / "cmg-eval"))


def cache_key(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


class EmbeddingCache:
    """`<root>/embeddings/<key>.npy` with a JSON sidecar saying what it holds.

    Entries appear by atomic rename, so readers never see half-written arrays; a per-key lock
    keeps two processes from encoding the same thing twice.
    """

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else default_cache_dir()
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.root / "embeddings" / key[:2] / f"{key}.npy"

    def load(self, key: str, count_miss: bool = True, mapped: bool = False) -> np.ndarray | None:
        """The entry, or None; `mapped`: read-only and memory-mapped, for callers that read a few of its rows."""
        path = self._path(key)
        try:
            array = np.load(path, allow_pickle=False, mmap_mode="r" if mapped else None)
        except (FileNotFoundError, ValueError, OSError):
            # absent, or unreadable (a foreign or damaged file): encode again and replace it
            self.misses += count_miss
            return None
        self.hits += 1
        return array

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        path = self._path(key).with_suffix(".lock")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a")
        except OSError as error:
            raise CmgError(f"{path}: cannot write to the embedding cache ({error.strerror or error})") from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def store(self, key: str, array: np.ndarray, about: dict[str, Any]) -> None:
        path = self._path(key)

        def write(partial: Path) -> None:
            with open(partial, "wb") as handle:
                np.save(handle, array)

        atomic_write(path, write)
        write_json(path.with_suffix(".json"), {**about, "shape": list(array.shape), "dtype": str(array.dtype)})
