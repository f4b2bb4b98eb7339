"""Plan and run evaluations: models x tasks x source modalities x head seeds -> results document.

`run` executes the planned jobs (all of them, or one shard), keeps each finished job on disk,
and assembles the report from the finished jobs; `merge` assembles it from shards' jobs.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from cmg_eval import __version__, registry
from cmg_eval.cache import EmbeddingCache
from cmg_eval.codebook import codebook_report
from cmg_eval.compare import BOOTSTRAP_SEED, SIGNIFICANCE, add_interval, compare_models
from cmg_eval.data.manifest import manifest, manifest_hash
from cmg_eval.dropout import DropoutEncoding, check_dropout
from cmg_eval.embedder import Embedder, check_device
from cmg_eval.encoders.base import LoadedModel
from cmg_eval.encoders.loading import check_labels, load_model, parse_ckpt_spec
from cmg_eval.errors import CmgError
from cmg_eval.io import atomic_write, folder_name, writable_folder, write_json
from cmg_eval.jobs import Job, JobStore, fingerprint
from cmg_eval.provenance import git_commit, peak_rss_mib, versions
from cmg_eval.report import REPORT_FILES, write_tables
from cmg_eval.settings import HEAD_TRAINING, resolve
from cmg_eval.task import PROTOCOLS, Scored, SourceRun, Task, direction_name

SCHEMA = "cmg-eval/results/1"
FIRST_SEED = 43  # the reference seeds every downstream script with 43
DEFAULT_SEEDS = {"clean": 3, "paper": 1}


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
    directions: list[str] | None = None   # e.g. ["V->A", "A->V"]; None: every direction of each task
    allow_nonfinite: bool = False         # set non-finite input features to 0 instead of refusing them
    device: str = "cpu"                   # where encoders and heads run ("cuda": needs a GPU torch sees)
    command: list[str] = field(default_factory=lambda: list(sys.argv))

    def to_json(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunConfig":
        paths = {"data_root", "out", "cache_dir"}
        return cls(**{k: Path(v) if k in paths and v is not None else v for k, v in data.items()})


@dataclass
class Plan:
    """Everything decided before any job runs."""

    config: RunConfig
    tasks: dict[str, Task]
    datasets: dict[str, Any]
    settings: dict[str, dict[str, Any]]
    seeds: list[int]
    models: list[dict[str, Any]]
    jobs: list[Job]
    fingerprints: dict[str, str]
    skipped: list[dict[str, str]]
    files: dict[str, str]


# ------------------------------------------------------------------------------------------ planning


def resolve_tasks(names: list[str]) -> dict[str, Task]:
    """`all` or task names -> task instances (an unknown name is an error before any work)."""
    wanted = registry.tasks.names() if names == ["all"] else names
    return {name: registry.tasks.get(name)() for name in dict.fromkeys(wanted)}


def load_models(specs: list[str], encoder: str | None) -> list[LoadedModel]:
    """Every --ckpt's label checked (safe, distinct folders) before any checkpoint is read, then each loaded."""
    if not specs:
        raise CmgError("no --ckpt given: name at least one checkpoint")
    check_labels([parse_ckpt_spec(spec)[0] for spec in specs])
    return [load_model(spec, encoder) for spec in specs]


def model_meta(model: LoadedModel) -> dict[str, Any]:
    return {"label": model.label, "path": model.path, "sha256": model.sha256, "encoder": model.method,
            "readout": model.readout, "identity": model.identity, "checkpoint_epoch": model.checkpoint_epoch,
            "modalities": list(model.encoder.modalities), "output_dim": model.encoder.output_dim(model.readout)}


def check_directions(wanted: list[str] | None, tasks: dict[str, Task]) -> None:
    known = {direction_name(s, t) for task in tasks.values() for s, t in task.directions}
    unknown = [d for d in wanted or [] if d not in known]
    if unknown:
        raise CmgError(f"--directions: unknown direction {unknown[0]!r} for these tasks (known: {', '.join(sorted(known))})")


