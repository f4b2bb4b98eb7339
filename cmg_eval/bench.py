"""`cmg-eval bench`: cmg-eval against the reference-style loop on the same data, checkpoint and machine.

The reference-style loops are pinned as the reference AVE and AVVP scripts run them: float64 encoder with
the explicit (degenerate) spatial attention, items read one at a time (AVE from h5, AVVP from its per-clip
zips) with no worker processes, batch 80, the frozen encoder re-run on every training batch of every epoch,
and both modalities re-encoded for the evaluation pass of every epoch (AVE scores the train split, AVVP
each stream's clips).
"""

from __future__ import annotations

import copy
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from cmg_eval import registry
from cmg_eval.cache import EmbeddingCache
from cmg_eval.data.h5 import H5Array
from cmg_eval.embedder import Embedder
from cmg_eval.encoders.base import LoadedModel
from cmg_eval.encoders.dcid import DcidEncoder
from cmg_eval.models.dcid import nearest_codes
from cmg_eval.errors import CmgError
from cmg_eval.heads import SegmentDecoder, SemanticDecoder, seeded_head
from cmg_eval.localization import ExpLogLoss
from cmg_eval.metrics import clip_counts, scores_from_counts
from cmg_eval.provenance import peak_rss_mib
from cmg_eval.task import SourceRun, Task

SEED = 43
BATCH = 80


class ReferenceEncoder:
    """The DCID inference path as the reference computes it: float64, explicit spatial attention."""

    def __init__(self, encoder: DcidEncoder):
        self.network = copy.deepcopy(encoder.network).double().eval()
        self.codebook = encoder._codebook64

    @torch.no_grad()
    def __call__(self, modality: str, feats: torch.Tensor) -> torch.Tensor:
        net = self.network
        if modality == "video":
            features = net.video_self_att(net.video_semantic_encoder.explicit_forward(feats))
        else:
            features = net.audio_self_att(feats)
        return self.codebook[nearest_codes(features, self.codebook)]


def reference_batches(read: Callable[[str, int], np.ndarray], items: np.ndarray, modalities: tuple[str, ...],
                      generator: torch.Generator | None = None):
    """Batches of 80 items (shuffled when a generator is given), each read on its own with no workers, as float64."""
    if generator is not None:
        items = items[torch.randperm(len(items), generator=generator).numpy()]
    for start in range(0, len(items), BATCH):
        batch = items[start:start + BATCH]
        yield batch, {m: torch.from_numpy(np.stack([read(m, int(i)) for i in batch]).astype(np.float64))
                      for m in modalities}


