"""Plan and run evaluations: models x tasks x source modalities x head seeds -> results document."""

from __future__ import annotations

import platform
import resource
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from cmg_eval import __version__, registry
from cmg_eval.cache import EmbeddingCache, cache_key
from cmg_eval.compare import bootstrap_interval, mcnemar_p, paired_bootstrap, paired_permutation_p
from cmg_eval.data.manifest import manifest, manifest_hash
from cmg_eval.encoders.base import LoadedModel
from cmg_eval.encoders.loading import load_model
from cmg_eval.errors import CmgError
from cmg_eval.io import atomic_write, write_json
from cmg_eval.report import write_tables
from cmg_eval.settings import resolve
from cmg_eval.task import PROTOCOLS, FeatureSource, Scored, SourceRun, Task, direction_name

SCHEMA = "cmg-eval/results/1"
FIRST_SEED = 43  # the reference seeds every downstream script with 43
DEFAULT_SEEDS = {"clean": 3, "paper": 1}
ENCODER_CACHE_VERSION = "1"
VERSIONED_PACKAGES = ("torch", "numpy", "scikit-learn", "torchmetrics", "pandas", "h5py", "click", "rich")


@dataclass
class RunConfig:
    """What `cmg-eval run` was asked to do."""

    tasks: list[str]
    checkpoints: list[str]
    data_root: Path
    out: Path
    encoder: str | None = None
    protocol: str = "clean"
    seeds: int | None = None
    assignments: list[str] = field(default_factory=list)
    cache_dir: Path | None = None
    encode_batch: int = 64
    bootstrap: int = 1000      # item resamples for intervals and paired tests (0: none)
    command: list[str] = field(default_factory=lambda: list(sys.argv))


class Embedder:
    """Encodes a FeatureSource once per model (through the on-disk cache), checking inputs and outputs."""

    def __init__(self, model: LoadedModel, cache: EmbeddingCache, batch_size: int, progress: Progress):
        self.model = model
        self.cache = cache
        self.batch_size = batch_size
        self.progress = progress
        self.seconds = 0.0

    def __call__(self, source: FeatureSource) -> np.ndarray:
        key = cache_key(ENCODER_CACHE_VERSION, self.model.identity, source.key, "pooled" if source.pool else "steps")
        cached = self.cache.load(key)
        if cached is not None:
            return cached
        started = time.perf_counter()
        array = self._encode(source)
        self.seconds += time.perf_counter() - started
        self.cache.store(key, array, {"model": self.model.identity, "data": source.key, "where": source.where})
        return array

    def _encode(self, source: FeatureSource) -> np.ndarray:
        encoder, readout = self.model.encoder, self.model.readout
        dim = encoder.output_dim(readout)
        parts, done = [], 0
        bar = self.progress.add_task(f"encode {self.model.label} {source.modality} ({Path(source.where).name})",
                                     total=source.n_items)
        for batch in source.batches(self.batch_size):
            if not np.isfinite(batch).all():
                bad = done + int(np.flatnonzero(~np.isfinite(batch.reshape(len(batch), -1)).all(1))[0])
                raise CmgError(f"{source.where}: non-finite {source.modality} features in item {bad} of the "
                               f"{source.part}, expected finite numbers")
            with torch.inference_mode():
                out = encoder.encode(source.modality, torch.from_numpy(np.ascontiguousarray(batch)), readout)
            if out.dim() != 3 or out.shape[0] != len(batch) or out.shape[2] != dim:
                raise CmgError(f"encoder {self.model.label!r}: {source.modality} output shape {tuple(out.shape)}, "
                               f"expected ({len(batch)}, T, {dim})")
            if not torch.isfinite(out).all():
                raise CmgError(f"encoder {self.model.label!r}: non-finite {source.modality} embeddings for "
                               f"{source.where}")
            out = out.mean(dim=1) if source.pool else out
            parts.append(out.detach().float().numpy())
            done += len(batch)
            self.progress.advance(bar, len(batch))
        self.progress.remove_task(bar)
        if done != source.n_items:
            raise CmgError(f"{source.where}: read {done} {source.modality} items, expected {source.n_items}")
        return np.concatenate(parts) if parts else np.empty((0, dim) if source.pool else (0, 0, dim), np.float32)


