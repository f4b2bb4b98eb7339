"""AVVP cross-modal segment-level event localization (reference-protocol.md 3.2), the whole task in one file.

Data: `AVVP/data/AVVP_Categories.txt` (class i = line i; 25 lines in the release),
`AVVP/data/AVVP_eval_{audio,visual}_checked_combined.csv`
(tab-separated, one row per clip) and `AVVP/feature/{audio,video}/zip/<11-char id>.zip`. Train and test are
the same clips with per-modality labels, so the clean protocol cross-fits 5 clip folds. Head: the
reference `Semantic_Decoder_AVVP` (per segment Linear D->D, Linear D->26). The localization machinery
here (loss, selection, paper loop, scoring) is shared with `ave_avvp`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cmg_eval.data.annotations import EventTable, assign_folds_multilabel, read_class_list, read_event_csv
from cmg_eval.data.clipzips import ClipZips
from cmg_eval.errors import CmgError
from cmg_eval.heads import CLEAN_TRAINING, SegmentDecoder, clean_head, fit_clean, predict, seeded_head, train
from cmg_eval.metrics import clip_counts, scores_from_counts
from cmg_eval.registry import register_task
from cmg_eval.task import FeatureSource, Scored, SourceRun, Task

N_CLASSES = 25  # AVVP_Categories.txt of the release; the task takes its classes from the file
STEPS = 10
N_FOLDS = 5
STREAMS = {"audio": "audio", "video": "visual"}         # modality -> annotation stream
FEATURES = {"audio": ((128,), True, "VGGish audio"), "video": ((7, 7, 512), False, "VGG19 pool5 video")}
LEGACY_BATCH = 80  # the reference's evaluation batch, for rescoring legacy numbers from saved predictions
LOCALIZATION_METRICS = ("seg_f1", "seg_precision", "seg_recall", "seg_f1_bg", "event_f1",
                        "legacy_precision", "legacy_f1")
# The reference's head training (Adam, MultiStepLR [10, 20, 30] x 0.5, clip 0.5, batch 80, 50 epochs), except
# the clean protocol's learning rate: the reference's 4e-4 (`paper_lr`, used by the paper protocol) moves a BCE
# head too little in 10 epochs of 2-10 batches to learn per-class thresholds on small sets.
LOCALIZATION_DEFAULTS = {"epochs": 50, "batch_size": 80, "lr": 1e-2, "paper_lr": 4e-4, "milestones": [10, 20, 30],
                         "gamma": 0.5, "clip_grad": 0.5, **CLEAN_TRAINING}


# ------------------------------------------------------------------------------------------ data


@dataclass
class Stream:
    """One modality's annotated clips and their feature zips, row-aligned."""

    table: EventTable
    zips: ClipZips

    def source(self, task: str, modality: str) -> FeatureSource:
        zips = self.zips
        return FeatureSource(key=f"{task}:{modality}:{zips.key()}", modality=modality, n_items=len(zips),
                             batches=lambda size: zips.iter_rows(np.arange(len(zips)), size), where=str(zips.folder),
                             part=f"data rows of {self.table.path.name} (item = row, from 0)")


def load_stream(csv_path: Path, classes: list[str], feature_root: Path, modality: str) -> Stream:
    """An annotation CSV and the `<feature_root>/<modality>/zip/<id>.zip` files of its clips."""
    table = read_event_csv(csv_path, classes, STEPS)
    tail, pad, what = FEATURES[modality]
    zips = ClipZips(feature_root / modality / "zip", table.feature_ids(), table.names, tail, table.path, table.lines,
                    pad=pad, steps=STEPS, what=what)
    return Stream(table, zips)


def stream_notes(streams: dict[str, Stream]) -> dict:
    """Rows per annotation stream holding a zero-length event (onset == offset: it labels no segment)."""
    return {"zero_length_event_rows": {STREAMS[m]: s.table.zero_length_rows for m, s in streams.items()}}


def stream_files(streams: dict[str, Stream]) -> list[Path]:
    return [path for s in streams.values() for path in (s.table.path, *s.zips.paths())]


def clip_classes(streams: dict[str, Stream]) -> tuple[list[str], np.ndarray]:
    """The clips of all streams (sorted) and the classes each has in any stream, (clips, classes) boolean."""
    present: dict[str, np.ndarray] = {}
    for stream in streams.values():
        for name, labels in zip(stream.table.names, stream.table.labels[..., :-1].max(1) > 0):
            present[name] = present.get(name, np.zeros(len(labels), bool)) | labels
    clips = sorted(present)
    return clips, np.array([present[c] for c in clips])


@dataclass
class AvvpData:
    """Validated AVVP release: per-modality streams and the clip fold of each row."""

    root: Path
    classes: list[str]
    streams: dict[str, Stream]
    folds: dict[str, np.ndarray]


