"""UCF101 (video) <-> VGGSound-AVEL40k (audio) cross-dataset classification (docs/protocols.md, `## ucf_vgg`).

Data (`cmg_eval.data.ucf_vgg`) under `feature_extractor/feature_extractor/`: `ucf2vggsound.csv` (`category, video_id`),
`vggsound2ucf.csv` (`category, video_id`; its `split` column, if any, is ignored, as the reference), and the
class lists `UCF101sameVGGSound.txt` / `VGGSoundsameUCF101.txt` (16 lines in the paper), paired by line
position as the reference pairs them; the versioned `ucf_vgg` label map only names classes, and its
differences from the lists are reported, never refused.
Features: `UCF101/feature/video/zip/<video_id>.zip` and `vggsound40k/feature/audio/zip/<video_id>.zip`, padded
by repeating the last step or truncated to 10. Head: the reference `Semantic_Decoder` (the AVE head).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmg_eval.data.ucf_vgg import DATASETS, LISTS, N_FOLDS, UcfVggData, load_ucf_vgg
from cmg_eval.errors import CmgError
from cmg_eval.headtask import CLASSIFICATION_METRICS, HEAD_DIRECTIONS, Fold, HeadPlan, HeadTask, Labeled
from cmg_eval.registry import register_task
from cmg_eval.task import SourceRun, TaskMeta

TEST_FOLD, SELECTION_FOLD = 0, 1   # same-modality rows score fold 0; fold 1 selects; the rest trains


@register_task("ucf_vgg")
class UcfVgg(HeadTask):
    """Clip classification across datasets and modalities: UCF101 video <-> VGGSound audio, 16 shared classes."""

    meta = TaskMeta(name="ucf_vgg", version="1", primary_metric="accuracy", metrics=CLASSIFICATION_METRICS,
                    directions=HEAD_DIRECTIONS,
                    reference="Xia et al.: Achieving Cross Modal Generalization with Multimodal Unified "
                              "Representation, NeurIPS 2023 (UCF101: Soomro et al. 2012; VGGSound: Chen et al., "
                              "ICASSP 2020)",
                    files=("feature_extractor/feature_extractor/{ucf2vggsound,vggsound2ucf}.csv",
                           "feature_extractor/feature_extractor/{UCF101sameVGGSound,VGGSoundsameUCF101}.txt",
                           "UCF101/feature/video/zip/*.zip", "vggsound40k/feature/audio/zip/*.zip"))
    # HEAD_DEFAULTS: the reference's head training (30 epochs), the clean protocol at 2e-3 (4e-4, the paper
    # protocol's `paper_lr`, leaves the head under-trained on a few batches per epoch).

    def load(self, data_root: Path) -> UcfVggData:
        return load_ucf_vgg(data_root)

    def files(self, data: UcfVggData) -> list[Path]:
        return data.files()

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
        every = {t: Labeled(data.datasets[t].source(t), data.datasets[t].table.labels) for t in job.targets}
        labeled = Labeled(source.source(job.source), source.table.labels)
        if job.protocol == "paper":
            return HeadPlan([Fold(labeled)], every)
        fit, select = source.folds > SELECTION_FOLD, source.folds == SELECTION_FOLD
        if not fit.any() or not select.any():
            raise CmgError(f"{source.table.path}: {len(source.folds)} clips are too few for {N_FOLDS} folds")
        tests = {t: every[t].take(np.flatnonzero(source.folds == TEST_FOLD)) if t == job.source else every[t]
                 for t in job.targets}
        return HeadPlan([Fold(labeled.take(fit), labeled.take(select))], tests)
