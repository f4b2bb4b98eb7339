"""The `cmg-eval` command line: each subcommand parses its options and calls one function."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from cmg_eval import registry
from cmg_eval.cache import default_cache_dir
from cmg_eval.errors import CmgError

# Printed strings are never rich markup (paths, labels and messages hold user text); styles are Text objects.
console = Console(markup=False)
err_console = Console(stderr=True, markup=False)


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err_console, transient=True)


class Cli(click.Group):
    """Turns a CmgError (or an OSError no reader named) into `Error: <one line>` and exit status 1, never a
    traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CmgError as error:
            raise click.ClickException(str(error)) from None
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            raise click.ClickException(str(CmgError(f"{where}{error.strerror or error}"))) from None


@click.group(cls=Cli)
@click.version_option(package_name="cmg-eval")
def main() -> None:
    """Cross-modal generalization evaluation of unified audio / video / text encoders."""


# ------------------------------------------------------------------------------------------ data


@main.group()
def data() -> None:
    """Synthetic benchmark and data checks."""


@data.command("synth")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder to write every task's data into.")
@click.option("--size", type=click.Choice(["tiny", "small", "full"]), default="tiny", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def data_synth(out: Path, size: str, seed: int) -> None:
    """Write the synthetic benchmark in the release formats, plus oracle.pt."""
    from cmg_eval.data.synth import synthesize, writers

    steps = [*writers(), "oracle"]
    with progress_bar() as progress:
        bar = progress.add_task("synthesize", total=len(steps))
        synthesize(out, size, seed, progress=lambda name: progress.update(
            bar, completed=steps.index(name), description=f"synthesize {name} ({size})"))
        progress.update(bar, completed=len(steps))
    console.print(f"wrote the {size} synthetic benchmark (seed {seed}) and oracle.pt to {out}")


def default_data_root(cache_dir: Path | None) -> Path:
    """The built-in synthetic benchmark, generated on first use into the cache folder."""
    from cmg_eval.data.synth import synthesize

    root = (cache_dir or default_cache_dir()) / "synthetic" / "small-seed0"
    if not (root / "synth.json").is_file():
        err_console.print(f"generating the built-in synthetic benchmark into {root} (first use)")
        synthesize(root, "small", 0)
    return root


@main.command("validate")
@click.option("--data-root", type=click.Path(path_type=Path), required=True)
@click.option("--quick", is_flag=True, help="Decode only the first feature file of each stream.")
@click.argument("task_names", nargs=-1)
def validate(data_root: Path, quick: bool, task_names: tuple[str, ...]) -> None:
    """Check each task's files under DATA_ROOT and decode every feature file a run would read; list every
    refused file and every warning, exit 1 if anything is refused."""
    from cmg_eval.data.decode import problem

    tasks = {name: registry.tasks.get(name)() for name in task_names or registry.tasks.names()}
    failed, outcome = 0, {}  # (file, read) -> problem or None, so tasks sharing files decode them once
    for name, task in tasks.items():
        try:
            data = task.load(data_root)
        except CmgError as error:
            failed += 1
            console.print(Text.assemble(f"{name}: ", (str(error), "red")), soft_wrap=True)
            continue
        notes = task.data_notes(data)
        for warning in notes.get("warnings", []):
            console.print(Text.assemble(f"{name}: ", ("warning", "yellow"), f": {warning}"), soft_wrap=True)
        for key, value in notes.items():
            if key != "warnings" and (any(value.values()) if isinstance(value, dict) else value):
                console.print(Text(f"{name}: note: {key} {value}"), soft_wrap=True)
        units = [u for reader in task.feature_readers(data) for u in reader.units(quick)]
        with progress_bar() as progress:
            bar = progress.add_task(f"{name}: decode feature files", total=len(units))
            for unit in units:
                if (unit.file, unit.what) not in outcome:
                    outcome[unit.file, unit.what] = problem(unit)
                progress.advance(bar)
        refused = [outcome[u.file, u.what] for u in units if outcome[u.file, u.what]]
        for line in refused:
            console.print(Text.assemble(f"{name}: ", (line, "red")), soft_wrap=True)
        files = len({u.file for u in units})
        if refused:
            failed += 1
            console.print(f"{name}: {len(refused)} of {len(units)} feature reads refused ({files} files"
                          f"{', --quick' if quick else ''})")
        else:
            console.print(f"{name}: ok, {files} feature files decoded{' (--quick)' if quick else ''}")
    if failed:
        err_console.print(f"validate: {failed} of {len(tasks)} tasks have missing, malformed or unreadable files")
        sys.exit(1)


# ------------------------------------------------------------------------------------------ models


@main.command("ls")
@click.argument("what", type=click.Choice(["tasks", "encoders", "methods"]), required=False)
def list_registered(what: str | None) -> None:
    """List registered tasks, encoders and pretraining methods."""
    if what in (None, "tasks"):
        table = Table(title="tasks")
        for column in ("name", "version", "primary metric", "directions", "in average"):
            table.add_column(column)
        metas = [registry.tasks.get(name).meta for name in registry.tasks.names()]
        for meta in metas:
            table.add_row(meta.name, meta.version, meta.primary_metric, ", ".join(meta.to_json()["directions"]),
                          "yes" if meta.in_average else "no")
        console.print(table)
        for meta in metas:
            console.print(f"{meta.name}: {meta.reference}", markup=False, highlight=False)
    if what in (None, "encoders"):
        table = Table(title="encoders")
        table.add_column("name")
        table.add_column("readouts")
        for name in registry.encoders.names():
            table.add_row(name, ", ".join(registry.encoders.get(name).readouts))
        console.print(table)
    if what in (None, "methods"):
        table = Table(title="pretraining methods (cmg-eval pretrain)")
        table.add_column("name")
        table.add_column("about")
        for name in registry.methods.names():
            table.add_row(name, (registry.methods.get(name).__doc__ or "").strip().splitlines()[0])
        console.print(table)


@main.command("check-model")
@click.option("--ckpt", required=True, help="Checkpoint file.")
@click.option("--encoder", default=None, help="Encoder name or package.module:factory.")
def check_model_command(ckpt: str, encoder: str | None) -> None:
    """Validate an encoder against the contract on generated inputs; exit 1 on a failed check."""
    from cmg_eval.encoders.base import check_model
    from cmg_eval.encoders.loading import load_model

    model = load_model(ckpt, encoder)
    results = check_model(model.encoder)
    table = Table(title=f"check-model {model.label} ({model.method})")
    for column in ("check", "modality@readout", "verdict", "detail"):
        table.add_column(column)
    for result in results:
        table.add_row(result.check, result.modality, Text("pass", "green") if result.ok else Text("FAIL", "red"),
                      result.detail)
    console.print(table)
    failed = sorted({r.check for r in results if not r.ok})
    if failed:
        err_console.print(f"check-model: FAILED {', '.join(failed)}")
        sys.exit(1)
    console.print(f"check-model: all {len(results)} checks passed")


@main.group()
def ckpt() -> None:
    """Checkpoint utilities."""


@ckpt.command("init")
@click.argument("encoder")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--seed", type=int, default=0, show_default=True)
def ckpt_init(encoder: str, out: Path, seed: int) -> None:
    """Write a random-init checkpoint of ENCODER in its public layout (the random-encoder floor)."""
    from cmg_eval.io import save_checkpoint

    family = registry.encoders.get(encoder)
    if not hasattr(family, "init_checkpoint"):
        raise CmgError(f"encoder {encoder!r} has no random-init checkpoint")
    save_checkpoint(family.init_checkpoint(seed), out)
    console.print(f"wrote random-init {encoder} checkpoint (seed {seed}) to {out}")


@main.command("embed")
@click.option("--ckpt", "ckpt_path", required=True)
@click.option("--modality", type=click.Choice(["video", "audio", "text"]), required=True)
@click.option("--in", "inputs", type=click.Path(path_type=Path), required=True, help="npz keyed by modality.")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--readout", default=None)
@click.option("--encoder", default=None)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Where the encoder runs; the outputs are written the same way.")
def embed(ckpt_path: str, modality: str, inputs: Path, out: Path, readout: str | None, encoder: str | None,
          device: str) -> None:
    """Write an encoder's outputs (vq, pre_vq, indices) for given inputs to an npz."""
    import dataclasses

    from cmg_eval.embed import embed_arrays, read_inputs, write_outputs
    from cmg_eval.embedder import DeviceEncoder, check_device
    from cmg_eval.encoders.loading import load_model

    check_device(device)
    spec = f"@{readout}={ckpt_path}" if readout else ckpt_path
    model = load_model(spec, encoder)
    if device != "cpu":
        model = dataclasses.replace(model, encoder=DeviceEncoder(model.encoder, device))
    outputs = embed_arrays(model, modality, read_inputs(inputs, modality))
    write_outputs(out, outputs)
    console.print(f"wrote {', '.join(f'{k} {tuple(v.shape)}' for k, v in outputs.items())} to {out}")


# ------------------------------------------------------------------------------------------ runs


@main.command("run")
@click.argument("tasks")
@click.option("--ckpt", "checkpoints", multiple=True, required=True, help="[LABEL[@READOUT]=]PATH, repeatable.")
@click.option("--encoder", default=None, help="Encoder name or package.module:factory for checkpoints without 'method'.")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="Dataset folder (default: the built-in synthetic benchmark).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("cmg-eval-runs/latest"), show_default=True)
@click.option("--protocol", type=click.Choice(["clean", "paper"]), default="clean", show_default=True)
@click.option("--seeds", type=int, default=None, help="Head seeds (default: 3 clean, 1 paper).")
@click.option("--set", "assignments", multiple=True, help="KEY=VALUE or TASK.KEY=VALUE, repeatable.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="Embedding cache folder.")
@click.option("--bootstrap", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Item resamples for 95% intervals and paired tests (0: none).")
@click.option("--shard", "shard_spec", default=None,
              help="I/N: run every N-th job from the I-th (default: SLURM array or RANK/WORLD_SIZE, else 0/1).")
@click.option("--directions", default=None, help="Only these directions, e.g. V->A,A->V.")
@click.option("--allow-nonfinite", is_flag=True, help="Set NaN/inf input features to 0 (counted in the report).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Where encoders and heads run (cuda: a GPU torch sees); embeddings are cached on the CPU.")
def run_command(tasks: str, checkpoints: tuple[str, ...], encoder: str | None, data_root: Path | None, out: Path,
                protocol: str, seeds: int | None, assignments: tuple[str, ...], cache_dir: Path | None,
                bootstrap: int, shard_spec: str | None, directions: str | None, allow_nonfinite: bool,
                device: str) -> None:
    """Evaluate checkpoints on TASKS (comma-separated names or `all`)."""
    from cmg_eval.embedder import check_device
    from cmg_eval.runner import run

    check_device(device)  # before anything is loaded or generated
    config = run_config(tasks, checkpoints, encoder, data_root, out, protocol, seeds, assignments, cache_dir,
                        bootstrap)
    config.directions = [d.strip() for d in directions.split(",") if d.strip()] if directions else None
    config.allow_nonfinite = allow_nonfinite
    config.device = device
    index, count = parse_shard(shard_spec)
    document = run(config, progress_bar(), index, count)
    if document is None:
        console.print(f"shard {index}/{count} done; when every shard is done: cmg-eval merge {out}")
        return
    show_run(document, out)


def run_config(tasks: str, checkpoints: tuple[str, ...], encoder: str | None, data_root: Path | None, out: Path,
               protocol: str, seeds: int | None, assignments: tuple[str, ...], cache_dir: Path | None,
               bootstrap: int = 1000):
    from cmg_eval.runner import RunConfig

    return RunConfig(tasks=[t.strip() for t in tasks.split(",") if t.strip()], checkpoints=list(checkpoints),
                     data_root=data_root or default_data_root(cache_dir), out=out, encoder=encoder,
                     protocol=protocol, seeds=seeds, assignments=list(assignments), cache_dir=cache_dir,
                     bootstrap=bootstrap)


def parse_shard(spec: str | None) -> tuple[int, int]:
    """`I/N`, else a SLURM job array, else torchrun's RANK/WORLD_SIZE, else the whole run."""
    import os

    if spec is None:
        env = os.environ
        if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
            first = int(env.get("SLURM_ARRAY_TASK_MIN", 0))
            return int(env["SLURM_ARRAY_TASK_ID"]) - first, int(env["SLURM_ARRAY_TASK_COUNT"])
        if "RANK" in env and "WORLD_SIZE" in env:
            return int(env["RANK"]), int(env["WORLD_SIZE"])
        return 0, 1
    index, sep, count = spec.partition("/")
    if not sep or not index.isdigit() or not count.isdigit():
        raise CmgError(f"--shard {spec}: expected I/N, e.g. 0/4")
    return int(index), int(count)


def show_run(document: dict, out: Path) -> None:
    from cmg_eval.report import rich_table

    console.print(rich_table(document))
    for skip in document["meta"]["skipped"]:
        console.print(f"skipped {skip['model']} {skip['task']} {skip['direction']}: {skip['reason']}")
    console.print(f"report: {out / 'results.json'} (tables: table.md, table.csv, table.tex; page: index.html)")


@main.command("bench")
@click.option("--data-root", type=click.Path(path_type=Path), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="JSON file for the measurements.")
@click.option("--ckpt", "ckpt_path", default=None, help="DCID-layout checkpoint (default: a random-init DCID).")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
def bench_command(data_root: Path, out: Path, ckpt_path: str | None, epochs: int) -> None:
    """Time cmg-eval's paper protocol against the pinned reference-style loop (AVE and AVVP)."""
    import json
    import tempfile

    from cmg_eval.bench import run_bench
    from cmg_eval.encoders.dcid import DcidEncoder
    from cmg_eval.encoders.loading import load_model
    from cmg_eval.io import save_checkpoint, write_json

    with tempfile.TemporaryDirectory() as scratch:
        if ckpt_path is None:
            ckpt_path = str(Path(scratch) / "random-dcid.pt")
            save_checkpoint(DcidEncoder.init_checkpoint(seed=0), ckpt_path)
        model = load_model(ckpt_path)
        result = run_bench(data_root, model, epochs, log=lambda line: err_console.print(line))
    write_json(out, result)
    console.print_json(json.dumps(result))


@main.command("merge")
@click.argument("out", type=click.Path(path_type=Path))
def merge_command(out: Path) -> None:
    """Join the finished shards of a run in OUT into one report."""
    from cmg_eval.runner import merge

    show_run(merge(out), out)


@main.command("plan")
@click.argument("tasks")
@click.option("--ckpt", "checkpoints", multiple=True, required=True)
@click.option("--encoder", default=None)
@click.option("--data-root", type=click.Path(path_type=Path), default=None)
@click.option("--out", type=click.Path(path_type=Path), default=Path("cmg-eval-runs/latest"), show_default=True)
@click.option("--protocol", type=click.Choice(["clean", "paper"]), default="clean", show_default=True)
@click.option("--seeds", type=int, default=None)
@click.option("--set", "assignments", multiple=True)
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None)
@click.option("--shards", type=click.IntRange(min=1), default=1, show_default=True, help="Show the split into N shards.")
def plan_command(tasks: str, checkpoints: tuple[str, ...], encoder: str | None, data_root: Path | None, out: Path,
                 protocol: str, seeds: int | None, assignments: tuple[str, ...], cache_dir: Path | None,
                 shards: int) -> None:
    """List the jobs a run would execute, which are already done in OUT, and a time estimate."""
    from cmg_eval.jobs import JobStore
    from cmg_eval.runner import make_plan

    plan, _ = make_plan(run_config(tasks, checkpoints, encoder, data_root, out, protocol, seeds, assignments,
                                   cache_dir))
    store = JobStore(out)
    found = {job.id: store.load(job, plan.fingerprints[job.id]) for job in plan.jobs}
    timed: dict[str, list[float]] = {}
    for job in plan.jobs:
        if found[job.id] is not None:
            timed.setdefault(job.task, []).append(found[job.id][1])
    table = Table(title=f"{len(plan.jobs)} jobs in {shards} shard(s)")
    for column in ("job", "targets", "shard", "status", "estimate s"):
        table.add_column(column)
    for i, job in enumerate(plan.jobs):
        known = timed.get(job.task)
        estimate = "-" if found[job.id] else (f"{sum(known) / len(known):.1f}" if known else "?")
        table.add_row(job.id, ",".join(job.targets), str(i % shards), "done" if found[job.id] else "pending", estimate)
    console.print(table)
    for skip in plan.skipped:
        console.print(f"skipped {skip['model']} {skip['task']} {skip['direction']}: {skip['reason']}")


def read_results(path: Path) -> dict:
    """A results.json document, checked for its two required parts."""
    import json

    if not path.is_file():
        raise CmgError(f"{path}: missing (expected a results.json of a finished run)")
    try:
        document = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CmgError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(document, dict) or not {"meta", "results"} <= set(document):
        raise CmgError(f"{path}: not a cmg-eval results document (expected 'meta' and 'results')")
    return document


@main.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path))
def report_command(run_dir: Path) -> None:
    """Re-render every report file of a finished run from results.json and its saved predictions."""
    from cmg_eval.report import rich_table, write_tables

    document = read_results(run_dir / "results.json")
    write_tables(run_dir, document)
    console.print(rich_table(document))
    console.print(f"wrote table.md, table.csv, table.tex and index.html in {run_dir}")


