"""Cheap, content-sensitive fingerprints of data files, and the manifest hash of a run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

EDGE = 1 << 20


def fingerprint(path: str | Path) -> str:
    """sha256 over size, mtime and the first and last MiB: changes when the file does, costs two reads."""
    path = Path(path)
    stat = path.stat()
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(EDGE))
        if stat.st_size > EDGE:
            handle.seek(max(EDGE, stat.st_size - EDGE))
            digest.update(handle.read(EDGE))
    return digest.hexdigest()


def manifest(paths: Iterable[Path], root: Path) -> dict[str, str]:
    """Relative path -> fingerprint, sorted."""
    entries = {}
    for path in paths:
        path = Path(path)
        try:
            name = str(path.resolve().relative_to(Path(root).resolve()))
        except ValueError:
            name = str(path)
        entries[name] = fingerprint(path)
    return dict(sorted(entries.items()))


def manifest_hash(entries: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()