# ------------------------------------------------------------------------------------------ planning


def resolve_tasks(names: list[str]) -> dict[str, Task]:
    """`all` or task names -> task instances (an unknown name is an error before any work)."""
    wanted = registry.tasks.names() if names == ["all"] else names
    return {name: registry.tasks.get(name)() for name in dict.fromkeys(wanted)}


def load_models(specs: list[str], encoder: str | None) -> list[LoadedModel]:
    if not specs:
        raise CmgError("no --ckpt given: name at least one checkpoint")
    models = [load_model(spec, encoder) for spec in specs]
    labels = [m.label for m in models]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise CmgError(f"--ckpt labels must be unique, {', '.join(duplicates)} repeats (use LABEL=PATH)")
    return models


def summarize(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single seed)."""
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def add_interval(rows: list[dict[str, Any]], task: Task, data: Any, runs: list[Scored], resamples: int) -> None:
    """95% bootstrap interval over items for the primary metric row (seeds averaged)."""
    for row in rows:
        row["ci_low"] = row["ci_high"] = None
        if row["primary"] and resamples:
            score = seed_mean_metric(task, data, runs, row["metric"])
            if score is not None:
                row["ci_low"], row["ci_high"] = bootstrap_interval(score, runs[0].n_items, resamples, BOOTSTRAP_SEED)


def result_rows(model: LoadedModel, task: Task, source: str, target: str, runs: list[Scored],
                protocol: str) -> list[dict[str, Any]]:
    rows = []
    for metric in task.metrics:
        per_seed = [run.metrics[metric] for run in runs]
        value, std = summarize(per_seed)
        rows.append({"model": model.label, "task": task.name, "source": source, "target": target,
                     "direction": direction_name(source, target), "metric": metric, "value": value, "std": std,
                     "n_seeds": len(runs), "n_items": runs[0].n_items, "primary": metric == task.primary_metric,
                     "lower_is_better": metric in task.lower_is_better, "readout": model.readout,
                     "protocol": protocol, "per_seed": per_seed})
    return rows


# ------------------------------------------------------------------------------------------ statistics

BOOTSTRAP_SEED = 0
SIGNIFICANCE = 0.05


def take(predictions: dict[str, np.ndarray], items: np.ndarray, swap_from: dict[str, np.ndarray] | None = None,
         swap: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Predictions restricted to `items`; where `swap` is set, take the other model's predictions."""
    if swap_from is None:
        return {key: value[items] for key, value in predictions.items()}
    mixed = {}
    for key, value in predictions.items():
        mask = swap.reshape(-1, *([1] * (value.ndim - 1)))
        mixed[key] = np.where(mask, swap_from[key], value)
    return mixed


def seed_mean_metric(task: Task, data: Any, runs: list[Scored], metric: str):
    """items -> the metric on those items, averaged over head seeds; None if the task cannot rescore."""
    if not runs[0].predictions or task.rescore(data, runs[0].predictions) is None:
        return None
    return lambda items: float(np.mean([task.rescore(data, take(r.predictions, items))[metric] for r in runs]))


def same_items(first: list[Scored], second: list[Scored]) -> bool:
    items = [r.predictions.get("item") for r in (*first, *second)]
    return all(i is not None and np.array_equal(i, items[0]) for i in items) and len(first) == len(second)


