"""Decoding every feature file a task reads and collecting each refusal, so `cmg-eval validate` reports in one
pass everything a run would stop at (unreadable or wrongly shaped arrays, non-finite values)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from cmg_eval.errors import CmgError


@dataclass
class Unit:
    """One read of a feature file: the whole array of a zip, or a block of rows of an h5 dataset."""

    file: Path
    what: str                           # the read, for messages (e.g. "rows 0-63 of 'avadataset'")
    read: Callable[[], np.ndarray]      # decodes and checks it like a run does; raises CmgError


class Decodable(Protocol):
    """A reader whose files can be decoded one unit at a time (`quick`: the first unit only)."""

    def units(self, quick: bool) -> list[Unit]:
        ...


def finite(array: np.ndarray) -> bool:
    """A float64 sum is finite exactly when every element is (one pass, no boolean array)."""
    return bool(np.isfinite(array.sum(dtype=np.float64)) or np.isfinite(array).all())


def problem(unit: Unit) -> str | None:
    """Why a run would refuse this read (the reader's own error, or non-finite values, which a run refuses
    unless --allow-nonfinite), or None."""
    try:
        array = unit.read()
    except CmgError as error:
        return str(error)
    if not finite(array):
        return (f"{unit.file}: non-finite values in {unit.what}, expected finite numbers (a run refuses them unless "
                f"--allow-nonfinite)")
    return None
