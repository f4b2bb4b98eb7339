"""Content-addressed embedding store: each (model, data) pair is encoded once, read many times."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from cmg_eval.io import atomic_write, write_json


def default_cache_dir() -> Path:
    return Path(os.environ.get("CMG_EVAL_CACHE", Path.home() / ".cache" / "cmg-eval"))


def cache_key(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


class EmbeddingCache:
    """`<root>/embeddings/<key>.npy` with a JSON sidecar saying what it holds."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else default_cache_dir()
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.root / "embeddings" / key[:2] / f"{key}.npy"

    def load(self, key: str) -> np.ndarray | None:
        path = self._path(key)
        if not path.is_file():
            self.misses += 1
            return None
        self.hits += 1
        return np.load(path)

    def store(self, key: str, array: np.ndarray, about: dict[str, Any]) -> None:
        path = self._path(key)
        write_json(path.with_suffix(".json"), {**about, "shape": list(array.shape), "dtype": str(array.dtype)})

        def write(partial: Path) -> None:
            with open(partial, "wb") as handle:
                np.save(handle, array)

        atomic_write(path, write)