def compare_models(task: Task, data: Any, by_model: dict[str, list[Scored]], values: dict[str, float],
                   resamples: int) -> list[dict[str, Any]]:
    """The best model of one column against each other model on the same items: paired tests."""
    metric = task.primary_metric
    lower = metric in task.lower_is_better
    best = (min if lower else max)(values, key=values.get)
    out = []
    for other in values:
        a, b = by_model[best], by_model[other]
        score_a, score_b = seed_mean_metric(task, data, a, metric), seed_mean_metric(task, data, b, metric)
        if other == best or score_a is None or score_b is None or not same_items(a, b):
            continue
        n = a[0].n_items

        def swapped_difference(swap: np.ndarray) -> float:
            every = np.arange(n)
            left = [task.rescore(data, take(ra.predictions, every, rb.predictions, swap))[metric] for ra, rb in zip(a, b)]
            right = [task.rescore(data, take(rb.predictions, every, ra.predictions, swap))[metric] for ra, rb in zip(a, b)]
            return float(np.mean(left) - np.mean(right))

        paired = paired_bootstrap(score_a, score_b, n, resamples, BOOTSTRAP_SEED)
        entry = {"task": task.name, "direction": None, "metric": metric, "best": best, "other": other, **paired,
                 "p_permutation": paired_permutation_p(swapped_difference, n, resamples, BOOTSTRAP_SEED)}
        if {"y_true", "y_pred"} <= set(a[0].predictions) and a[0].predictions["y_pred"].ndim == 1:
            correct = [np.mean([r.predictions["y_pred"] == r.predictions["y_true"] for r in runs], 0) >= 0.5
                       for runs in (a, b)]
            entry["p_mcnemar"] = mcnemar_p(*correct)
        entry["significant"] = entry["p_permutation"] < SIGNIFICANCE
        out.append(entry)
    return out


# ------------------------------------------------------------------------------------------ meta


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "cmg_eval": __version__}
    for package in VERSIONED_PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def git_commit() -> str | None:
    """The commit of the cmg-eval source tree, '+dirty' when it has local changes."""
    source = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def model_meta(model: LoadedModel) -> dict[str, Any]:
    return {"label": model.label, "path": model.path, "sha256": model.sha256, "encoder": model.method,
            "readout": model.readout, "checkpoint_epoch": model.checkpoint_epoch,
            "modalities": list(model.encoder.modalities), "output_dim": model.encoder.output_dim(model.readout)}


# ------------------------------------------------------------------------------------------ running


def write_predictions(out: Path, predictions: dict[tuple[str, ...], dict[str, np.ndarray]]) -> None:
    for (label, task, direction, seed), arrays in predictions.items():
        path = out / "predictions" / label / task / f"{direction.replace('->', '_to_')}_seed{seed}.npz"

        def write(partial: Path, arrays=arrays) -> None:
            with open(partial, "wb") as handle:
                np.savez(handle, **arrays)

        atomic_write(path, write)


