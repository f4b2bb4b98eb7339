"""Tasks that train a head on one modality's frozen embeddings and score it on others: both protocols, once.

A concrete task (a file under `tasks/`) declares its data and its head; `HeadTask` runs the protocols:

- `load(data_root)` reads and checks the files (as every `Task`);
- `plan(data, job)` says, for `job.protocol`, which labeled items each head trains on (`Fold.fit`), which
  choose its epoch (`Fold.select`, clean protocol only) and which items of each target are scored
  (`HeadPlan.tests`), all as `Labeled` items of a `FeatureSource`;
- `head(input_dim, n_outputs)`, `loss`, `select_metric` / `paper_metric` and `n_classes(data)` say what is
  trained and how epochs are chosen; the defaults are clip classification (the reference clip head,
  cross-entropy, argmax, accuracy); `cmg_eval.localization.LocalizationTask` overrides them for segments.

The clean protocol trains one head per fold (inputs standardized, at least `min_steps` steps) and keeps the
epoch with the best `select_metric` on the fold's selection items (ties: the lower loss there); each fold's
head scores its rows of every target. The paper protocol trains one head on the fold's items at `paper_lr`
for `epochs - (checkpoint epoch + 1)` epochs (the reference resumes the pretraining epoch counter), scores
every target after each epoch and keeps each target's epoch with the best `paper_metric`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from cmg_eval.errors import CmgError
from cmg_eval.heads import (CLEAN_TRAINING, SemanticDecoder, clean_head, distinct_rows, fit_clean, predict, seeded_head,
                            train)
from cmg_eval.metrics import classification
from cmg_eval.task import FeatureSource, Predictions, Scored, SourceRun, Task

Embed = Callable[[FeatureSource], np.ndarray]

# The reference's head training (Adam, MultiStepLR [10, 20, 30] x 0.5, clip 0.5, batch 80, 30 epochs at 4e-4:
# `paper_lr`, used by the paper protocol); the clean protocol adds CLEAN_TRAINING and trains at `lr`.
CLASSIFICATION_METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1")
HEAD_DIRECTIONS = (("video", "audio"), ("audio", "video"), ("video", "video"), ("audio", "audio"))
# `encode_mode` (paper protocol): "eval" trains on the cached eval-mode embeddings; "train" re-encodes the
# training items every epoch with the encoder's dropout active (seeded, no gradients), as the reference's
# scripts do while they train a head; targets are scored on eval-mode embeddings either way.
HEAD_DEFAULTS = {"epochs": 30, "batch_size": 80, "lr": 2e-3, "paper_lr": 4e-4, "milestones": [10, 20, 30],
                 "gamma": 0.5, "clip_grad": 0.5, "encode_mode": "eval", **CLEAN_TRAINING}


@dataclass
class Labeled:
    """Labeled items of one modality: the encoder inputs (`source`) with one label per source row, and the rows
    used (`rows`, None: all) and each source row's item id in saved predictions (`items`, None: the row number).
    `source` may instead be a function of the job's `embed` returning the (rows, ...) embeddings itself (inputs
    stitched from several sources)."""

    source: FeatureSource | Callable[[Embed], np.ndarray]
    labels: np.ndarray
    rows: np.ndarray | None = None
    items: np.ndarray | None = None

    def take(self, rows: np.ndarray) -> "Labeled":
        """The same items restricted to `rows` (indices or a boolean mask over the source rows)."""
        return Labeled(self.source, self.labels, rows, self.items)

    @property
    def y(self) -> np.ndarray:
        return self.labels if self.rows is None else self.labels[self.rows]

    @property
    def ids(self) -> np.ndarray:
        ids = np.arange(len(self.labels)) if self.items is None else self.items
        return ids if self.rows is None else ids[self.rows]


@dataclass
class Fold:
    """One head: trained on `fit`, its epoch chosen on `select` (clean protocol; None in the paper protocol),
    scoring `scored[target]` of each target's test items (positions in `HeadPlan.tests[target]`; absent: all)."""

    fit: Labeled
    select: Labeled | None = None
    scored: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class HeadPlan:
    """What one job trains and scores: its folds and each target's test items."""

    folds: list[Fold]
    tests: dict[str, Labeled]


