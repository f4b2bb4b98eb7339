"""The task plugin interface: what a benchmark file under `tasks/` implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

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
    # These items are rows `rows` of `whole` (e.g. one split of a file): the embedder encodes and caches `whole`
    # once and indexes it; `batches` still reads these items alone (for encodings that are never cached).
    whole: FeatureSource | None = None
    rows: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Predictions(Mapping[str, np.ndarray]):
    """Per-item predictions of one head on one target: item ids and arrays aligned with them (first axis = item).

    Classification holds `y_true` and `y_pred` (one class per item), localization adds per-clip `counts`,
    retrieval per-query ranks; a task's `rescore` reads its own arrays. Read as a mapping, "item" is one key.
    """

    item: np.ndarray
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = [k for k, v in self.arrays.items() if k == "item" or len(v) != len(self.item)]
        if bad:
            raise ValueError(f"predictions {bad[0]!r}: expected one row per item ({len(self.item)}), not named 'item'")

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> "Predictions":
        """From saved arrays, one of them `item`."""
        return cls(arrays["item"], {k: v for k, v in arrays.items() if k != "item"})

    def __getitem__(self, key: str) -> np.ndarray:
        return self.item if key == "item" else self.arrays[key]

    def __iter__(self) -> Iterator[str]:
        return iter(("item", *self.arrays))

    def __len__(self) -> int:
        return 1 + len(self.arrays)

    def take(self, rows: np.ndarray) -> "Predictions":
        """The predictions of the items at `rows` (indices, repeats allowed)."""
        return Predictions(self.item[rows], {k: v[rows] for k, v in self.arrays.items()})

    def swapped(self, other: "Predictions", swap: np.ndarray) -> "Predictions":
        """These predictions with `other`'s on the items where `swap` is True (the same items, in the same order)."""
        return Predictions(self.item, {k: np.where(swap.reshape(-1, *([1] * (v.ndim - 1))), other.arrays[k], v)
                                       for k, v in self.arrays.items()})

    def class_labels(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(y_true, y_pred) when the task predicts one class per item, else None."""
        if {"y_true", "y_pred"} <= set(self.arrays) and self.arrays["y_pred"].ndim == 1:
            return self.arrays["y_true"], self.arrays["y_pred"]
        return None


@dataclass
class Scored:
    """One head scored on one target: metrics (percent) and per-item predictions."""

    metrics: dict[str, float]
    n_items: int
    predictions: Predictions | None = None


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
    # (source, seed) -> embeddings encoded anew with the encoder's dropout active (never cached), for the paper
    # protocol's `encode_mode=train`; None where the run cannot provide them
    encode_train: Callable[[FeatureSource, int], np.ndarray] | None = None


def direction_name(source: str, target: str) -> str:
    return f"{SHORT[source]}->{SHORT[target]}"


@dataclass(frozen=True)
class TaskMeta:
    """What a task is, stated once: `ls tasks`, results.json and the report read it from here."""

    name: str
    version: str                          # bump when the numbers a run produces would change
    reference: str                        # the benchmark's citation
    files: tuple[str, ...]                # what it reads under --data-root (patterns)
    primary_metric: str
    metrics: tuple[str, ...]
    # (source, target) pairs; same-modality pairs are the "labeled modality" rows
    directions: tuple[tuple[str, str], ...]
    lower_is_better: tuple[str, ...] = ()
    in_average: bool = True               # its cross-modal primary values enter the report's average column

    def __post_init__(self) -> None:
        unknown = {self.primary_metric, *self.lower_is_better} - set(self.metrics)
        if unknown:
            raise ValueError(f"task {self.name!r}: {sorted(unknown)} not among its metrics {self.metrics}")

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "reference": self.reference, "files": list(self.files),
                "primary_metric": self.primary_metric, "metrics": list(self.metrics),
                "lower_is_better": list(self.lower_is_better),
                "directions": [direction_name(s, t) for s, t in self.directions], "in_average": self.in_average}


class Task(ABC):
    """One benchmark: metadata (`meta`), data reading, directions, head and metrics, in one file.

    `name`, `version`, `primary_metric`, `metrics`, `lower_is_better` and `directions` are read from `meta`
    (copied onto the class when it is defined; set `meta`, never them)."""

    meta: TaskMeta
    name: str = ""
    version: str = "1"
    primary_metric: str = ""
    metrics: tuple[str, ...] = ()
    lower_is_better: tuple[str, ...] = ()
    directions: tuple[tuple[str, str], ...] = ()
    # Head and training knobs, all settable with --set KEY=VALUE or --set TASK.KEY=VALUE.
    defaults: dict[str, Any] = {}
    # False for zero-shot tasks (no head): run once, whatever --seeds says.
    seeded: bool = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        meta = cls.__dict__.get("meta")
        if meta is not None:
            for field_name in ("name", "version", "primary_metric", "metrics", "lower_is_better", "directions"):
                setattr(cls, field_name, getattr(meta, field_name))

    @abstractmethod
    def load(self, data_root: Path) -> Any:
        """Validate the task's files under `data_root` and read labels and splits."""

    @abstractmethod
    def run_source(self, job: SourceRun) -> dict[str, Scored]:
        """Train heads on `job.source` and score every target: target modality -> Scored."""

    def files(self, data: Any) -> list[Path]:
        """The data files this task reads (for the run's data manifest)."""
        return []

    def rescore(self, data: Any, predictions: Mapping[str, np.ndarray]) -> dict[str, float] | None:
        """Metrics from per-item predictions (`Predictions`, or saved arrays), for bootstrap and paired tests.

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