def plan_jobs(models: list[dict[str, Any]], tasks: dict[str, Task], seeds: list[int],
              directions: list[str] | None = None) -> tuple[list[Job], list[dict]]:
    """Jobs in a fixed order (model, task, source, seed) and the directions an encoder cannot run."""
    jobs, skipped = [], []
    for model in models:
        for name, task in tasks.items():
            for source in task.sources():
                targets = tuple(t for t in task.targets(source)
                                if directions is None or direction_name(source, t) in directions)
                if not targets:
                    continue
                missing = sorted({m for m in (source, *targets) if m not in model["modalities"]})
                for target in targets:
                    if source in missing or target in missing:
                        skipped.append({"model": model["label"], "task": name,
                                        "direction": direction_name(source, target),
                                        "reason": f"encoder {model['encoder']!r} does not support {', '.join(missing)}"})
                runnable = tuple(t for t in targets if t not in missing)
                if source in missing or not runnable:
                    continue
                jobs += [Job(model["label"], name, source, runnable, seed) for seed in (seeds if task.seeded else seeds[:1])]
    return jobs, skipped


def job_fingerprints(plan_parts: dict[str, Any], jobs: list[Job]) -> dict[str, str]:
    models = {m["label"]: m["identity"] for m in plan_parts["models"]}
    return {job.id: fingerprint({"model": models[job.model], "task": job.task,
                                 "task_version": plan_parts["tasks"][job.task].version,
                                 "settings": plan_parts["settings"][job.task], "protocol": plan_parts["protocol"],
                                 "data": plan_parts["data_hash"], "source": job.source, "targets": job.targets,
                                 "seed": job.seed, "allow_nonfinite": plan_parts["allow_nonfinite"],
                                 "cmg_eval": __version__,
                                 # GPU results are their own jobs; CPU fingerprints are as before devices existed
                                 **({} if plan_parts.get("device", "cpu") == "cpu" else {"device": plan_parts["device"]})})
            for job in jobs}


def make_plan(config: RunConfig, models: list[dict[str, Any]] | None = None) -> tuple[Plan, list[LoadedModel]]:
    """Validate the request, load models and data, and list the jobs."""
    if config.protocol not in PROTOCOLS:
        raise CmgError(f"unknown protocol {config.protocol!r} (known: {', '.join(PROTOCOLS)})")
    tasks = resolve_tasks(config.tasks)
    settings = resolve({name: task.defaults for name, task in tasks.items()}, config.assignments, HEAD_TRAINING)
    n_seeds = config.seeds if config.seeds is not None else DEFAULT_SEEDS[config.protocol]
    if n_seeds < 1:
        raise CmgError(f"--seeds {n_seeds}: expected at least 1")
    seeds = [FIRST_SEED + i for i in range(n_seeds)]
    loaded = [] if models is not None else load_models(config.checkpoints, config.encoder)
    models = models if models is not None else [model_meta(m) for m in loaded]
    check_labels([m["label"] for m in models], "models")
    datasets = {name: task.load(config.data_root) for name, task in tasks.items()}
    files = manifest([f for name, task in tasks.items() for f in task.files(datasets[name])], config.data_root)
    check_directions(config.directions, tasks)
    check_encode_mode(config.protocol, settings)
    jobs, skipped = plan_jobs(models, tasks, seeds, config.directions)
    fingerprints = job_fingerprints({"models": models, "tasks": tasks, "settings": settings,
                                     "protocol": config.protocol, "data_hash": manifest_hash(files),
                                     "allow_nonfinite": config.allow_nonfinite, "device": config.device}, jobs)
    return Plan(config, tasks, datasets, settings, seeds, models, jobs, fingerprints, skipped, files), loaded


