"""Atomic file writes: a crash never leaves a half-written file under its final name."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping


def folder_name(text: str) -> str:
    """The folder a row label or task name is stored under (the same everywhere: jobs/, predictions/)."""
    return re.sub(r"[^A-Za-z0-9_.@=+-]", "_", text)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)`, then rename the finished file into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        write(partial)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def save_checkpoint(ckpt: Mapping[str, Any], path: str | Path) -> Path:
    import torch

    return atomic_write(path, lambda p: torch.save(dict(ckpt), p))
