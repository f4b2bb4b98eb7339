"""UCF101 (video) <-> VGGSound-AVEL40k (audio) cross-dataset classification (reference-protocol.md 3.4).

Data under `feature_extractor/feature_extractor/`: `ucf2vggsound.csv` (`category, video_id`),
`vggsound2ucf.csv` (`category, video_id`; its `split` column, if any, is ignored, as the reference), and the
class lists `UCF101sameVGGSound.txt` / `VGGSoundsameUCF101.txt` (16 lines in the paper), paired by line
position as the reference pairs them; the versioned `ucf_vgg` label map only names classes, and its
differences from the lists are reported, never refused.
Features: `UCF101/feature/video/zip/<video_id>.zip` and `vggsound40k/feature/audio/zip/<video_id>.zip`, padded
by repeating the last step or truncated to 10. Head: the reference `Semantic_Decoder` (the AVE head).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from cmg_eval.data.annotations import (ClipTable, LabelMap, assign_folds, read_class_list, read_clip_csv,
                                       read_label_map)
from cmg_eval.data.clipzips import ClipZips
from cmg_eval.errors import CmgError
from cmg_eval.heads import (CLEAN_TRAINING, SemanticDecoder, accuracy, clean_head, fit_clean, predict, seeded_head,
                            train)
from cmg_eval.metrics import classification
from cmg_eval.registry import register_task
from cmg_eval.task import FeatureSource, Scored, SourceRun, Task

STEPS = 10
N_FOLDS = 5
TEST_FOLD, SELECTION_FOLD = 0, 1   # same-modality rows score fold 0; fold 1 selects; the rest trains
LISTS = Path("feature_extractor") / "feature_extractor"
# modality -> dataset name, clip CSV, its columns, class list, feature folder, per-step shape
DATASETS = {
    "video": ("UCF101", "ucf2vggsound.csv", ("category", "video_id"), "UCF101sameVGGSound.txt",
              Path("UCF101") / "feature" / "video" / "zip", (7, 7, 512)),
    "audio": ("VGGSound", "vggsound2ucf.csv", ("category", "video_id"), "VGGSoundsameUCF101.txt",
              Path("vggsound40k") / "feature" / "audio" / "zip", (128,)),
}


@dataclass
class Dataset:
    """One side: its clips, their feature zips and their folds."""

    name: str
    table: ClipTable
    zips: ClipZips
    folds: np.ndarray

    def source(self, modality: str) -> FeatureSource:
        zips = self.zips
        return FeatureSource(key=f"ucf_vgg:{modality}:{zips.key()}", modality=modality, n_items=len(zips),
                             batches=lambda size: zips.iter_rows(np.arange(len(zips)), size), where=str(zips.folder),
                             part=f"data rows of {self.table.path.name} (item = row, from 0)")


@dataclass
class UcfVggData:
    root: Path
    classes: dict[str, list[str]]   # modality -> class list (line i of both lists is class i)
    datasets: dict[str, Dataset]    # modality -> dataset
    label_map: LabelMap

    @property
    def n_classes(self) -> int:
        return len(self.classes["video"])


def read_paired_lists(lists: Path) -> dict[str, list[str]]:
    """Both class lists; line i of one pairs with line i of the other, so their lengths must agree."""
    classes = {m: read_class_list(lists / spec[3], spec[0]) for m, spec in DATASETS.items()}
    if len(classes["video"]) != len(classes["audio"]):
        raise CmgError(f"{lists / DATASETS['audio'][3]}: {len(classes['audio'])} classes, but "
                       f"{DATASETS['video'][3]} has {len(classes['video'])}; expected lists paired line by line")
    return classes


def load_dataset(root: Path, modality: str, classes: list[str]) -> Dataset:
    name, csv_name, columns, list_name, folder, tail = DATASETS[modality]
    table = read_clip_csv(root / LISTS / csv_name, columns, classes, root / LISTS / list_name)
    zips = ClipZips(root / folder, table.ids, table.ids, tail, table.path, table.lines, pad=True, steps=STEPS,
                    what=f"{name} {modality} features")
    return Dataset(name, table, zips, assign_folds(table.ids, N_FOLDS, "ucf_vgg", table.labels))


@register_task("ucf_vgg")
class UcfVgg(Task):
    """Clip classification across datasets and modalities: UCF101 video <-> VGGSound audio, 16 shared classes."""

    name = "ucf_vgg"
    version = "1"
    primary_metric = "accuracy"
    metrics = ("accuracy", "macro_precision", "macro_recall", "macro_f1")
    directions = (("video", "audio"), ("audio", "video"), ("video", "video"), ("audio", "audio"))
    # The reference's head training (NEU launcher: 30 epochs), except the clean protocol's learning rate:
    # 4e-4 (`paper_lr`, used by the paper protocol) leaves the head under-trained on a few batches per epoch.
    defaults = {"epochs": 30, "batch_size": 80, "lr": 2e-3, "paper_lr": 4e-4, "milestones": [10, 20, 30],
                "gamma": 0.5, "clip_grad": 0.5, **CLEAN_TRAINING}

    def load(self, data_root: Path) -> UcfVggData:
        root = Path(data_root)
        classes = read_paired_lists(root / LISTS)
        datasets = {m: load_dataset(root, m, classes[m]) for m in DATASETS}
        return UcfVggData(root, classes, datasets, read_label_map("ucf_vgg"))

    def files(self, data: UcfVggData) -> list[Path]:
        lists = [data.root / LISTS / spec[3] for spec in DATASETS.values()]
        return [*lists, data.label_map.path, *(p for d in data.datasets.values() for p in (d.table.path, *d.zips.paths()))]

    def feature_readers(self, data: UcfVggData) -> list:
        return [d.zips for d in data.datasets.values()]

    def data_notes(self, data: UcfVggData) -> dict:
        pairs = list(zip(data.classes["video"], data.classes["audio"]))
        lists = f"{DATASETS['video'][3]} / {DATASETS['audio'][3]}"
        return {"warnings": [f"{data.root / LISTS}: {note}" for note in data.label_map.pair_differences(pairs, lists)]}

    def about(self, data: UcfVggData) -> dict:
        """Classes paired and clips per class in each dataset."""
        counts = {m: np.bincount(d.table.labels, minlength=data.n_classes) for m, d in data.datasets.items()}
        return {"label_map": data.label_map.label, "classes_kept": data.n_classes,
                "clips": {d.name: len(d.table.ids) for d in data.datasets.values()},
                "clips_per_class": {f"{u} / {v}": {"UCF101": int(counts["video"][i]), "VGGSound": int(counts["audio"][i])}
                                    for i, (u, v) in enumerate(zip(data.classes["video"], data.classes["audio"]))},
                "chance_accuracy": round(100 / data.n_classes, 2)}

    def epochs(self, job: SourceRun) -> int:
        if job.protocol == "paper":
            return max(int(job.settings["epochs"]) - (job.checkpoint_epoch + 1), 0)
        return int(job.settings["epochs"])

    def rescore(self, data: UcfVggData, predictions: dict[str, np.ndarray]) -> dict[str, float]:
        return classification(predictions["y_true"], predictions["y_pred"], data.n_classes)

    def _score(self, data: UcfVggData, head: nn.Module, inputs: np.ndarray, labels: np.ndarray,
               items: np.ndarray) -> Scored:
        predictions = {"item": items, "y_true": labels[items], "y_pred": predict(head, inputs[items]).argmax(axis=1)}
        return Scored(self.rescore(data, predictions), len(items), predictions)

    def run_source(self, job: SourceRun) -> dict[str, Scored]:
        data: UcfVggData = job.data
        inputs = {m: job.embed(data.datasets[m].source(m)) for m in (job.source, *job.targets)}
        if job.protocol == "paper":
            return self._run_paper(job, data, inputs)
        return self._run_clean(job, data, inputs)

    def _run_clean(self, job: SourceRun, data: UcfVggData, inputs: dict[str, np.ndarray]) -> dict[str, Scored]:
        """Train on three source folds, keep the epoch with the best accuracy on the selection fold (ties: lower
        loss there); score the
        whole other dataset, or the held-out test fold of the source dataset for the same-modality row."""
        source = data.datasets[job.source]
        fit, select = source.folds > SELECTION_FOLD, source.folds == SELECTION_FOLD
        if not fit.any() or not select.any():
            raise CmgError(f"{source.table.path}: {len(source.folds)} clips are too few for {N_FOLDS} folds")
        x, y = inputs[job.source], source.table.labels
        head = clean_head(lambda: SemanticDecoder(x.shape[-1], data.n_classes), job.seed, x[fit], job.settings)
        head = fit_clean(head, x[fit], y[fit], x[select], y[select], nn.functional.cross_entropy, accuracy,
                         job.settings, job.seed, int(job.settings["epochs"]), job.on_epoch)
        return {t: self._score(data, head, inputs[t], data.datasets[t].table.labels,
                               self._scored_rows(data, job.source, t)) for t in job.targets}

    @staticmethod
    def _scored_rows(data: UcfVggData, source: str, target: str) -> np.ndarray:
        folds = data.datasets[target].folds
        return np.flatnonzero(folds == TEST_FOLD) if target == source else np.arange(len(folds))

    def _run_paper(self, job: SourceRun, data: UcfVggData, inputs: dict[str, np.ndarray]) -> dict[str, Scored]:
        """The reference: train on every source clip, score every target clip each epoch (the source's own
        clips for the same-modality row), keep each target's best-accuracy epoch."""
        x, y = inputs[job.source], data.datasets[job.source].table.labels
        head = seeded_head(lambda: SemanticDecoder(x.shape[-1], data.n_classes), job.seed)
        best: dict[str, Scored] = {}

        def score_all(epoch: int, model: nn.Module) -> None:
            for target in job.targets:
                labels = data.datasets[target].table.labels
                scored = self._score(data, model, inputs[target], labels, np.arange(len(labels)))
                if target not in best or scored.metrics["accuracy"] > best[target].metrics["accuracy"]:
                    best[target] = scored
            job.on_epoch()

        epochs = self.epochs(job)
        if epochs == 0:
            raise CmgError(f"paper protocol: checkpoint epoch {job.checkpoint_epoch} leaves no downstream epochs "
                           f"of {job.settings['epochs']}")
        train(head, x, y, nn.functional.cross_entropy, {**job.settings, "lr": job.settings["paper_lr"]}, job.seed,
              score_all, epochs=epochs)
        return best