def encode_modes(settings: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Task -> how its training embeddings were encoded ("eval": cached, eval mode; "train": dropout active)."""
    return {name: values.get("encode_mode", "eval") for name, values in settings.items()}


def check_encode_mode(protocol: str, settings: dict[str, dict[str, Any]]) -> None:
    train = [name for name, mode in encode_modes(settings).items() if mode == "train"]
    if train and protocol != "paper":
        raise CmgError(f"--set encode_mode=train ({', '.join(train)}): a setting of the paper protocol (the "
                       f"{protocol} protocol trains on cached eval-mode embeddings); add --protocol paper")


def shard(jobs: list[Job], index: int, count: int) -> list[Job]:
    """Every count-th job starting at index: shards of similar size and mix."""
    if count < 1 or not 0 <= index < count:
        raise CmgError(f"--shard {index}/{count}: expected 0 <= I < N")
    return jobs[index::count]


# ------------------------------------------------------------------------------------------ running


def execute(plan: Plan, loaded: list[LoadedModel], jobs: list[Job], store: JobStore, cache: EmbeddingCache,
            progress: Progress) -> dict[str, float]:
    """Run the jobs not already finished under the same fingerprint; each result is kept on disk."""
    models = {m.label: m for m in loaded}
    embedders: dict[str, Embedder] = {}
    done = sum(store.load(job, plan.fingerprints[job.id]) is not None for job in jobs)
    overall = progress.add_task("evaluate", total=len(jobs), completed=done)
    for job in jobs:
        if store.load(job, plan.fingerprints[job.id]) is not None:
            continue
        started = time.perf_counter()
        model, task = models[job.model], plan.tasks[job.task]
        embedder = embedders.setdefault(job.model, Embedder(model, cache, plan.config.encode_batch, progress,
                                                            plan.config.allow_nonfinite, plan.config.device))
        encode_train = DropoutEncoding(embedder) if plan.settings[job.task].get("encode_mode") == "train" else None
        source_run = SourceRun(data=plan.datasets[job.task], source=job.source, targets=job.targets, seed=job.seed,
                               protocol=plan.config.protocol, settings=plan.settings[job.task], embed=embedder,
                               checkpoint_epoch=model.checkpoint_epoch, device=plan.config.device,
                               strict=not plan.config.allow_nonfinite, encode_train=encode_train)
        bar = progress.add_task(f"{job.model} {job.task} {job.source} seed {job.seed}", total=task.epochs(source_run))
        source_run.on_epoch = lambda bar=bar: progress.advance(bar)
        scored = task.run_source(source_run)
        store.save(job, plan.fingerprints[job.id], scored, time.perf_counter() - started)
        progress.remove_task(bar)
        progress.advance(overall)
    masked = {f"{label}:{key}": n for label, e in embedders.items() for key, n in e.masked.items()}
    return {"encode_s": round(sum(e.seconds for e in embedders.values()), 3), "resumed_jobs": done,
            "nonfinite_masked_items": masked}


def collect(plan: Plan, store: JobStore) -> tuple[dict[tuple[str, str, str, str], list[Scored]], float]:
    """(model, task, source, target) -> per-seed scores of every planned job; all must be finished."""
    collected: dict[tuple[str, str, str, str], list[Scored]] = {}
    missing, seconds = [], 0.0
    for job in plan.jobs:
        found = store.load(job, plan.fingerprints[job.id])
        if found is None:
            missing.append(job.id)
            continue
        scored, job_seconds = found
        seconds += job_seconds
        for target in job.targets:
            collected.setdefault((job.model, job.task, job.source, target), []).append(scored[target])
    if missing:
        raise CmgError(f"{store.root}: {len(missing)} of {len(plan.jobs)} jobs not finished (e.g. {missing[0]}); "
                       f"run the missing shards first")
    return collected, seconds


def result_rows(plan: Plan, key: tuple[str, str, str, str], runs: list[Scored]) -> list[dict[str, Any]]:
    model, name, source, target = key
    task = plan.tasks[name]
    readout = next(m["readout"] for m in plan.models if m["label"] == model)
    rows = []
    for metric in task.metrics:
        per_seed = [float(run.metrics[metric]) for run in runs]
        values = np.asarray(per_seed)
        rows.append({"model": model, "task": name, "source": source, "target": target,
                     "direction": direction_name(source, target), "metric": metric, "value": float(values.mean()),
                     "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0, "n_seeds": len(runs),
                     "n_items": runs[0].n_items, "primary": metric == task.primary_metric,
                     "lower_is_better": metric in task.lower_is_better, "readout": readout,
                     "protocol": plan.config.protocol, "per_seed": per_seed})
    add_interval(rows, task, plan.datasets[name], runs, plan.config.bootstrap)
    return rows


def comparisons(plan: Plan, collected: dict[tuple[str, str, str, str], list[Scored]],
                rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Paired tests of each column's best model against the others."""
    if not plan.config.bootstrap:
        return []
    columns: dict[tuple[str, str, str], dict[str, list[Scored]]] = {}
    for (model, name, source, target), runs in collected.items():
        columns.setdefault((name, source, target), {})[model] = runs
    out = []
    for (name, source, target), by_model in columns.items():
        values = {r["model"]: r["value"] for r in rows if r["primary"] and r["task"] == name
                  and r["source"] == source and r["target"] == target}
        for entry in compare_models(plan.tasks[name], plan.datasets[name], by_model, values, plan.config.bootstrap):
            out.append({**entry, "direction": direction_name(source, target)})
    return out


def refuse_foreign_results(out: Path, plan: Plan) -> None:
    """OUT/jobs and OUT/predictions may hold only this plan's models and their tasks: another run's folders would
    sit beside this report. They are refused (naming the folder), never deleted: they may be hours of work."""
    planned: dict[str, set[str]] = {folder_name(m["label"]): set() for m in plan.models}
    for job in plan.jobs:
        planned[folder_name(job.model)].add(folder_name(job.task))

    def foreign(folder: Path, wanted: set[str]) -> list[Path]:
        entries = sorted(folder.iterdir()) if folder.is_dir() else []
        return [entry for entry in entries if not entry.name.startswith(".") and entry.name not in wanted]

    for part in ("jobs", "predictions"):
        extra = foreign(out / part, set(planned))
        extra += [task for model, tasks in planned.items() for task in foreign(out / part / model, tasks)]
        if extra:
            raise CmgError(f"{extra[0]}: results of another run (a model or task this run does not ask for); "
                           f"ask for it again, choose another --out, or remove the folder")


def write_predictions(out: Path, collected: dict[tuple[str, str, str, str], list[Scored]], plan: Plan) -> None:
    """Per-item predictions of every row and seed; files of an earlier report in these folders (other seeds or
    directions) are removed, since each report writes predictions/ anew from the jobs."""
    seeds_of = {name: plan.seeds if task.seeded else plan.seeds[:1] for name, task in plan.tasks.items()}
    written: set[Path] = set()
    for (model, name, source, target), runs in collected.items():
        for seed, scored in zip(seeds_of[name], runs):
            file = f"{direction_name(source, target).replace('->', '_to_')}_seed{seed}.npz"
            path = out / "predictions" / folder_name(model) / folder_name(name) / file

            def write(partial: Path, arrays=scored.predictions or {}) -> None:
                with open(partial, "wb") as handle:
                    np.savez(handle, **arrays)

            written.add(atomic_write(path, write))
    for folder in {path.parent for path in written}:
        for stale in set(folder.glob("*_to_*_seed*.npz")) - written:
            stale.unlink()


def assemble(plan: Plan, store: JobStore, extra_meta: dict[str, Any]) -> dict[str, Any]:
    """The results document from the finished jobs: predictions, then results.json, then the report files (a
    renderer that fails is named in a one-line error, results.json stays)."""
    collected, job_seconds = collect(plan, store)
    rows = [row for key, runs in collected.items() for row in result_rows(plan, key, runs)]
    config = plan.config
    meta = {
        "schema": SCHEMA,
        "versions": versions(),
        "git_commit": git_commit(),
        "command": config.command,
        "protocol": config.protocol,
        "seeds": plan.seeds,
        "settings": plan.settings,
        "tasks": {name: {**task.meta.to_json(), "about": task.about(plan.datasets[name])}
                  for name, task in plan.tasks.items()},
        "models": plan.models,
        "data": {"root": str(config.data_root), "manifest": plan.files, "manifest_hash": manifest_hash(plan.files),
                 # per task: what the files do that is accepted but worth knowing (label-map differences, ...)
                 "notes": {name: task.data_notes(plan.datasets[name]) for name, task in plan.tasks.items()}},
        "encode_mode": encode_modes(plan.settings),   # per task: "eval" (cached) or "train" (dropout, per epoch)
        "allow_nonfinite": config.allow_nonfinite,
        "device": config.device,            # where encoders and heads ran (cpu or cuda)
        "bootstrap": {"resamples": config.bootstrap, "seed": BOOTSTRAP_SEED, "level": 0.95,
                      "significance": SIGNIFICANCE, "test": "paired permutation (swap per item)"},
        "skipped": plan.skipped,
        "jobs": {"count": len(plan.jobs), "seconds": round(job_seconds, 3)},
        "torch_threads": torch.get_num_threads(),
        **extra_meta,
    }
    document = {"meta": meta, "results": rows, "comparisons": comparisons(plan, collected, rows)}
    out = Path(config.out)
    write_predictions(out, collected, plan)
    write_json(out / "results.json", document)
    write_tables(out, document)
    return document


def write_plan(plan: Plan, codebook: dict[str, Any]) -> None:
    """`OUT/plan.json`: what `merge` needs to assemble shards without loading checkpoints."""
    write_json(Path(plan.config.out) / "plan.json", {"config": plan.config.to_json(), "models": plan.models,
                                                     "jobs": [j.id for j in plan.jobs], "codebook": codebook})


def run(config: RunConfig, progress: Progress | None = None, shard_index: int = 0,
        shard_count: int = 1) -> dict[str, Any] | None:
    """Evaluate every checkpoint on every task (or one shard of the jobs); None for a shard."""
    started, started_at = time.perf_counter(), datetime.now(timezone.utc).isoformat(timespec="seconds")
    out = writable_folder(config.out, "--out")
    cache = EmbeddingCache(config.cache_dir)
    writable_folder(cache.root, "--cache-dir")
    for name in ("results.json", *REPORT_FILES):  # a stale report must not pass for this run's
        (out / name).unlink(missing_ok=True)
    check_device(config.device)
    plan, loaded = make_plan(config)
    if "train" in encode_modes(plan.settings).values():
        for model in loaded:   # an encoder without dropout is refused before any job runs
            check_dropout(model)
    refuse_foreign_results(out, plan)
    mine = shard(plan.jobs, shard_index, shard_count)
    codebook = codebook_report(loaded, config.data_root)
    write_plan(plan, codebook)
    store = JobStore(out)
    progress = progress or Progress(disable=True)
    with progress if not progress.disable else nullcontext():
        executed = execute(plan, loaded, mine, store, cache, progress)
    if shard_count > 1:
        return None
    masked = executed.pop("nonfinite_masked_items")
    return assemble(plan, store, {
        "codebook": codebook,
        "nonfinite_masked_items": masked,
        "started_at": started_at,
        "cache": {"dir": str(cache.root), "hits": cache.hits, "misses": cache.misses},
        "timings": {"total_s": round(time.perf_counter() - started, 3), **executed},
        "peak_rss_mib": round(peak_rss_mib(), 1),
    })


def merge(out: Path) -> dict[str, Any]:
    """Assemble the report of a sharded run from its `plan.json` and finished jobs."""
    started = time.perf_counter()
    path = Path(out) / "plan.json"
    try:
        saved = json.loads(path.read_text())
    except FileNotFoundError:
        raise CmgError(f"{path}: missing (expected the plan written by `cmg-eval run --shard`)") from None
    except json.JSONDecodeError as error:
        raise CmgError(f"{path}: not valid JSON ({error})") from None
    config = RunConfig.from_json({**saved["config"], "out": str(out)})
    plan, _ = make_plan(config, models=saved["models"])
    if [j.id for j in plan.jobs] != saved["jobs"]:
        raise CmgError(f"{path}: the tasks or data changed since the shards ran (job list differs)")
    return assemble(plan, JobStore(out), {"codebook": saved.get("codebook", {}), "merged": True,
                                          "timings": {"total_s": round(time.perf_counter() - started, 3)},
                                          "peak_rss_mib": round(peak_rss_mib(), 1)})
