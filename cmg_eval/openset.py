"""Open-set cross-modal tasks: a head trained on the known classes of one modality rejects unknown clips of another.

The known classes are the first K class indices (`known`, a task setting); a K-way head is trained on
known-class clips of the source modality and scored on clips of every class of the target, each true class >= K
standing for "unknown". A clip is rejected (predicted "unknown") when its confidence, the largest softmax
probability of the head, is below a threshold:

- clean protocol: from the confidences of the held-out known-class source clips that chose the epoch, their
  `reject_quantile` quantile (default 0.05: about 5% of known clips like them would be rejected), its log-odds
  multiplied by `reject_scale` (default 0.5), a margin for the target modality, which the head scores less
  confidently than the one it was trained on (e.g. a 0.99 quantile gives the threshold 0.909); no test clip and no
  unknown clip is seen before scoring;
- paper protocol (the reference): the best H-score over ten thresholds evenly spaced from the lowest to the
  highest confidence on the scored clips, and the best epoch, both chosen on the scored clips.

Metrics (`cmg_eval.metrics.openset`): `h_score` (primary), `known_acc`, `unknown_acc`, `auroc`, all percent, and
the `threshold` used (percent confidence).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
from torch import nn

from cmg_eval.errors import CmgError
from cmg_eval.headtask import HEAD_DEFAULTS, HEAD_DIRECTIONS, HeadTask, Labeled
from cmg_eval.heads import predict
from cmg_eval.metrics.openset import (METRICS, best_paper_threshold, confidence, harmonic_mean,
                                      known_unknown_accuracy, missing_sets, open_set_scores, quantile_threshold,
                                      reject)
from cmg_eval.task import Predictions, Scored, SourceRun, TaskMeta

# One scored clip: the head's class, its confidence, the threshold fixed by the clean protocol (NaN: chosen on
# the scored clips, the paper rule) and the number of known classes (the head's outputs).
DECISION = np.dtype([("predicted", np.int64), ("conf", np.float64), ("threshold", np.float64), ("known", np.int64)])
REJECT_QUANTILE, REJECT_SCALE = 0.05, 0.5   # the clean protocol's rejection rule (module doc)
# Title and authors are not stated here: the code release is where the protocol comes from.
REFERENCE = "Open-set cross-modal generalization (MICU), ICCV 2025; code: github.com/haihuangcode/CMG, ICCV25-OSCMG"


def open_set_meta(name: str, reference: str, files: tuple[str, ...]) -> TaskMeta:
    """An open-set task's metadata: the open-set metrics, `h_score` primary, the four head directions; outside the
    report's average column (the paper-style average of the closed-set tasks)."""
    return TaskMeta(name=name, version="1", primary_metric="h_score", metrics=METRICS, directions=HEAD_DIRECTIONS,
                    reference=reference, files=files, in_average=False)


def open_set_defaults(known: int, epochs: int) -> dict[str, Any]:
    """The head settings of an open-set task: the reference's head training for `epochs`, K and the clean
    rejection rule."""
    return {**HEAD_DEFAULTS, "epochs": epochs, "known": known, "reject_quantile": REJECT_QUANTILE,
            "reject_scale": REJECT_SCALE}


@dataclass
class KnownLabeled(Labeled):
    """Training clips of an open-set head: all of classes below `known`, the head's number of outputs."""

    known: int = 0


def decisions(outputs: np.ndarray, threshold: float = float("nan")) -> np.ndarray:
    """Head outputs -> DECISION records."""
    predicted, conf = confidence(outputs)
    out = np.empty(len(outputs), DECISION)
    out["predicted"], out["conf"], out["threshold"], out["known"] = predicted, conf, threshold, outputs.shape[1]
    return out


