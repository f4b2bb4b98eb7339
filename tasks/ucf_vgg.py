"""UCF101 (video) <-> VGGSound-AVEL40k (audio) cross-dataset classification (docs/protocols.md, `## ucf_vgg`).

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

from cmg_eval.constants import FEATURE_TAILS, STEPS
from cmg_eval.data.annotations import (ClipTable, LabelMap, assign_folds, read_class_list, read_clip_csv,
                                       read_label_map)
from cmg_eval.data.clipzips import ClipZips
from cmg_eval.errors import CmgError
from cmg_eval.headtask import Fold, HeadPlan, HeadTask, Labeled
from cmg_eval.registry import register_task
from cmg_eval.task import FeatureSource, SourceRun

N_FOLDS = 5
TEST_FOLD, SELECTION_FOLD = 0, 1   # same-modality rows score fold 0; fold 1 selects; the rest trains
LISTS = Path("feature_extractor") / "feature_extractor"
# modality -> dataset name, clip CSV, its columns, class list, feature folder, per-step shape
DATASETS = {
    "video": ("UCF101", "ucf2vggsound.csv", ("category", "video_id"), "UCF101sameVGGSound.txt",
              Path("UCF101") / "feature" / "video" / "zip", FEATURE_TAILS["video"]),
    "audio": ("VGGSound", "vggsound2ucf.csv", ("category", "video_id"), "VGGSoundsameUCF101.txt",
              Path("vggsound40k") / "feature" / "audio" / "zip", FEATURE_TAILS["audio"]),
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

    def labeled(self, modality: str) -> Labeled:
        return Labeled(self.source(modality), self.table.labels)


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
class UcfVgg(HeadTask):
    """Clip classification across datasets and modalities: UCF101 video <-> VGGSound audio, 16 shared classes."""

    name = "ucf_vgg"
    version = "1"
    # HEAD_DEFAULTS: the reference's head training (30 epochs), the clean protocol at 2e-3 (4e-4, the paper
    # protocol's `paper_lr`, leaves the head under-trained on a few batches per epoch).

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

    def n_classes(self, data: UcfVggData) -> int:
        return data.n_classes

    def plan(self, data: UcfVggData, job: SourceRun) -> HeadPlan:
        """Clean: train on three source folds, select on fold 1, score the whole other dataset or, for the
        same-modality row, the source dataset's held-out fold 0. Paper (the reference): train on every source clip,
        score every target clip (the source's own clips for the same-modality row)."""
        source = data.datasets[job.source]
        every = {t: data.datasets[t].labeled(t) for t in job.targets}
        if job.protocol == "paper":
            return HeadPlan([Fold(source.labeled(job.source))], every)
        fit, select = source.folds > SELECTION_FOLD, source.folds == SELECTION_FOLD
        if not fit.any() or not select.any():
            raise CmgError(f"{source.table.path}: {len(source.folds)} clips are too few for {N_FOLDS} folds")
        tests = {t: every[t].take(np.flatnonzero(source.folds == TEST_FOLD)) if t == job.source else every[t]
                 for t in job.targets}
        labeled = source.labeled(job.source)
        return HeadPlan([Fold(labeled.take(fit), labeled.take(select))], tests)