@main.command("compare")
@click.argument("baseline", type=click.Path(path_type=Path))
@click.argument("current", type=click.Path(path_type=Path))
@click.option("--k", "k", type=float, default=3.0, show_default=True, help="Allowed drop in units of the row's std.")
@click.option("--floor", type=float, default=1.0, show_default=True, help="Smallest allowed drop (metric units).")
@click.option("--allow-missing", is_flag=True, help="Rows present on one side only do not fail the gate.")
@click.option("--metric", default=None, help="Gate on this metric instead of each task's primary one.")
def compare_command(baseline: Path, current: Path, k: float, floor: float, allow_missing: bool,
                    metric: str | None) -> None:
    """Regression gate: exit 1 when a primary metric drops by more than max(k x std, floor)."""
    from cmg_eval.compare import gate

    rows = gate(read_results(baseline), read_results(current), k, floor, metric, names=(str(baseline), str(current)))
    table = Table(title=f"compare (allowed drop = max({k:g} x std, {floor:g}))")
    for column in ("model", "task", "direction", "metric", "baseline", "current", "difference", "allowed", "verdict"):
        table.add_column(column, justify="right" if column in ("baseline", "current", "difference", "allowed") else "left")
    show = lambda v: "missing" if v is None else f"{v:.2f}"  # noqa: E731
    for row in rows:
        failed = row.failed(allow_missing)
        diff = None if row.drop is None else -row.drop
        verdict = Text("FAIL", "red") if failed else \
            (Text("missing", "yellow") if row.drop is None else Text("ok", "green"))
        shown_diff = "missing" if diff is None else f"{diff + 0.0:+.2f}"
        table.add_row(*row.key, show(row.baseline), show(row.current), shown_diff, f"{row.allowed:.2f}",
                      verdict)
    console.print(table)
    failing = [row for row in rows if row.failed(allow_missing)]
    if failing:
        for row in failing:
            err_console.print(f"compare: FAIL {' '.join(row.key)}: {row.reason()}", soft_wrap=True)
        names = ", ".join(" ".join(row.key[:3]) for row in failing[:5]) + (" ..." if len(failing) > 5 else "")
        err_console.print(f"compare: {len(failing)} of {len(rows)} rows regressed or are missing: {names}",
                          soft_wrap=True)
        sys.exit(1)
    console.print(f"compare: all {len(rows)} rows within the allowed noise")


