"""Atomic file writes: a crash never leaves a half-written file under its final name."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping

from cmg_eval.errors import CmgError


def folder_name(text: str) -> str:
    """The folder a row label or task name is stored under (the same everywhere: jobs/, predictions/)."""
    return re.sub(r"[^A-Za-z0-9_.@=+-]", "_", text)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)`, then rename the finished file into place; a failed write (unwritable or full
    folder, a file where a folder should be) is a one-line error naming the path."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(partial)
        partial.replace(path)
    except OSError as error:
        raise CmgError(f"{path}: cannot write ({error.strerror or error})") from None
    finally:
        try:
            partial.unlink(missing_ok=True)
        except OSError:
            pass  # its folder could not be made: there is no partial file
    return path


def writable_folder(path: str | Path, option: str) -> Path:
    """Create `path` as a folder (with parents) or fail with one line naming the option."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CmgError(f"{option} {path}: is a file, expected a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CmgError(f"{option} {path}: cannot create the folder ({error.strerror or error})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise CmgError(f"{option} {path}: folder is not writable")
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def save_checkpoint(ckpt: Mapping[str, Any], path: str | Path) -> Path:
    import torch

    return atomic_write(path, lambda p: torch.save(dict(ckpt), p))
