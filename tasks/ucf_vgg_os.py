"""Open-set UCF101 (video) <-> VGGSound (audio) (`cmg_eval.openset`): a head on the first K of the 16 paired
classes of one dataset, scored on every clip of the other, classes >= K to be rejected.

Data: the `ucf_vgg` release files (class lists paired by line, full clip CSVs, feature zips) and the reference's
known-class training subsets `OSCMG(cvpr25)/data/UCF_VGG_OSCMG/{ucf2vggsound,vggsound2ucf}_{8,12}.csv`
(`category, video_id`: clips of the full CSV of that dataset, of the first K classes). The reference's subsets are
not symmetric: `vggsound2ucf_8` holds 7 classes and the `_12` files 11, so a known class can have no training
clip on one side; the head still has K outputs (as the reference's), and `about` lists, per K and side, the known
classes with and without training clips and the known and unknown clips scored. K: `--set ucf_vgg_os.known=12`
(default 8).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmg_eval.data.openset import OPEN_SET, KnownSubsets, class_counts, read_known_csvs
from cmg_eval.data.ucf_vgg import DATASETS, LISTS, N_FOLDS, Dataset, load_dataset, read_paired_lists
from cmg_eval.errors import CmgError
from cmg_eval.headtask import Fold, HeadPlan, Labeled
from cmg_eval.openset import REFERENCE, KnownLabeled, OpenSetTask, absent_note, open_set_defaults, open_set_meta
from cmg_eval.registry import register_task
from cmg_eval.task import SourceRun

KNOWN = (8, 12)
FOLDER = OPEN_SET / "UCF_VGG_OSCMG"
SUBSETS = {"video": "ucf2vggsound", "audio": "vggsound2ucf"}   # modality -> subset file stem
TEST_FOLD, SELECTION_FOLD = 0, 1   # clean protocol: fold 0 is scored, fold 1 selects, the rest trains


@dataclass
class UcfVggOsData:
    root: Path
    classes: dict[str, list[str]]          # modality -> class list (line i of both lists is class i)
    datasets: dict[str, Dataset]           # modality -> its dataset (UCF101 video, VGGSound audio)
    known: dict[str, KnownSubsets]         # modality -> K -> training rows of that dataset

    def clips(self, modality: str) -> Labeled:
        dataset = self.datasets[modality]
        return Labeled(dataset.source(modality), dataset.table.labels)


@register_task("ucf_vgg_os")
class UcfVggOs(OpenSetTask):
    """Open-set classification across datasets and modalities: 8 (or 12) known classes of the 16 pairs."""

    meta = open_set_meta("ucf_vgg_os", REFERENCE + "; UCF101: Soomro et al. 2012; VGGSound: Chen et al., ICASSP 2020",
                         ("feature_extractor/feature_extractor/{ucf2vggsound,vggsound2ucf}.csv",
                          "feature_extractor/feature_extractor/{UCF101sameVGGSound,VGGSoundsameUCF101}.txt",
                          "OSCMG(cvpr25)/data/UCF_VGG_OSCMG/{ucf2vggsound,vggsound2ucf}_{8,12}.csv",
                          "UCF101/feature/video/zip/*.zip", "vggsound40k/feature/audio/zip/*.zip"))
    known_choices = KNOWN
    defaults = open_set_defaults(KNOWN[0], epochs=25)   # the reference's launcher: 25 epochs

    def load(self, data_root: Path) -> UcfVggOsData:
        root = Path(data_root)
        classes = read_paired_lists(root / LISTS)
        datasets = {m: load_dataset(root, m, classes[m]) for m in DATASETS}
        known = {m: read_known_csvs(lambda k, m=m: root / FOLDER / f"{SUBSETS[m]}_{k}.csv", KNOWN,
                                    datasets[m].table, classes[m], root / LISTS / DATASETS[m][3])
                 for m in DATASETS}
        return UcfVggOsData(root, classes, datasets, known)

    def files(self, data: UcfVggOsData) -> list[Path]:
        lists = [data.root / LISTS / spec[3] for spec in DATASETS.values()]
        return [*lists, *(p for k in data.known.values() for p in k.paths.values()),
                *(p for d in data.datasets.values() for p in (d.table.path, *d.zips.paths()))]

    def feature_readers(self, data: UcfVggOsData) -> list:
        return [d.zips for d in data.datasets.values()]

    def plan(self, data: UcfVggOsData, job: SourceRun) -> HeadPlan:
        """Paper (the reference): train on the source dataset's K-class subset, score every clip of each target's
        dataset. Clean: train on the subset's clips outside folds 0 and 1 of the source dataset, choose the epoch
        and the threshold on the subset's clips in fold 1 (a known class without training clips is not among them),
        score every clip of the other dataset, and fold 0 of the source dataset for the same-modality row."""
        known = self.known(job)
        rows = data.known[job.source].get(known)
        source = data.clips(job.source)
        if job.protocol == "paper":
            return HeadPlan([Fold(KnownLabeled(source.source, source.labels, rows, known=known))],
                            {t: data.clips(t) for t in job.targets})
        folds = data.datasets[job.source].folds
        fit = rows[folds[rows] > SELECTION_FOLD]
        select = rows[folds[rows] == SELECTION_FOLD]
        if not len(fit) or not len(select):
            raise CmgError(f"{data.known[job.source].paths[known]}: too few clips for {N_FOLDS} folds (training "
                           f"{len(fit)}, selection {len(select)})")
        tests = {t: data.clips(t).take(np.flatnonzero(folds == TEST_FOLD)) if t == job.source else data.clips(t)
                 for t in job.targets}
        return HeadPlan([Fold(KnownLabeled(source.source, source.labels, fit, known=known), source.take(select))],
                        tests)

    def about(self, data: UcfVggOsData) -> dict:
        """Per K and training dataset (paper protocol): the known classes with and without training clips, and the
        known and unknown clips of the other dataset scored."""
        about = {}
        for source, target in (("video", "audio"), ("audio", "video")):
            train, test = data.datasets[source], data.datasets[target]
            for k, rows in data.known[source].rows.items():
                about[f"known={k} {train.name}->{test.name}"] = class_counts(
                    train.table.labels[rows], test.table.labels, k, data.classes[source])
        return about

    def data_notes(self, data: UcfVggOsData) -> dict:
        warnings = []
        for modality, subsets in data.known.items():
            for k, rows in subsets.rows.items():
                labels = data.datasets[modality].table.labels
                untrained = sorted(set(range(k)) - set(labels[rows].tolist()))
                if untrained:
                    warnings.append(f"{subsets.paths[k]}: no clips of known classes "
                                    f"{', '.join(data.classes[modality][c] for c in untrained)}; the {k}-way head "
                                    f"never sees them")
                warnings += absent_note(str(data.datasets[modality].table.path), labels, k)
        return {"warnings": warnings}