# ------------------------------------------------------------------------------------------ pretraining


@main.command("pretrain")
@click.argument("method")
@click.option("--data-root", type=click.Path(path_type=Path), required=True,
              help="Folder holding vggsound40k/ (VGGSound-AVEL40k in its release layout).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Checkpoint file; resumed if it exists.")
@click.option("--preset", type=click.Choice(["tiny", "paper"]), default="tiny", show_default=True)
@click.option("--set", "assignments", multiple=True, help="KEY=VALUE over the preset's settings, repeatable.")
def pretrain_command(method: str, data_root: Path, out: Path, preset: str, assignments: tuple[str, ...]) -> None:
    """Pretrain METHOD (see `cmg-eval ls methods`) on VGGSound-AVEL40k into a checkpoint."""
    from rich.progress import TimeRemainingColumn

    from cmg_eval.train.distributed import env_world
    from cmg_eval.train.trainer import pretrain

    rank, world = env_world()  # under torchrun only rank 0 shows progress and the result
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), TextColumn("{task.fields[losses]}"), console=err_console,
                        transient=True, disable=rank != 0)
    bar = progress.add_task(f"pretrain {method} ({preset})", total=None, losses="")

    def started(trainer) -> None:
        progress.update(bar, total=trainer.steps, completed=trainer.step)

    def report(state) -> None:
        terms = " ".join(f"{k} {v:.3g}" for k, v in {**state.losses, **state.logs}.items())
        progress.update(bar, completed=state.step, losses=terms)

    with progress:
        ckpt = pretrain(method, data_root, out, preset, assignments, report, started)
    if rank != 0:
        return
    layer2 = f", layer 2 from step {ckpt['layer2_start_step']}" if ckpt.get("layer2_start_step") is not None else ""
    losses = " ".join(f"{k} {v:.3g}" for k, v in ckpt["losses"].items())
    console.print(f"wrote {method} checkpoint ({preset}, step {ckpt['total_step']} of {ckpt['steps']}{layer2}, "
                  f"{ckpt['train_seconds']:.0f} s of training{f' on {world} processes' if world > 1 else ''}; "
                  f"last losses: {losses}) to {out}")