def absent_note(where: str, labels: np.ndarray, known: int) -> list[str]:
    """A warning line when the scored clips lack known or unknown clips (their metrics are then reported as 0)."""
    return [f"{where}: no {name} clips with known={known}: known_acc / unknown_acc of that set, h_score and auroc "
            f"are reported as 0" for name in missing_sets(labels, known)]


class OpenSetTask(HeadTask):
    """A `HeadTask` whose head knows the first `known` classes and rejects unconfident clips (see the module doc).

    A concrete task sets `meta` (`open_set_meta`), `known_choices` (the K the release ships files for),
    `defaults = open_set_defaults(K, epochs)` and plans its folds with `KnownLabeled` training clips."""

    select_metric = "accuracy"    # clean: closed-set accuracy on held-out known-class source clips
    paper_metric = "h_score"      # paper: the best H over the ten test-set thresholds
    known_choices: tuple[int, ...] = ()

    def known(self, job: SourceRun) -> int:
        """The job's K, one the release has files for."""
        known = job.settings["known"]
        if known not in self.known_choices:
            raise CmgError(f"--set {self.name}.known={known}: expected one of {', '.join(map(str, self.known_choices))} "
                           f"(the known-class subsets the release ships)")
        quantile, scale = job.settings["reject_quantile"], job.settings["reject_scale"]
        if not 0 <= quantile <= 1:
            raise CmgError(f"--set {self.name}.reject_quantile={quantile}: expected a fraction between 0 and 1")
        if not scale > 0:
            raise CmgError(f"--set {self.name}.reject_scale={scale}: expected a number > 0")
        return known

    def n_outputs(self, data: Any, fit: Labeled) -> int:
        return fit.known

    def decide(self, outputs: np.ndarray) -> np.ndarray:
        return decisions(outputs)

    def fold_decide(self, head: nn.Module, x_select: np.ndarray, y_select: np.ndarray,
                    settings: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
        """The clean rule: the threshold is a quantile of the held-out known-class clips' confidences."""
        threshold = quantile_threshold(confidence(predict(head, x_select))[1], float(settings["reject_quantile"]),
                                       float(settings["reject_scale"]))
        return lambda outputs: decisions(outputs, threshold)

    def epoch_metrics(self, labels: np.ndarray, decided: np.ndarray, batch_size: int) -> dict[str, float]:
        """`accuracy` of the head's class on known clips (clean selection), `h_score` at the paper's best
        threshold (paper selection)."""
        known = int(decided["known"][0])
        is_known = labels < known
        accuracy = 100.0 * float((decided["predicted"][is_known] == labels[is_known]).mean()) if is_known.any() else 0.0
        threshold = best_paper_threshold(labels, decided["predicted"], decided["conf"], known)
        h = harmonic_mean(*known_unknown_accuracy(labels, reject(decided["predicted"], decided["conf"], threshold,
                                                                 known), known))
        return {"accuracy": accuracy, "h_score": h}

    def score(self, data: Any, labels: np.ndarray, decided: np.ndarray, items: np.ndarray, batch_size: int) -> Scored:
        """Rejections at the clean threshold, or at the paper's best one on these clips; per clip: the true class,
        the open-set prediction (`known` = rejected), the confidence, the threshold and K."""
        known = int(decided["known"][0])
        threshold = decided["threshold"]
        if np.isnan(threshold).any():
            threshold = np.full(len(decided), best_paper_threshold(labels, decided["predicted"], decided["conf"], known))
        predictions = Predictions(items, {
            "y_true": labels, "y_pred": reject(decided["predicted"], decided["conf"], threshold, known),
            "confidence": decided["conf"], "threshold": threshold, "known": decided["known"]})
        return Scored(self.rescore(data, predictions), len(items), predictions)

    def rescore(self, data: Any, predictions: Mapping[str, np.ndarray]) -> dict[str, float]:
        return open_set_scores(predictions["y_true"], predictions["y_pred"], predictions["confidence"],
                               int(predictions["known"][0]), float(np.mean(predictions["threshold"])))
