"""Segment-level event localization on top of `HeadTask`, shared by the `avvp` and `ave_avvp` tasks.

A head (the reference `SegmentDecoder`: per segment Linear D->D, Linear D->classes + background) decides each
segment and class by sigmoid > 0.5; metrics come from per-clip counts (`cmg_eval.metrics.localization`), so
saved predictions rescore any subset of clips. Test clips are AVVP-style annotation streams
(`cmg_eval.data.streams`).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from cmg_eval.data.streams import Stream
from cmg_eval.headtask import HEAD_DEFAULTS, HeadTask, Labeled
from cmg_eval.heads import SegmentDecoder
from cmg_eval.metrics import clip_counts, scores_from_counts
from cmg_eval.task import Predictions, Scored

LEGACY_BATCH = 80  # the reference's evaluation batch, for rescoring legacy numbers from saved predictions
LOCALIZATION_METRICS = ("seg_f1", "seg_precision", "seg_recall", "seg_f1_bg", "event_f1",
                        "legacy_precision", "legacy_f1")
# The reference's head training for 50 epochs, except the clean protocol's learning rate: the reference's 4e-4
# (`paper_lr`, used by the paper protocol) moves a BCE head too little in 10 epochs of 2-10 batches to learn
# per-class thresholds on small sets.
LOCALIZATION_DEFAULTS = {**HEAD_DEFAULTS, "epochs": 50, "lr": 1e-2}


def stream_labeled(stream: Stream, task: str, modality: str) -> Labeled:
    """Every clip of an annotation stream with its (steps, classes + 1) segment labels."""
    return Labeled(stream.source(task, modality), stream.table.labels)


# ------------------------------------------------------------------------------------------ losses and the task


def bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(logits, targets)


class ExpLogLoss(nn.Module):
    """BCE plus the reference's ExpLogLoss: -mean over segments of sum_c y_c log_softmax(z)_c exp(-alpha_c).

    Reproduced as is (paper protocol only): the term shrinks as any alpha_c grows, so Adam keeps raising the
    learnable alpha (init 0.1) without bound and the term fades; a softmax over multi-label targets.
    """

    def __init__(self, n_outputs: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.full((n_outputs,), 0.1))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weighted = targets * torch.log_softmax(logits, dim=-1) * torch.exp(-self.alpha)
        return bce_loss(logits, targets) - weighted.sum(-1).mean()


def localization_scored(labels: np.ndarray, decisions: np.ndarray, items: np.ndarray, batch_size: int) -> Scored:
    """Scores and per-item predictions (with per-clip counts, so subsets rescore by summing)."""
    counts = clip_counts(labels > 0.5, decisions)
    predictions = Predictions(items, {"y_true": labels > 0.5, "y_pred": decisions, "counts": counts})
    return Scored(scores_from_counts(counts, batch_size), len(items), predictions)


class LocalizationTask(HeadTask):
    """A segment head: BCE and the best seg_f1 epoch (clean); BCE + ExpLogLoss and the best legacy
    (batch-weighted) `paper_metric` epoch per target (paper), as the reference's scripts."""

    defaults = LOCALIZATION_DEFAULTS
    select_metric = "seg_f1"

    def n_outputs(self, data: Any, fit: Labeled) -> int:
        return fit.labels.shape[-1]

    def head(self, input_dim: int, n_outputs: int) -> nn.Module:
        return SegmentDecoder(input_dim, n_outputs)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return bce_loss(outputs, targets)

    def paper_loss(self, n_outputs: int) -> nn.Module:
        return ExpLogLoss(n_outputs)

    def decide(self, outputs: np.ndarray) -> np.ndarray:
        """sigmoid > 0.5 (strict), i.e. logit > 0, on every column."""
        return outputs > 0

    def epoch_metrics(self, labels: np.ndarray, decisions: np.ndarray, batch_size: int) -> dict[str, float]:
        return scores_from_counts(clip_counts(labels > 0.5, decisions, events=False), batch_size)

    def score(self, data: Any, labels: np.ndarray, decisions: np.ndarray, items: np.ndarray,
              batch_size: int) -> Scored:
        return localization_scored(labels, decisions, items, batch_size)

    def rescore(self, data: Any, predictions: Mapping[str, np.ndarray]) -> dict[str, float]:
        return scores_from_counts(predictions["counts"], LEGACY_BATCH)
