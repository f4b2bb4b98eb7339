"""AVE cross-modal event classification (docs/protocols.md, `## ave`), the whole task in one file.

Data: the AVE release (`cmg_eval.data.ave`): per-clip video and audio features, 28 event classes, train / val /
test split orders. Head: the reference clip head (`SemanticDecoder`).
"""

from __future__ import annotations

from pathlib import Path

from cmg_eval.data.ave import N_CLASSES, AveData, load_ave
from cmg_eval.headtask import CLASSIFICATION_METRICS, HEAD_DIRECTIONS, Fold, HeadPlan, HeadTask, Labeled
from cmg_eval.registry import register_task
from cmg_eval.task import SourceRun, TaskMeta


@register_task("ave")
class Ave(HeadTask):
    """Clip-level event classification: a head trained on one modality, scored on another."""

    meta = TaskMeta(name="ave", version="1", primary_metric="accuracy", metrics=CLASSIFICATION_METRICS,
                    directions=HEAD_DIRECTIONS,
                    reference="Tian, Shi, Li, Duan, Xu: Audio-Visual Event Localization in Unconstrained Videos, "
                              "ECCV 2018",
                    files=("AVE-ECCV18-master/data/{visual_feature,audio_feature,labels}.h5",
                           "AVE-ECCV18-master/data/{train,val,test}_order.h5"))

    def load(self, data_root: Path) -> AveData:
        return load_ave(data_root)

    def files(self, data: AveData) -> list[Path]:
        return data.files()

    def feature_readers(self, data: AveData) -> list:
        return list(data.features.values())

    def n_classes(self, data: AveData) -> int:
        return N_CLASSES

    @staticmethod
    def split(data: AveData, modality: str, split: str) -> Labeled:
        """One split's clips of one modality with their classes; predictions name clips by global index."""
        order = data.orders[split]
        return Labeled(data.source(modality, split), data.labels[order], items=order)

    def plan(self, data: AveData, job: SourceRun) -> HeadPlan:
        """Clean: train on the source train split, select on its val split, score each target's test split.
        Paper (the reference): train on the source train split, score each target's train split."""
        if job.protocol == "paper":
            return HeadPlan([Fold(self.split(data, job.source, "train"))],
                            {t: self.split(data, t, "train") for t in job.targets})
        return HeadPlan([Fold(self.split(data, job.source, "train"), self.split(data, job.source, "val"))],
                        {t: self.split(data, t, "test") for t in job.targets})