def reference_fit(head: nn.Module, loss_fn: Callable, settings: dict[str, Any], epochs: int,
                  train_batches: Callable[[], Any], evaluate: Callable[[nn.Module], None]) -> None:
    """The reference's epoch loop: Adam over the head and any loss weights, head gradients clipped, an evaluation
    pass after every epoch, then the MultiStepLR step."""
    loss_params = list(loss_fn.parameters()) if isinstance(loss_fn, nn.Module) else []
    optimizer = torch.optim.Adam([*head.parameters(), *loss_params], lr=settings["lr"])
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, settings["milestones"], settings["gamma"])
    for _ in range(epochs):
        head.train()
        for inputs, targets in train_batches():
            loss = loss_fn(head(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(head.parameters(), settings["clip_grad"])
            optimizer.step()
        head.eval()
        with torch.no_grad():
            evaluate(head)
        scheduler.step()


def reference_ave(data, encoder: DcidEncoder, source: str, epochs: int, settings: dict[str, Any]) -> dict[str, float]:
    """The pinned reference AVE loop (items carry both modalities, as the reference dataset returns them); the
    best per-epoch accuracy of each modality on the shuffled train split (paper rule)."""
    reference = ReferenceEncoder(encoder)
    head = seeded_head(lambda: SemanticDecoder(encoder.output_dim(), 28), SEED).double()
    generator = torch.Generator().manual_seed(SEED)
    order, both = data.orders["train"], ("video", "audio")
    read = lambda modality, item: data.features[modality].dataset[item]  # noqa: E731
    best = dict.fromkeys(both, 0.0)

    def train_batches():
        for items, feats in reference_batches(read, order, both, generator):
            yield reference(source, feats[source]), torch.from_numpy(data.labels[items])

    def evaluate(model: nn.Module) -> None:
        correct = dict.fromkeys(both, 0)
        for items, feats in reference_batches(read, order, both, generator):
            labels = torch.from_numpy(data.labels[items])
            for modality in both:
                correct[modality] += int((model(reference(modality, feats[modality])).argmax(1) == labels).sum())
        for modality in both:
            best[modality] = max(best[modality], 100.0 * correct[modality] / len(order))

    reference_fit(head, nn.functional.cross_entropy, {**settings, "lr": settings["paper_lr"]}, epochs, train_batches,
                  evaluate)
    return best


def reference_avvp(data, encoder: DcidEncoder, source: str, epochs: int, settings: dict[str, Any]) -> dict[str, float]:
    """The pinned reference AVVP loop: BCE + ExpLogLoss (its weights unclipped) at the paper learning rate, the
    source stream's zips read per item each epoch; each stream scored in row order every epoch, best legacy
    (batch-weighted) precision kept (NEU avvp.py)."""
    reference = ReferenceEncoder(encoder)
    n_outputs = data.streams[source].table.labels.shape[-1]  # the classes of AVVP_Categories.txt + background
    head = seeded_head(lambda: SegmentDecoder(encoder.output_dim(), n_outputs), SEED).double()
    generator = torch.Generator().manual_seed(SEED)
    read = lambda modality, row: data.streams[modality].zips.read(row)  # noqa: E731
    rows = {m: np.arange(len(s.zips)) for m, s in data.streams.items()}
    labels = {m: s.table.labels for m, s in data.streams.items()}
    best = dict.fromkeys(("video", "audio"), -1.0)

    def train_batches():
        for items, feats in reference_batches(read, rows[source], (source,), generator):
            yield reference(source, feats[source]), torch.from_numpy(labels[source][items]).double()

    def evaluate(model: nn.Module) -> None:
        for modality in best:
            decisions = np.concatenate([(model(reference(modality, feats[modality])) > 0).numpy()
                                        for _, feats in reference_batches(read, rows[modality], (modality,))])
            counts = clip_counts(labels[modality] > 0.5, decisions, events=False)
            best[modality] = max(best[modality], scores_from_counts(counts, BATCH)["legacy_precision"])

    reference_fit(head, ExpLogLoss(n_outputs).double(), {**settings, "lr": settings["paper_lr"]}, epochs,
                  train_batches, evaluate)
    return best


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def cmg_paper(task: Task, data, model: LoadedModel, source: str, epochs: int, metric: str,
              cache_dir: Path) -> dict[str, float]:
    """cmg-eval's `paper` protocol on the same clips and epochs, from an empty embedding cache: `metric` per target."""
    embedder = Embedder(model, EmbeddingCache(cache_dir), 64, _NoProgress())
    job = SourceRun(data=data, source=source, targets=("video", "audio"), seed=SEED, protocol="paper",
                    settings={**task.defaults, "epochs": epochs}, embed=embedder, checkpoint_epoch=-1)
    return {target: scored.metrics[metric] for target, scored in task.run_source(job).items()}


def preload(features: H5Array, rows: np.ndarray, batch: int = 64) -> np.ndarray:
    """The rows copied into memory of their own, a batch at a time (a mapped batch is unmapped once copied)."""
    out = np.empty((len(rows), *features.shape[1:]), np.float32)
    for start, rows_read in zip(range(0, len(rows), batch), features.iter_rows(rows, batch)):
        out[start:start + len(rows_read)] = rows_read
    return out


def encoder_throughput(data, model: LoadedModel, n_clips: int, cache_dir: Path) -> dict[str, float]:
    """Clips/s (audio + video) through cmg-eval's embedder vs the bare forward on preloaded tensors, on the first
    `n_clips` rows of each feature file, read as runs read the AVE files (rows in file order); and the bare
    forward vs reading the rows that way and encoding them with nothing else (the most any embedder can reach)."""
    rows = np.arange(min(n_clips, len(data.features["video"])))
    cache_dir.mkdir(parents=True, exist_ok=True)
    preloaded = {m: torch.from_numpy(preload(data.features[m], rows)) for m in ("video", "audio")}

    def bare() -> None:
        with torch.inference_mode():
            for modality, feats in preloaded.items():
                for start in range(0, len(rows), 64):
                    model.encoder.encode(modality, feats[start:start + 64], model.readout)

    def read_and_forward() -> None:   # the rows read as the embedder reads them, nothing checked or kept
        with torch.inference_mode():
            for modality in ("video", "audio"):
                for batch in data.features[modality].iter_rows(rows, 64):
                    model.encoder.encode(modality, torch.from_numpy(batch), model.readout)

    def through_cmg() -> None:
        embedder = Embedder(model, EmbeddingCache(tempfile.mkdtemp(dir=cache_dir)), 64, _NoProgress())
        for modality in ("video", "audio"):
            source = data.whole(modality)
            source.n_items, source.key = len(rows), source.key + f":first{len(rows)}"
            source.batches = lambda size, m=modality: data.features[m].iter_rows(rows, size)
            embedder(source)

    bare_s, read_s, cmg_s = (min(timed(fn)[1] for _ in range(2))   # best of two: the first pays warm-up
                             for fn in (bare, read_and_forward, through_cmg))
    return {"n_clips": len(rows), "bare_clips_per_s": len(rows) / bare_s, "cmg_clips_per_s": len(rows) / cmg_s,
            "ceiling_ratio": bare_s / cmg_s, "read_and_forward_ratio": bare_s / read_s}


class _NoProgress:
    """The Progress calls the embedder makes, doing nothing (bench prints its own lines)."""

    def add_task(self, *args, **kwargs) -> int:
        return 0

    def advance(self, *args) -> None:
        pass

    def remove_task(self, *args) -> None:
        pass


@dataclass(frozen=True)
class Benched:
    """One benched task: its loaded data, the pinned reference loop, the metric both sides report, and the
    clips one training epoch reads (the unit of `reference_ms_per_clip_epoch`)."""

    task: Task
    data: Any
    reference: Callable[..., dict[str, float]]
    metric: str
    n_clips: int


def benched_tasks(data_root: Path, source: str) -> dict[str, Benched]:
    """AVE and AVVP, both loaded (and so checked) before anything is timed."""
    ave, avvp = registry.tasks.get("ave")(), registry.tasks.get("avvp")()
    ave_data, avvp_data = ave.load(data_root), avvp.load(data_root)
    return {"ave": Benched(ave, ave_data, reference_ave, "accuracy", len(ave_data.orders["train"])),
            "avvp": Benched(avvp, avvp_data, reference_avvp, "legacy_precision", len(avvp_data.streams[source].zips))}


def read_through(paths: list[Path], block: int = 1 << 24) -> float:
    """Read every file once (nothing kept) and return the seconds it took: the side timed first would otherwise
    pay for bringing the files into the page cache, which the other side then finds there."""
    started = time.perf_counter()
    buffer = bytearray(block)
    for path in paths:
        with open(path, "rb", buffering=0) as handle:
            while handle.readinto(buffer) == block:
                pass
    return time.perf_counter() - started


def bench_task(name: str, benched: Benched, model: LoadedModel, epochs: int, source: str, scratch: Path,
               log: Callable[[str], None]) -> dict[str, Any]:
    """Both loops on one task, its files read once before either is timed; `peak_rss_mib` is the process's peak
    so far."""
    read_s = read_through(benched.task.files(benched.data))
    log(f"{name}: cmg-eval paper protocol, {benched.n_clips} clips x {epochs} epochs (files read once: {read_s:.1f} s)")
    cmg, cmg_s = timed(lambda: cmg_paper(benched.task, benched.data, model, source, epochs, benched.metric,
                                         scratch / name))
    log(f"{name}: reference-style loop ({cmg_s:.1f} s for cmg-eval; the reference takes much longer)")
    reference, reference_s = timed(lambda: benched.reference(benched.data, model.encoder, source, epochs,
                                                             dict(benched.task.defaults)))
    return {"speedup": reference_s / cmg_s, "reference_s": reference_s, "cmg_s": cmg_s, "n_clips": benched.n_clips,
            "files_read_first_s": read_s,
            "epochs": epochs, "source": source,
            "reference_ms_per_clip_epoch": 1000 * reference_s / (benched.n_clips * epochs),
            f"reference_{benched.metric}": reference, f"cmg_{benched.metric}": cmg, "peak_rss_mib": peak_rss_mib()}


def run_bench(data_root: Path, model: LoadedModel, epochs: int, source: str = "audio",
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """AVE and AVVP, each the reference-style loop against cmg-eval's paper protocol, plus encoder throughput."""
    if not isinstance(model.encoder, DcidEncoder):
        raise CmgError(f"bench: {model.path} is a {model.method!r} checkpoint, expected a DCID-layout one")
    tasks = benched_tasks(data_root, source)
    with tempfile.TemporaryDirectory() as scratch:
        result = {name: bench_task(name, benched, model, epochs, source, Path(scratch), log)
                  for name, benched in tasks.items()}
        ave = tasks["ave"]
        result["encoder"] = encoder_throughput(ave.data, model, min(ave.n_clips, 512), Path(scratch) / "throughput")
    return {**result, "torch_threads": torch.get_num_threads()}