# ------------------------------------------------------------------------------------------ localization heads


class ExpLogLoss(nn.Module):
    """BCE plus the reference's ExpLogLoss: -mean over segments of sum_c y_c log_softmax(z)_c exp(-alpha_c).

    Reproduced as is (paper protocol only): the term shrinks as any alpha_c grows, so Adam keeps raising the
    learnable alpha (init 0.1) without bound and the term fades (quirk 7); a softmax over multi-label targets.
    """

    def __init__(self, n_outputs: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.full((n_outputs,), 0.1))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weighted = targets * torch.log_softmax(logits, dim=-1) * torch.exp(-self.alpha)
        return bce_loss(logits, targets) - weighted.sum(-1).mean()


def bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(logits, targets)


def segment_head(inputs: np.ndarray, n_outputs: int, seed: int) -> nn.Module:
    return seeded_head(lambda: SegmentDecoder(inputs.shape[-1], n_outputs), seed)


def detect(head: nn.Module, inputs: np.ndarray) -> np.ndarray:
    """Per-segment decisions: sigmoid > 0.5 (strict), i.e. logit > 0, on every column."""
    return predict(head, inputs) > 0


def localization_scored(y_true: np.ndarray, y_pred: np.ndarray, items: np.ndarray, batch_size: int) -> Scored:
    """Scores and per-item predictions (with per-clip counts, so subsets rescore by summing)."""
    counts = clip_counts(y_true > 0.5, y_pred)
    predictions = {"item": items, "y_true": y_true > 0.5, "y_pred": y_pred, "counts": counts}
    return Scored(scores_from_counts(counts, batch_size), len(items), predictions)


def rescore_localization(predictions: dict[str, np.ndarray]) -> dict[str, float]:
    return scores_from_counts(predictions["counts"], LEGACY_BATCH)


def fit_selected(job: SourceRun, x_train: np.ndarray, y_train: np.ndarray, x_select: np.ndarray,
                 y_select: np.ndarray, epochs: int) -> nn.Module:
    """Clean protocol: BCE, keep the epoch with the best seg_f1 on held-out source data (ties: lower BCE there)."""
    head = clean_head(lambda: SegmentDecoder(x_train.shape[-1], y_train.shape[-1]), job.seed, x_train, job.settings)
    return fit_clean(head, x_train, y_train, x_select, y_select, bce_loss, segment_f1, job.settings, job.seed, epochs,
                     job.on_epoch)


def segment_f1(logits: np.ndarray, targets: np.ndarray) -> float:
    return scores_from_counts(clip_counts(targets > 0.5, logits > 0, events=False))["seg_f1"]


def paper_settings(job: SourceRun) -> dict:
    """The job's settings with the paper protocol's learning rate."""
    return {**job.settings, "lr": job.settings["paper_lr"]}


def paper_epochs(job: SourceRun) -> int:
    """The reference resumes the pretraining epoch counter: n_epoch - (checkpoint epoch + 1)."""
    epochs = max(int(job.settings["epochs"]) - (job.checkpoint_epoch + 1), 0)
    if epochs == 0:
        raise CmgError(f"paper protocol: checkpoint epoch {job.checkpoint_epoch} leaves no downstream epochs "
                       f"of {job.settings['epochs']}")
    return epochs


def fit_paper(job: SourceRun, x_train: np.ndarray, y_train: np.ndarray,
              targets: dict[str, tuple[np.ndarray, np.ndarray]], rule: str, clip_loss: bool) -> dict[str, Scored]:
    """Paper protocol: BCE + ExpLogLoss on all source clips; each target scored every epoch in item order,
    the epoch with the best legacy (batch-weighted) `rule` metric kept per target."""
    head = segment_head(x_train, y_train.shape[-1], job.seed)
    batch = int(job.settings["batch_size"])
    best: dict[str, tuple[float, np.ndarray]] = {}

    def score_all(epoch: int, model: nn.Module) -> None:
        for target, (inputs, labels) in targets.items():
            decisions = detect(model, inputs)
            value = scores_from_counts(clip_counts(labels > 0.5, decisions, events=False), batch)[rule]
            if target not in best or value > best[target][0]:
                best[target] = (value, decisions)
        job.on_epoch()

    train(head, x_train, y_train, ExpLogLoss(y_train.shape[-1]), paper_settings(job), job.seed, score_all,
          epochs=paper_epochs(job), clip_loss=clip_loss)
    return {t: localization_scored(targets[t][1], best[t][1], np.arange(len(targets[t][1])), batch) for t in targets}


# ------------------------------------------------------------------------------------------ the task