@main.command("codebook")
@click.option("--ckpt", "ckpt_spec", required=True, help="[LABEL[@READOUT]=]PATH")
@click.option("--data-root", type=click.Path(path_type=Path), required=True,
              help="Folder holding vggsound40k/: its clips are the paired inputs.")
@click.option("--encoder", default=None)
@click.option("--max-items", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Also write the numbers here.")
def codebook_command(ckpt_spec: str, data_root: Path, encoder: str | None, max_items: int, json_out: Path | None) -> None:
    """Code usage, perplexity and dead codes per modality, and cross-modal code agreement on paired clips."""
    from cmg_eval.codebook import diagnostics, paired_inputs
    from cmg_eval.encoders.loading import load_model
    from cmg_eval.io import write_json

    model = load_model(ckpt_spec, encoder)
    inputs = paired_inputs(data_root, max_items)
    if inputs is None:
        raise CmgError(f"{data_root}: no vggsound40k/data/vggsound-avel40k.csv (expected the pretraining set)")
    result = diagnostics(model.encoder, inputs)
    for column in result["columns"]:
        table = Table(title=f"{model.label} ({model.method}) code column {column['column']}: "
                            f"{column['n_codes']} codes, {column['dead_codes']} dead on {result['n_items']} clips")
        for name in ("modality / pair", "used", "usage %", "perplexity", "segment agree %", "clip agree %"):
            table.add_column(name, justify="left" if name == "modality / pair" else "right")
        for modality, stats in column["modalities"].items():
            share = f"{100 * stats['usage']:.1f}" if "usage" in stats else "-"
            table.add_row(modality, str(stats["used"]), share, f"{stats['perplexity']:.1f}", "", "")
        for pair, stats in column["agreement"].items():
            segment = f"{100 * stats['segment']:.1f}" if "segment" in stats else "-"
            table.add_row(pair, "", "", "", segment, f"{100 * stats['clip_mode']:.1f}")
        console.print(table)
    if json_out is not None:
        write_json(json_out, result)
        console.print(f"wrote {json_out}")


if __name__ == "__main__":
    main()
