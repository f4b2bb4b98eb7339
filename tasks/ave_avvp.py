"""AVE -> AVVP cross-dataset, cross-modal localization (docs/protocols.md, `## ave_avvp`), the whole task in one file.

Train data: AVE clips (`AVE-ECCV18-master/data/`, encoded split by split as the `ave` task encodes them, so both
tasks share cache entries) with 12-class segment labels (`AVE_AVVP/ave_avvp_labels.h5`, clips of
`AVE_AVVP/ave_avvp_order.h5`); test data: the `AVE_AVVP_eval_{audio,visual}_checked_combined.csv` streams with the
AVVP feature zips; classes: `AVE_AVVP/AVE_AVVP_Categories.txt`. Reader: `cmg_eval.data.ave_avvp`.
"""

from __future__ import annotations

from pathlib import Path

from cmg_eval.data.ave_avvp import AveAvvpData, load_ave_avvp
from cmg_eval.data.streams import STREAMS, stream_notes
from cmg_eval.headtask import HEAD_DIRECTIONS, Fold, HeadPlan, Labeled
from cmg_eval.localization import LOCALIZATION_METRICS, LocalizationTask, stream_labeled
from cmg_eval.registry import register_task
from cmg_eval.task import SourceRun, TaskMeta


@register_task("ave_avvp")
class AveAvvp(LocalizationTask):
    """A localization head trained on AVE (12 shared classes), scored on AVVP clips of another modality."""

    meta = TaskMeta(name="ave_avvp", version="1", primary_metric="seg_f1", metrics=LOCALIZATION_METRICS,
                    directions=HEAD_DIRECTIONS,
                    reference="Xia et al.: Achieving Cross Modal Generalization with Multimodal Unified "
                              "Representation, NeurIPS 2023 (AVE: Tian et al., ECCV 2018; AVVP: Tian et al., "
                              "ECCV 2020)",
                    files=("AVE-ECCV18-master/data/{visual,audio}_feature.h5", "AVE_AVVP/AVE_AVVP_Categories.txt",
                           "AVE_AVVP/ave_avvp_{labels,order}.h5",
                           "AVE_AVVP/AVE_AVVP_eval_{audio,visual}_checked_combined.csv",
                           "AVVP/feature/{audio,video}/zip/*.zip"))
    paper_metric = "legacy_f1"   # ave_avvp.py keeps the epoch with the best F1 and clips alpha with the head

    def load(self, data_root: Path) -> AveAvvpData:
        return load_ave_avvp(data_root)

    def files(self, data: AveAvvpData) -> list[Path]:
        return data.files()

    def feature_readers(self, data: AveAvvpData) -> list:
        return [*data.ave.features.values(), *(s.zips for s in data.streams.values())]

    def data_notes(self, data: AveAvvpData) -> dict:
        where = data.root / "AVE_AVVP_Categories.txt"
        warnings = [f"{where}: {note}" for note in data.label_map.target_differences(data.classes, where.name)]
        return {"warnings": warnings, **stream_notes(data.streams)}

    def about(self, data: AveAvvpData) -> dict:
        """Classes kept and clips per class on both sides (AVE names from the label map where it has them)."""
        ave_name = data.label_map.backward()
        ave_clips_any = data.labels[:, :, :-1].max((1, 2))
        ave_clips = data.labels[:, :, :-1].max(1).sum(0)
        stream_clips = {STREAMS[m]: s.table.labels[:, :, :-1].max(1).sum(0) for m, s in data.streams.items()}
        return {"label_map": data.label_map.label,
                "classes_kept": f"{len(data.classes)} (lines of AVE_AVVP_Categories.txt) of {data.ave_classes} AVE",
                "ave_clips": len(data.order), "ave_clips_background_only": int((ave_clips_any == 0).sum()),
                "selection_clips": int(data.selection.sum()),
                "avvp_clips": {STREAMS[m]: len(s.table.names) for m, s in data.streams.items()},
                "clips_per_class": {(f"{c} ({ave_name[c]})" if c in ave_name else c):
                                    {"ave": int(ave_clips[i]), **{k: int(v[i]) for k, v in stream_clips.items()}}
                                    for i, c in enumerate(data.classes)}}

    def plan(self, data: AveAvvpData, job: SourceRun) -> HeadPlan:
        """Clean: train on the AVE clips outside the selection fold, select on it, score every AVVP clip.
        Paper (the reference): train on every AVE clip of the order, score every AVVP clip."""
        ave = Labeled(data.source(job.source), data.labels)
        tests = {t: stream_labeled(data.streams[t], "avvp", t) for t in job.targets}
        if job.protocol == "paper":
            return HeadPlan([Fold(ave)], tests)
        return HeadPlan([Fold(ave.take(~data.selection), ave.take(data.selection))], tests)