@register_task("avvp")
class Avvp(Task):
    """Segment-level event localization: a head trained on one modality's events, scored on another's."""

    name = "avvp"
    version = "1"
    primary_metric = "seg_f1"
    metrics = LOCALIZATION_METRICS
    directions = (("video", "audio"), ("audio", "video"), ("video", "video"), ("audio", "audio"))
    defaults = dict(LOCALIZATION_DEFAULTS)

    def load(self, data_root: Path) -> AvvpData:
        root = Path(data_root) / "AVVP"
        classes = read_class_list(root / "data" / "AVVP_Categories.txt", "AVVP")
        streams = {m: load_stream(root / "data" / f"AVVP_eval_{stream}_checked_combined.csv", classes,
                                  root / "feature", m) for m, stream in STREAMS.items()}
        # folds over the union of clips, so a clip sits in the same fold in both streams
        # and stratified by class, so no class is missing from the folds a head is fitted on (unstratified, the
        # 8 clips of a class in a 100-clip folder could fall into two folds and never be learned)
        clips, present = clip_classes(streams)
        fold_of = dict(zip(clips, assign_folds_multilabel(clips, present, N_FOLDS, "avvp").tolist()))
        folds = {m: np.array([fold_of[n] for n in s.table.names], np.int64) for m, s in streams.items()}
        return AvvpData(root, classes, streams, folds)

    def files(self, data: AvvpData) -> list[Path]:
        return [data.root / "data" / "AVVP_Categories.txt", *stream_files(data.streams)]

    def feature_readers(self, data: AvvpData) -> list:
        return [s.zips for s in data.streams.values()]

    def data_notes(self, data: AvvpData) -> dict:
        return stream_notes(data.streams)

    def about(self, data: AvvpData) -> dict:
        names = {m: set(s.table.names) for m, s in data.streams.items()}
        labels = {m: s.table.labels for m, s in data.streams.items()}
        # quirk 16: features are keyed by the first 11 characters, so two cuts of one video share a file
        shared = {STREAMS[m]: len(set(s.table.names)) - len(set(s.table.feature_ids())) for m, s in data.streams.items()}
        return {"clips": {STREAMS[m]: len(s.table.names) for m, s in data.streams.items()},
                "clips_in_both_streams": len(names["audio"] & names["video"]), "clips_sharing_a_feature_file": shared,
                "event_segments": {STREAMS[m]: int(l[..., :-1].sum()) for m, l in labels.items()},
                "classes": len(data.classes), "folds": N_FOLDS}

    def epochs(self, job: SourceRun) -> int:
        if job.protocol == "paper":
            return max(int(job.settings["epochs"]) - (job.checkpoint_epoch + 1), 0)
        return N_FOLDS * int(job.settings["epochs"])

    def rescore(self, data: AvvpData, predictions: dict[str, np.ndarray]) -> dict[str, float]:
        return rescore_localization(predictions)

    def run_source(self, job: SourceRun) -> dict[str, Scored]:
        data: AvvpData = job.data
        inputs = {m: job.embed(data.streams[m].source(self.name, m)) for m in (job.source, *job.targets)}
        labels = {m: data.streams[m].table.labels for m in inputs}
        if job.protocol == "paper":
            targets = {t: (inputs[t], labels[t]) for t in job.targets}
            # NEU avvp.py keeps the epoch with the best precision and leaves its alpha unclipped
            return fit_paper(job, inputs[job.source], labels[job.source], targets, "legacy_precision", clip_loss=False)
        return self._cross_fit(job, data, inputs, labels)

    def _cross_fit(self, job: SourceRun, data: AvvpData, inputs: dict[str, np.ndarray],
                   labels: dict[str, np.ndarray]) -> dict[str, Scored]:
        """Clean: for each fold k, train on three folds, select on fold k+1, score fold k of every target."""
        decisions = {t: np.zeros(labels[t].shape, bool) for t in job.targets}
        source_folds = data.folds[job.source]
        for fold in range(N_FOLDS):
            select = source_folds == (fold + 1) % N_FOLDS
            fit = (source_folds != fold) & ~select
            if not select.any() or not fit.any():
                raise CmgError(f"{data.streams[job.source].table.path}: {len(source_folds)} clips are too few for "
                               f"{N_FOLDS}-fold cross-fitting, expected at least {N_FOLDS}")
            head = fit_selected(job, inputs[job.source][fit], labels[job.source][fit], inputs[job.source][select],
                                labels[job.source][select], int(job.settings["epochs"]))
            for target in job.targets:
                rows = data.folds[target] == fold
                decisions[target][rows] = detect(head, inputs[target][rows])
        batch = int(job.settings["batch_size"])
        return {t: localization_scored(labels[t], decisions[t], np.arange(len(labels[t])), batch) for t in job.targets}
