"""The UCF101 / VGGSound-AVEL40k release of the `ucf_vgg` task, read and checked.

Under `feature_extractor/feature_extractor/`: `ucf2vggsound.csv` (`category, video_id`),
`vggsound2ucf.csv` (`category, video_id`; its `split` column, if any, is ignored, as the reference), and the
class lists `UCF101sameVGGSound.txt` / `VGGSoundsameUCF101.txt` (16 lines in the paper), paired by line
position as the reference pairs them; the versioned `ucf_vgg` label map only names classes, and its
differences from the lists are reported, never refused.
Features: `UCF101/feature/video/zip/<video_id>.zip` and `vggsound40k/feature/audio/zip/<video_id>.zip`, padded
by repeating the last step or truncated to 10.
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
from cmg_eval.task import FeatureSource

N_FOLDS = 5
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


@dataclass
class UcfVggData:
    root: Path
    classes: dict[str, list[str]]   # modality -> class list (line i of both lists is class i)
    datasets: dict[str, Dataset]    # modality -> dataset
    label_map: LabelMap

    @property
    def n_classes(self) -> int:
        return len(self.classes["video"])

    def files(self) -> list[Path]:
        lists = [self.root / LISTS / spec[3] for spec in DATASETS.values()]
        return [*lists, self.label_map.path, *(p for d in self.datasets.values() for p in (d.table.path, *d.zips.paths()))]


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


def load_ucf_vgg(data_root: Path) -> UcfVggData:
    """Both class lists, both clip tables with their feature zips and folds, and the label map."""
    root = Path(data_root)
    classes = read_paired_lists(root / LISTS)
    datasets = {m: load_dataset(root, m, classes[m]) for m in DATASETS}
    return UcfVggData(root, classes, datasets, read_label_map("ucf_vgg"))