def encode(part: Labeled, embed: Embed) -> np.ndarray:
    """Embeddings of every source row of `part` through `embed`."""
    return embed(part.source) if isinstance(part.source, FeatureSource) else part.source(embed)


def dropout_inputs(job: SourceRun, fit: Labeled) -> Callable[[int], np.ndarray] | None:
    """epoch -> the training items encoded anew with the encoder's dropout active (seeded by head seed and
    epoch), when the job's `encode_mode` is "train"; None (cached eval-mode embeddings) otherwise."""
    if job.settings.get("encode_mode", "eval") != "train":
        return None
    if job.encode_train is None:
        raise CmgError("encode_mode=train: this run cannot re-encode with dropout (no encoder at hand)")
    rows = slice(None) if fit.rows is None else fit.rows
    return lambda epoch: encode(fit, lambda source: job.encode_train(source, job.seed * 10_000 + epoch))[rows]


class HeadTask(Task):
    """A head trained on the source modality's embeddings and scored on each target's (see the module doc)."""

    defaults = HEAD_DEFAULTS
    select_metric = "accuracy"     # clean protocol: the epoch kept on the selection items
    paper_metric = "accuracy"      # paper protocol: the epoch kept per target
    clip_loss = True               # paper protocol: clip a loss module's own parameters (if any) as the head's

    # ------------------------------------------------------------------ what a task declares

    def plan(self, data: Any, job: SourceRun) -> HeadPlan:
        """The folds and test items of `job` under `job.protocol` (raise CmgError when the data cannot fill them)."""
        raise NotImplementedError

    def n_classes(self, data: Any) -> int:
        """Classes of a classification task (the head's outputs)."""
        raise NotImplementedError

    def n_outputs(self, data: Any, fit: Labeled) -> int:
        return self.n_classes(data)

    def head(self, input_dim: int, n_outputs: int) -> nn.Module:
        """A fresh, untrained head (built under a seeded RNG)."""
        return SemanticDecoder(input_dim, n_outputs)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training loss of the clean protocol (and its tie-breaker between equally scoring epochs)."""
        return nn.functional.cross_entropy(outputs, targets)

    def paper_loss(self, n_outputs: int) -> Callable:
        """The paper protocol's training loss (an nn.Module with parameters trains them with the head)."""
        return self.loss

    def decide(self, outputs: np.ndarray) -> np.ndarray:
        """Head outputs -> predictions (class indices)."""
        return outputs.argmax(axis=1)

    def fold_decide(self, head: nn.Module, x_select: np.ndarray, y_select: np.ndarray,
                    settings: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
        """Clean protocol: the decision rule of one fold's head at its kept epoch, which may be calibrated on the
        fold's selection items (default: `decide`; an open-set task fixes its rejection threshold there)."""
        return self.decide

    def epoch_metrics(self, labels: np.ndarray, decisions: np.ndarray, batch_size: int) -> dict[str, float]:
        """The metrics epochs are chosen by (`select_metric`, `paper_metric`), cheaply; higher is better."""
        return {"accuracy": 100.0 * float((decisions == labels).mean())}

    def score(self, data: Any, labels: np.ndarray, decisions: np.ndarray, items: np.ndarray,
              batch_size: int) -> Scored:
        """Every metric and the per-item predictions of one target."""
        predictions = Predictions(items, {"y_true": labels, "y_pred": decisions})
        return Scored(self.rescore(data, predictions), len(items), predictions)

    def rescore(self, data: Any, predictions: Mapping[str, np.ndarray]) -> dict[str, float]:
        return classification(predictions["y_true"], predictions["y_pred"], self.n_classes(data))

    # ------------------------------------------------------------------ the protocols

    def epochs(self, job: SourceRun) -> int:
        """Epochs a job trains, all folds together (progress); the paper protocol's remaining epochs."""
        if job.protocol == "paper":
            return max(int(job.settings["epochs"]) - (job.checkpoint_epoch + 1), 0)
        return len(self.plan(job.data, job).folds) * int(job.settings["epochs"])

    def run_source(self, job: SourceRun) -> dict[str, Scored]:
        plan = self.plan(job.data, job)
        embedded: dict[str | int, np.ndarray] = {}   # each source encoded (or read from the cache) once per job

        def inputs(part: Labeled) -> np.ndarray:
            key = part.source.key if isinstance(part.source, FeatureSource) else id(part.source)
            if key not in embedded:
                embedded[key] = encode(part, job.embed)
            return embedded[key] if part.rows is None else embedded[key][part.rows]

        if job.protocol == "paper":
            return self._run_paper(job, plan, inputs)
        return self._run_clean(job, plan, inputs)

    def _run_clean(self, job: SourceRun, plan: HeadPlan, inputs: Callable[[Labeled], np.ndarray]) -> dict[str, Scored]:
        batch = int(job.settings["batch_size"])
        tests = {t: (inputs(plan.tests[t]), plan.tests[t].y) for t in job.targets}
        decisions: dict[str, np.ndarray] = {}

        def select_score(outputs: np.ndarray, labels: np.ndarray) -> float:
            return self.epoch_metrics(labels, self.decide(outputs), batch)[self.select_metric]

        for fold in plan.folds:
            x_fit, y_fit = inputs(fold.fit), fold.fit.y
            n_outputs = self.n_outputs(job.data, fold.fit)
            head = clean_head(lambda: self.head(x_fit.shape[-1], n_outputs), job.seed, x_fit, job.settings)
            x_select = inputs(fold.select)
            head = fit_clean(head, x_fit, y_fit, x_select, fold.select.y, self.loss, select_score,
                             job.settings, job.seed, int(job.settings["epochs"]), job.on_epoch, device=job.device)
            decide = self.fold_decide(head, x_select, fold.select.y, job.settings)
            for target, (x_test, _) in tests.items():
                rows = fold.scored.get(target)
                decided = decide(predict(head, x_test if rows is None else x_test[rows]))
                if rows is None:
                    decisions[target] = decided
                else:
                    decisions.setdefault(target, np.zeros((len(x_test), *decided.shape[1:]), decided.dtype))
                    decisions[target][rows] = decided
        return {t: self.score(job.data, y, decisions[t], plan.tests[t].ids, batch) for t, (_, y) in tests.items()}

    def _run_paper(self, job: SourceRun, plan: HeadPlan, inputs: Callable[[Labeled], np.ndarray]) -> dict[str, Scored]:
        epochs = self.epochs(job)
        if epochs == 0:
            raise CmgError(f"paper protocol: checkpoint epoch {job.checkpoint_epoch} leaves no downstream epochs "
                           f"of {job.settings['epochs']}")
        (fold,) = plan.folds
        batch = int(job.settings["batch_size"])
        x_train, y_train = inputs(fold.fit), fold.fit.y
        n_outputs = self.n_outputs(job.data, fold.fit)
        head = seeded_head(lambda: self.head(x_train.shape[-1], n_outputs), job.seed)
        tests = {t: (distinct_rows(inputs(plan.tests[t])), plan.tests[t].y) for t in job.targets}  # scored each epoch
        best: dict[str, tuple[float, np.ndarray]] = {}

        def score_all(epoch: int, model: nn.Module) -> None:
            for target, (x_test, labels) in tests.items():
                decisions = self.decide(predict(model, x_test))
                value = self.epoch_metrics(labels, decisions, batch)[self.paper_metric]
                if target not in best or value > best[target][0]:
                    best[target] = (value, decisions)
            job.on_epoch()

        train(head, x_train, y_train, self.paper_loss(n_outputs), {**job.settings, "lr": job.settings["paper_lr"]},
              job.seed, score_all, epochs=epochs, clip_loss=self.clip_loss, device=job.device,
              epoch_inputs=dropout_inputs(job, fold.fit))
        return {t: self.score(job.data, labels, best[t][1], plan.tests[t].ids, batch)
                for t, (_, labels) in tests.items()}