def run(config: RunConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Evaluate every checkpoint on every task; write the report, `results.json` last."""
    started, started_at = time.perf_counter(), datetime.now(timezone.utc).isoformat(timespec="seconds")
    if config.protocol not in PROTOCOLS:
        raise CmgError(f"unknown protocol {config.protocol!r} (known: {', '.join(PROTOCOLS)})")
    tasks = resolve_tasks(config.tasks)
    settings = resolve({name: task.defaults for name, task in tasks.items()}, config.assignments)
    n_seeds = config.seeds if config.seeds is not None else DEFAULT_SEEDS[config.protocol]
    if n_seeds < 1:
        raise CmgError(f"--seeds {n_seeds}: expected at least 1")
    seeds = [FIRST_SEED + i for i in range(n_seeds)]
    out = Path(config.out)
    (out / "results.json").unlink(missing_ok=True)  # a stale report must not pass for this run's
    models = load_models(config.checkpoints, config.encoder)
    datasets = {name: task.load(config.data_root) for name, task in tasks.items()}
    files = manifest([f for name, task in tasks.items() for f in task.files(datasets[name])], config.data_root)
    cache = EmbeddingCache(config.cache_dir)
    progress = progress or Progress(disable=True)

    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    predictions: dict[tuple[str, ...], dict[str, np.ndarray]] = {}
    embed_seconds = 0.0
    collected: dict[tuple[str, str, str], dict[str, list[Scored]]] = {}
    plan = [(m, name, s) for m in models for name, task in tasks.items() for s in task.sources()]
    jobs_per_source = {name: len(seeds) if task.seeded else 1 for name, task in tasks.items()}
    with progress if not progress.disable else nullcontext():
        overall = progress.add_task("evaluate", total=sum(jobs_per_source[name] for _, name, _ in plan))
        for model, name, source in plan:
            task = tasks[name]
            targets = task.targets(source)
            missing = [m for m in (source, *targets) if m not in model.encoder.modalities]
            for target in targets:
                if source in missing or target in missing:
                    skipped.append({"model": model.label, "task": name, "direction": direction_name(source, target),
                                    "reason": f"encoder {model.method!r} does not support "
                                              f"{', '.join(sorted(set(missing)))}"})
            targets = tuple(t for t in targets if t not in missing)
            if source in missing or not targets:
                progress.advance(overall, jobs_per_source[name])
                continue
            embedder = Embedder(model, cache, config.encode_batch, progress)
            runs: dict[str, list[Scored]] = {t: [] for t in targets}
            for seed in seeds if task.seeded else seeds[:1]:
                job = SourceRun(data=datasets[name], source=source, targets=targets, seed=seed,
                                protocol=config.protocol, settings=settings[name], embed=embedder,
                                checkpoint_epoch=model.checkpoint_epoch)
                bar = progress.add_task(f"{model.label} {name} {source} seed {seed}", total=task.epochs(job))
                job.on_epoch = lambda bar=bar: progress.advance(bar)
                for target, scored in task.run_source(job).items():
                    runs[target].append(scored)
                    predictions[(model.label, name, direction_name(source, target), str(seed))] = scored.predictions
                progress.remove_task(bar)
                progress.advance(overall)
            embed_seconds += embedder.seconds
            for target, scored_runs in runs.items():
                new_rows = result_rows(model, task, source, target, scored_runs, config.protocol)
                add_interval(new_rows, task, datasets[name], scored_runs, config.bootstrap)
                rows.extend(new_rows)
                collected.setdefault((name, source, target), {})[model.label] = scored_runs
        comparisons = []
        if config.bootstrap:
            for (name, source, target), by_model in collected.items():
                values = {r["model"]: r["value"] for r in rows if r["primary"] and r["task"] == name
                          and r["source"] == source and r["target"] == target}
                for entry in compare_models(tasks[name], datasets[name], by_model, values, config.bootstrap):
                    comparisons.append({**entry, "direction": direction_name(source, target)})

    meta = {
        "schema": SCHEMA,
        "started_at": started_at,
        "versions": versions(),
        "git_commit": git_commit(),
        "command": config.command,
        "protocol": config.protocol,
        "seeds": seeds,
        "settings": settings,
        "tasks": {name: {"version": task.version, "primary_metric": task.primary_metric,
                         "lower_is_better": list(task.lower_is_better),
                         "directions": [direction_name(s, t) for s, t in task.directions],
                         "about": task.about(datasets[name])}
                  for name, task in tasks.items()},
        "models": [model_meta(m) for m in models],
        "data": {"root": str(config.data_root), "manifest": files, "manifest_hash": manifest_hash(files)},
        "encode_mode": "eval",
        "bootstrap": {"resamples": config.bootstrap, "seed": BOOTSTRAP_SEED, "level": 0.95,
                      "significance": SIGNIFICANCE, "test": "paired permutation (swap per item)"},
        "skipped": skipped,
        "cache": {"dir": str(cache.root), "hits": cache.hits, "misses": cache.misses},
        "timings": {"total_s": round(time.perf_counter() - started, 3), "encode_s": round(embed_seconds, 3)},
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "torch_threads": torch.get_num_threads(),
    }
    document = {"meta": meta, "results": rows, "comparisons": comparisons}
    write_predictions(out, predictions)
    write_tables(out, document)
    write_json(out / "results.json", document)
    return document
