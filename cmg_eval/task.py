"""The task plugin interface: what a benchmark file under `tasks/` implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from cmg_eval.data.decode import Decodable
from cmg_eval.encoders.base import SHORT

PROTOCOLS = ("clean", "paper")


@dataclass
class FeatureSource:
    """The inputs of one encode job: which items of which file, read in batches."""

    key: str            # identity of the data (file fingerprint, split, modality): part of the cache key
    modality: str
    n_items: int
    batches: Callable[[int], Iterator[np.ndarray]]  # batch size -> float32 arrays in item order
    where: str          # the file, for error messages
    part: str = "data"  # which part of the file, for error messages (e.g. "train split")
    # Mean over time per batch, stored as (N, D): lets batches differ in length (variable-T items).
    pool: bool = False


@dataclass
class Scored:
    """One head scored on one target: metrics (percent) and per-item predictions."""

    metrics: dict[str, float]
    n_items: int
    predictions: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class SourceRun:
    """Everything one (model, task, source modality, seed) job needs."""

    data: Any
    source: str
    targets: tuple[str, ...]
    seed: int
    protocol: str
    settings: dict[str, Any]
    embed: Callable[[FeatureSource], np.ndarray]   # cached encoder output (N, T, D), or (N, D) if pooled
    checkpoint_epoch: int = -1
    on_epoch: Callable[[], None] = lambda: None   # called once per trained epoch (progress)
    device: str = "cpu"     # where heads train (embeddings stay on the CPU)
    strict: bool = True     # refuse non-finite input features (False: the embedder sets them to 0)


def direction_name(source: str, target: str) -> str:
    return f"{SHORT[source]}->{SHORT[target]}"


class Task(ABC):
    """One benchmark: metadata, data reading, directions, head and metrics, in one file."""

    name: str = ""
    version: str = "1"
    primary_metric: str = "accuracy"
    metrics: tuple[str, ...] = ()
    lower_is_better: tuple[str, ...] = ()
    # (source, target) pairs; same-modality pairs are the "labeled modality" rows.
    directions: tuple[tuple[str, str], ...] = ()
    # Head and training knobs, all settable with --set KEY=VALUE or --set TASK.KEY=VALUE.
    defaults: dict[str, Any] = {}
    # False for zero-shot tasks (no head): run once, whatever --seeds says.
    seeded: bool = True

    @abstractmethod
    def load(self, data_root: Path) -> Any:
        """Validate the task's files under `data_root` and read labels and splits."""

    @abstractmethod
    def run_source(self, job: SourceRun) -> dict[str, Scored]:
        """Train heads on `job.source` and score every target: target modality -> Scored."""

    def files(self, data: Any) -> list[Path]:
        """The data files this task reads (for the run's data manifest)."""
        return []

    def rescore(self, data: Any, predictions: dict[str, np.ndarray]) -> dict[str, float] | None:
        """Metrics from saved per-item predictions (arrays aligned on items), for bootstrap and paired tests.

        None when the task cannot rescore a subset of items.
        """
        return None

    def about(self, data: Any) -> dict[str, Any]:
        """Facts about the loaded data the report should state (sizes, label coverage, chance levels)."""
        return {}

    def feature_readers(self, data: Any) -> list[Decodable]:
        """The readers of every feature file the task reads, for `validate` to decode file by file."""
        return []

    def data_notes(self, data: Any) -> dict[str, Any]:
        """What the files do that cmg-eval accepts but a user should know (`warnings`: lines such as differences
        from a built-in label map; counts of tolerated oddities), for `validate` and `meta.data`."""
        return {}

    def epochs(self, job: SourceRun) -> int:
        """Epochs a job trains for (progress display)."""
        return int(job.settings.get("epochs", 0))

    def sources(self) -> list[str]:
        return list(dict.fromkeys(source for source, _ in self.directions))

    def targets(self, source: str) -> tuple[str, ...]:
        return tuple(target for s, target in self.directions if s == source)
