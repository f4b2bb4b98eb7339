"""Checkpoint files of the DCID-backbone models: reading them safely, their dict keys, strict key checks.

Shared by the adapters that evaluate checkpoints (`cmg_eval.encoders`) and the trainer that writes them
(`cmg_eval.train`); the layouts are in docs/checkpoints.md.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from cmg_eval.errors import CmgError

ENCODER_KEY = "Encoder_parameters"
TEXT_KEY = "Text_ar_lstm_parameters"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint without executing code: `weights_only=True`, memory-mapped."""
    path = Path(path)
    if not path.is_file():
        raise CmgError(f"{path}: checkpoint file not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CmgError(f"{path}: not a loadable checkpoint (torch.load weights_only=True): {first}") from None
    if not isinstance(ckpt, dict):
        raise CmgError(f"{path}: expected a checkpoint dict, found {type(ckpt).__name__}")
    return ckpt


def check_state_dict(state: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]], where: str) -> None:
    """One-line error naming missing, extra and mis-shaped keys."""
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    misshaped = [f"{k} {tuple(state[k].shape)} != {expected[k]}" for k in expected
                 if k in state and tuple(getattr(state[k], "shape", ())) != expected[k]]
    problems = []
    for label, items in (("missing", missing), ("unexpected", extra), ("wrong shape", misshaped)):
        if items:
            shown = ", ".join(items[:4]) + (f" (+{len(items) - 4} more)" if len(items) > 4 else "")
            problems.append(f"{label} keys: {shown}")
    if problems:
        raise CmgError(f"{where}: {'; '.join(problems)}")
