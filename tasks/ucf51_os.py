"""Open-set UCF51 (`cmg_eval.openset`): a head on the first K of the 51 UCF101 classes with audio, trained on one
modality and scored on the other, classes >= K to be rejected.

Data under `OSCMG(cvpr25)/data/UCF_OSCMG/`: the class list `UCF51Categories.txt` (51 lines; a clip's class is its
category's line), the clip list `ucf51checked.csv` (`category, video_id`) and its known-class training subsets
`ucf51checked_{17,34}.csv` (clips of that list, of the first K classes). Features of both modalities of every clip:
`UCF101ALL/feature/{video,audio}/zip/<video_id>.zip`, (T, 7, 7, 512) and (T, 128), cut or padded to 10 steps.
K: `--set ucf51_os.known=34` (default 17).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmg_eval.constants import FEATURE_TAILS, STEPS
from cmg_eval.data.annotations import ClipTable, assign_folds, read_class_list, read_clip_csv
from cmg_eval.data.clipzips import ClipZips
from cmg_eval.data.openset import CLIP_COLUMNS, OPEN_SET, KnownSubsets, class_counts, read_known_csvs
from cmg_eval.errors import CmgError
from cmg_eval.headtask import Fold, HeadPlan, Labeled
from cmg_eval.openset import REFERENCE, KnownLabeled, OpenSetTask, absent_note, open_set_defaults, open_set_meta
from cmg_eval.registry import register_task
from cmg_eval.task import FeatureSource, SourceRun

KNOWN = (17, 34)
FOLDER = OPEN_SET / "UCF_OSCMG"
FEATURES = Path("UCF101ALL") / "feature"
N_FOLDS = 5
TEST_FOLD, SELECTION_FOLD = 0, 1   # clean protocol: fold 0 is scored, fold 1 selects, the rest trains


@dataclass
class Ucf51Data:
    root: Path
    classes: list[str]
    table: ClipTable
    zips: dict[str, ClipZips]     # modality -> feature zips of the table's clips
    known: KnownSubsets           # K -> training rows of the table
    folds: np.ndarray

    def clips(self, modality: str) -> Labeled:
        zips = self.zips[modality]
        source = FeatureSource(key=f"ucf51_os:{modality}:{zips.key()}", modality=modality, n_items=len(zips),
                               batches=lambda size: zips.iter_rows(np.arange(len(zips)), size),
                               where=str(zips.folder), part=f"rows of {self.table.path.name} (item = row, from 0)")
        return Labeled(source, self.table.labels)


@register_task("ucf51_os")
class Ucf51Os(OpenSetTask):
    """Open-set clip classification on UCF51: 17 (or 34) known classes, the other 34 (17) to reject."""

    meta = open_set_meta("ucf51_os", REFERENCE + "; UCF101: Soomro et al. 2012",
                         ("OSCMG(cvpr25)/data/UCF_OSCMG/{UCF51Categories.txt,ucf51checked.csv}",
                          "OSCMG(cvpr25)/data/UCF_OSCMG/ucf51checked_{17,34}.csv",
                          "UCF101ALL/feature/{video,audio}/zip/*.zip"))
    known_choices = KNOWN
    defaults = open_set_defaults(KNOWN[0], epochs=16)   # the reference's launcher: 16 epochs

    def load(self, data_root: Path) -> Ucf51Data:
        root = Path(data_root)
        list_path = root / FOLDER / "UCF51Categories.txt"
        classes = read_class_list(list_path, "UCF51")
        table = read_clip_csv(root / FOLDER / "ucf51checked.csv", CLIP_COLUMNS, classes, list_path)
        zips = {m: ClipZips(root / FEATURES / m / "zip", table.ids, table.ids, FEATURE_TAILS[m], table.path,
                            table.lines, pad=True, steps=STEPS, what=f"UCF101 {m} features")
                for m in ("video", "audio")}
        known = read_known_csvs(lambda k: root / FOLDER / f"ucf51checked_{k}.csv", KNOWN, table, classes, list_path)
        return Ucf51Data(root, classes, table, zips, known, assign_folds(table.ids, N_FOLDS, "ucf51_os", table.labels))

    def files(self, data: Ucf51Data) -> list[Path]:
        return [data.root / FOLDER / "UCF51Categories.txt", data.table.path, *data.known.paths.values(),
                *(p for zips in data.zips.values() for p in zips.paths())]

    def feature_readers(self, data: Ucf51Data) -> list:
        return list(data.zips.values())

    def plan(self, data: Ucf51Data, job: SourceRun) -> HeadPlan:
        """Paper (the reference): train on the K-class subset's clips, score every clip of the list in the target
        modality. Clean: train on the subset's clips outside folds 0 and 1, choose the epoch and the threshold on
        the subset's clips in fold 1 (source modality), score fold 0 (every class) in each target."""
        known = self.known(job)
        rows = data.known.get(known)
        source = data.clips(job.source)
        if job.protocol == "paper":
            return HeadPlan([Fold(KnownLabeled(source.source, source.labels, rows, known=known))],
                            {t: data.clips(t) for t in job.targets})
        fit = rows[data.folds[rows] > SELECTION_FOLD]
        select = rows[data.folds[rows] == SELECTION_FOLD]
        if not len(fit) or not len(select):
            raise CmgError(f"{data.known.paths[known]}: too few clips for {N_FOLDS} folds (training {len(fit)}, "
                           f"selection {len(select)})")
        test = np.flatnonzero(data.folds == TEST_FOLD)
        return HeadPlan([Fold(KnownLabeled(source.source, source.labels, fit, known=known), source.take(select))],
                        {t: data.clips(t).take(test) for t in job.targets})

    def about(self, data: Ucf51Data) -> dict:
        """Per K: the known classes trained and the known and unknown clips scored (paper: every clip; clean: fold
        0)."""
        labels = data.table.labels
        test = labels[data.folds == TEST_FOLD]
        return {f"known={k}": {"paper": class_counts(labels[rows], labels, k, data.classes),
                               "clean": class_counts(labels[rows[data.folds[rows] > SELECTION_FOLD]], test, k,
                                                     data.classes)}
                for k, rows in data.known.rows.items()}

    def data_notes(self, data: Ucf51Data) -> dict:
        labels = data.table.labels
        return {"warnings": [line for k in data.known.rows for line in absent_note(str(data.table.path), labels, k)]}
