"""The unit of work of a run: one (model, task, source modality, head seed) job, and its on-disk result.

A job's result is `OUT/jobs/<model>/<task>/<source>_seed<N>.npz` (predictions) plus a `.json`
written after it (scores and the job's fingerprint): the json is the done-marker, so a killed
run, a rerun or another shard on a shared filesystem sees exactly the finished jobs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cmg_eval.io import atomic_write, folder_name, write_json
from cmg_eval.task import Predictions, Scored


@dataclass(frozen=True)
class Job:
    model: str
    task: str
    source: str
    targets: tuple[str, ...]
    seed: int

    @property
    def id(self) -> str:
        return f"{self.model}/{self.task}/{self.source}/seed{self.seed}"


def fingerprint(parts: dict[str, Any]) -> str:
    """What decides a job's result: model identity, task version and settings, data, seed."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class JobStore:
    """Finished jobs of one output folder."""

    def __init__(self, out: str | Path):
        self.root = Path(out) / "jobs"

    def _paths(self, job: Job) -> tuple[Path, Path]:
        stem = self.root / folder_name(job.model) / folder_name(job.task) / f"{job.source}_seed{job.seed}"
        return stem.with_suffix(".npz"), stem.with_suffix(".json")

    def load(self, job: Job, expected: str) -> tuple[dict[str, Scored], float] | None:
        """The job's scores and seconds if it finished under the same fingerprint, else None."""
        arrays_path, marker = self._paths(job)
        try:
            record = json.loads(marker.read_text())
            if record.get("fingerprint") != expected:
                return None
            with np.load(arrays_path, allow_pickle=False) as arrays:
                stored = {key: arrays[key] for key in arrays.files}
        except (OSError, ValueError, json.JSONDecodeError):
            return None  # absent or unreadable: the job is simply not done
        scored = {}
        for target, about in record["targets"].items():
            predictions = {key.split("/", 1)[1]: value for key, value in stored.items() if key.startswith(f"{target}/")}
            scored[target] = Scored(about["metrics"], about["n_items"],
                                    Predictions.from_arrays(predictions) if "item" in predictions else None)
        return scored, float(record.get("seconds", 0.0))

    def save(self, job: Job, expected: str, scored: dict[str, Scored], seconds: float) -> None:
        arrays_path, marker = self._paths(job)
        marker.unlink(missing_ok=True)
        arrays = {f"{target}/{key}": value for target, s in scored.items()
              for key, value in (s.predictions or {}).items()}

        def write(partial: Path) -> None:
            with open(partial, "wb") as handle:
                np.savez(handle, **arrays)

        atomic_write(arrays_path, write)
        write_json(marker, {"id": job.id, "fingerprint": expected, "seconds": round(seconds, 3),
                            "targets": {t: {"metrics": s.metrics, "n_items": s.n_items} for t, s in scored.items()}})
