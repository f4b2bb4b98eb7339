"""AVE cross-modal event classification (reference-protocol.md 3.1), the whole task in one file.

Data: `AVE-ECCV18-master/data/{visual_feature,audio_feature,labels}.h5` (dataset `avadataset`)
and `{train,val,test}_order.h5` (dataset `order`). Head: the reference `Semantic_Decoder`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cmg_eval.data.h5 import H5Array
from cmg_eval.data.manifest import fingerprint
from cmg_eval.errors import CmgError
from cmg_eval.heads import (CLEAN_TRAINING, SemanticDecoder, accuracy, clean_head, fit_clean, predict, seeded_head,
                            train)
from cmg_eval.metrics import classification
from cmg_eval.registry import register_task
from cmg_eval.task import FeatureSource, Scored, SourceRun, Task

N_CLASSES = 28
STEPS = 10
FEATURE_FILES = {"video": ("visual_feature.h5", (STEPS, 7, 7, 512)), "audio": ("audio_feature.h5", (STEPS, 128))}
SPLITS = ("train", "val", "test")


def check_segment_labels(labels: np.ndarray, path: Path, n_classes: int, one_hot: bool, what: str,
                         clips: np.ndarray | None = None) -> None:
    """(rows, steps, classes + 1) labels of `clips` (default: row i is clip i), background last: finite 0/1 values;
    with `one_hot` each segment holds exactly one class and each clip an event (argmax would read none as class 0)."""
    clip = (lambda row: int(row)) if clips is None else (lambda row: int(clips[row]))
    bad = np.argwhere(~np.isin(labels, (0, 1)))
    if len(bad):
        row, step, column = bad[0].tolist()
        raise CmgError(f"{path}: clip {clip(row)} segment {step} holds {float(labels[row, step, column])!r}, "
                       f"expected {what} of 0 and 1")
    if one_hot:
        counts = labels.sum(axis=2)
        if (counts != 1).any():
            row, step = np.argwhere(counts != 1)[0].tolist()
            raise CmgError(f"{path}: clip {clip(row)} segment {step} has {int(counts[row, step])} classes set, "
                           f"expected exactly one ({what}, one-hot with background last)")
        eventless = np.flatnonzero(labels[:, :, :n_classes].max(axis=(1, 2)) == 0)
        if len(eventless):
            raise CmgError(f"{path}: clip {clip(eventless[0])} has no event segment ({len(eventless)} of "
                           f"{len(labels)} clips are background only), expected an event in every clip")


def clip_labels(segment_labels: np.ndarray) -> np.ndarray:
    """The reference rule: drop the background column, argmax per segment, max over segments."""
    return segment_labels[:, :, :N_CLASSES].argmax(axis=2).max(axis=1)


def read_order(path: Path, n_clips: int) -> np.ndarray:
    """A split's global clip indices, checked to be a non-empty 1-D range of valid clips: integers (a boolean or
    float order is refused), no more of them than clips, checked before the read."""
    order = H5Array(path, "order", (), what="1-D int64 clip indices")
    try:
        if order.dataset.dtype.kind not in "iu":
            raise CmgError(f"{path}: dataset 'order' has dtype {order.dataset.dtype}, expected integer clip indices")
        if len(order) > n_clips:
            raise CmgError(f"{path}: dataset 'order' declares {len(order)} indices, expected at most {n_clips} "
                           f"(one per clip)")
        values = order.read_all()
    finally:
        order.close()
    if values.size == 0:
        raise CmgError(f"{path}: dataset 'order' is empty, expected clip indices")
    values = values.astype(np.int64)
    if values.min() < 0 or values.max() >= n_clips:
        raise CmgError(f"{path}: dataset 'order' has index {int(values.max())}, expected 0..{n_clips - 1}")
    return values


@dataclass
class AveData:
    """Validated AVE release: lazily read features, clip labels and split orders."""

    root: Path
    features: dict[str, H5Array]
    labels: np.ndarray          # (N,) clip class in 0..27
    orders: dict[str, np.ndarray]
    fingerprints: dict[str, str]

    def source(self, modality: str, split: str) -> FeatureSource:
        """Encoder inputs of one modality for one split, in order."""
        features = self.features[modality]
        order = self.orders[split]
        order_hash = hashlib.sha256(order.tobytes()).hexdigest()[:16]
        key = f"ave:{self.fingerprints[modality]}:{split}:{order_hash}:{modality}"
        return FeatureSource(key=key, modality=modality, n_items=len(order),
                             batches=lambda size: features.iter_rows(order, size), where=str(features.path),
                             part=f"{split} split")


@register_task("ave")
class Ave(Task):
    """Clip-level event classification: a head trained on one modality, scored on another."""

    name = "ave"
    version = "1"
    primary_metric = "accuracy"
    metrics = ("accuracy", "macro_precision", "macro_recall", "macro_f1")
    directions = (("video", "audio"), ("audio", "video"), ("video", "video"), ("audio", "audio"))
    # The reference's head training (Adam 4e-4, MultiStepLR [10, 20, 30] x 0.5, clip 0.5, batch 80, 30 epochs);
    # the clean protocol adds CLEAN_TRAINING and trains at 2e-3 (`paper_lr` is the paper protocol's 4e-4).
    defaults = {"epochs": 30, "batch_size": 80, "lr": 2e-3, "paper_lr": 4e-4, "milestones": [10, 20, 30],
                "gamma": 0.5, "clip_grad": 0.5, **CLEAN_TRAINING}

    def load(self, data_root: Path) -> AveData:
        root = Path(data_root) / "AVE-ECCV18-master" / "data"
        features = {m: H5Array(root / name, "avadataset", tail, what=f"AVE {m} features")
                    for m, (name, tail) in FEATURE_FILES.items()}
        labels_file = H5Array(root / "labels.h5", "avadataset", (STEPS, N_CLASSES + 1), what="AVE segment labels")
        n_clips = len(labels_file)
        for modality, array in features.items():   # declared sizes agree before anything is read
            if len(array) != n_clips:
                raise CmgError(f"{array.path}: {len(array)} clips, expected {n_clips} as in {labels_file.path}")
        segment_labels = labels_file.read_all()
        labels_file.close()
        check_segment_labels(segment_labels, labels_file.path, N_CLASSES, True, "AVE segment labels")
        orders = {split: read_order(root / f"{split}_order.h5", n_clips) for split in SPLITS}
        fingerprints = {m: fingerprint(a.path) for m, a in features.items()}
        return AveData(root, features, clip_labels(segment_labels), orders, fingerprints)

    def files(self, data: AveData) -> list[Path]:
        return [a.path for a in data.features.values()] + [data.root / "labels.h5"] + \
               [data.root / f"{split}_order.h5" for split in SPLITS]

    def feature_readers(self, data: AveData) -> list:
        return list(data.features.values())

    def epochs(self, job: SourceRun) -> int:
        if job.protocol == "paper":  # the reference resumes the pretraining epoch counter
            return max(int(job.settings["epochs"]) - (job.checkpoint_epoch + 1), 0)
        return int(job.settings["epochs"])

    def run_source(self, job: SourceRun) -> dict[str, Scored]:
        if job.protocol == "paper":
            return self._run_paper(job)
        return self._run_clean(job)

    def _head(self, job: SourceRun, inputs: np.ndarray) -> nn.Module:
        return seeded_head(lambda: SemanticDecoder(inputs.shape[-1], N_CLASSES), job.seed)

    def rescore(self, data: AveData, predictions: dict[str, np.ndarray]) -> dict[str, float]:
        return classification(predictions["y_true"], predictions["y_pred"], N_CLASSES)

    def _score(self, data: AveData, head: nn.Module, inputs: np.ndarray, split: str) -> Scored:
        items = data.orders[split]
        predictions = {"item": items, "y_true": data.labels[items], "y_pred": predict(head, inputs).argmax(axis=1)}
        return Scored(self.rescore(data, predictions), len(items), predictions)

    def _run_clean(self, job: SourceRun) -> dict[str, Scored]:
        """Train on source train, keep the epoch with the best source val accuracy (ties: lower val loss), score
        target test."""
        data: AveData = job.data
        x_train = job.embed(data.source(job.source, "train"))
        x_val = job.embed(data.source(job.source, "val"))
        y_val = data.labels[data.orders["val"]]
        y_train = data.labels[data.orders["train"]]
        head = clean_head(lambda: SemanticDecoder(x_train.shape[-1], N_CLASSES), job.seed, x_train, job.settings)
        head = fit_clean(head, x_train, y_train, x_val, y_val, nn.functional.cross_entropy, accuracy, job.settings,
                         job.seed, self.epochs(job), job.on_epoch)
        return {target: self._score(data, head, job.embed(data.source(target, "test")), "test")
                for target in job.targets}

    def _run_paper(self, job: SourceRun) -> dict[str, Scored]:
        """The reference: train on source train, score every target on the train split each epoch, keep the best."""
        data: AveData = job.data
        x_train = job.embed(data.source(job.source, "train"))
        scored_inputs = {target: job.embed(data.source(target, "train")) for target in job.targets}
        head = self._head(job, x_train)
        best: dict[str, Scored] = {}

        def score_all(epoch: int, model: nn.Module) -> None:
            for target, inputs in scored_inputs.items():
                scored = self._score(data, model, inputs, "train")
                if target not in best or scored.metrics["accuracy"] > best[target].metrics["accuracy"]:
                    best[target] = scored
            job.on_epoch()

        epochs = self.epochs(job)
        if epochs == 0:
            raise CmgError(f"paper protocol: checkpoint epoch {job.checkpoint_epoch} leaves no downstream epochs "
                           f"of {job.settings['epochs']}")
        train(head, x_train, data.labels[data.orders["train"]], nn.functional.cross_entropy,
              {**job.settings, "lr": job.settings["paper_lr"]}, job.seed, score_all, epochs=epochs)
        return best
