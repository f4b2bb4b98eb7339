"""AVE -> AVVP cross-dataset, cross-modal localization (reference-protocol.md 3.3), the whole task in one file.

Train data: AVE features (`AVE-ECCV18-master/data/{visual,audio}_feature.h5`, read by the AVE task's reader and
encoded split by split as it does, so both tasks share cache entries) with the 12-class labels
`AVE_AVVP/ave_avvp_labels.h5` (`avadataset`, rows aligned with the AVE arrays) of the clips in
`AVE_AVVP/ave_avvp_order.h5` (`order`). Test data: `AVE_AVVP/AVE_AVVP_eval_{audio,visual}_checked_combined.csv`
with the AVVP feature zips. Class list `AVE_AVVP/AVE_AVVP_Categories.txt`: line i names label column i (12 lines
in the paper), as the reference pairs them; the versioned `ave_avvp` label map only names the AVE side in
reports, and its differences from the list are reported, never refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmg_eval.data.ave import AveData, check_segment_labels, load_ave, read_order
from cmg_eval.data.annotations import LabelMap, assign_folds, read_class_list, read_label_map
from cmg_eval.data.h5 import H5Array
from cmg_eval.errors import CmgError
from cmg_eval.registry import register_task
from cmg_eval.task import FeatureSource, Scored, SourceRun, Task
from tasks.avvp import (LOCALIZATION_DEFAULTS, LOCALIZATION_METRICS, STREAMS, Stream, detect, fit_paper,
                        fit_selected, load_stream, localization_scored, rescore_localization, stream_files,
                        stream_notes)

STEPS = 10
N_AVE_CLASSES = 28
SELECTION_FOLDS = 5  # one fold of five (20%) of the AVE clips selects the epoch


@dataclass
class AveAvvpData:
    """AVE training clips with their 12-class labels, the AVVP test streams, and the label map."""

    root: Path
    classes: list[str]
    ave: AveData                    # the AVE release: features of every clip, split orders
    order: np.ndarray               # AVE clips used
    labels: np.ndarray              # (len(order), 10, 13) float32
    selection: np.ndarray           # (len(order),) True for the 20% selection fold
    streams: dict[str, Stream]      # AVVP test clips per modality
    label_map: LabelMap
    ave_classes: int

    def source(self, modality: str) -> FeatureSource:
        features, order = self.ave.features[modality], self.order
        order_hash = hashlib.sha256(order.tobytes()).hexdigest()[:16]
        return FeatureSource(key=f"ave_avvp:{self.ave.fingerprints[modality]}:{order_hash}:{modality}",
                             modality=modality, n_items=len(order), batches=lambda size: features.iter_rows(order, size),
                             where=str(features.path), part="clips of ave_avvp_order.h5")

    def embed_ave(self, job: SourceRun, modality: str) -> np.ndarray:
        """Embeddings of the order's clips; encoded split by split as the AVE task encodes them when its splits
        cover them (one cache entry then serves both tasks), else as a source of their own."""
        where: dict[int, tuple[str, int]] = {}
        for split, clips in self.ave.orders.items():
            for row, clip in enumerate(clips.tolist()):
                where.setdefault(clip, (split, row))
        if not all(clip in where for clip in self.order.tolist()):
            return job.embed(self.source(modality))
        encoded = {split: job.embed(self.ave.source(modality, split)) for split in self.ave.orders}
        return np.stack([encoded[split][row] for split, row in (where[clip] for clip in self.order.tolist())])


@register_task("ave_avvp")
class AveAvvp(Task):
    """A localization head trained on AVE (12 shared classes), scored on AVVP clips of another modality."""

    name = "ave_avvp"
    version = "1"
    primary_metric = "seg_f1"
    metrics = LOCALIZATION_METRICS
    directions = (("video", "audio"), ("audio", "video"), ("video", "video"), ("audio", "audio"))
    defaults = dict(LOCALIZATION_DEFAULTS)

    def load(self, data_root: Path) -> AveAvvpData:
        data_root = Path(data_root)
        root = data_root / "AVE_AVVP"
        classes = read_class_list(root / "AVE_AVVP_Categories.txt", "AVE->AVVP")
        ave = load_ave(data_root)
        labels_file = H5Array(root / "ave_avvp_labels.h5", "avadataset", (STEPS, len(classes) + 1),
                              what=f"AVE segment labels: one column per line of AVE_AVVP_Categories.txt "
                                   f"({len(classes)}), then background")
        n_clips = len(ave.features["video"])
        if len(labels_file) != n_clips:
            raise CmgError(f"{labels_file.path}: {len(labels_file)} clips, expected {n_clips} as in "
                           f"{ave.features['video'].path}")
        order = read_order(root / "ave_avvp_order.h5", n_clips)
        labels = labels_file.read_rows(order)
        labels_file.close()
        check_segment_labels(labels, labels_file.path, len(classes), False, "segment labels", clips=order)
        clip_class = labels[:, :, :-1].max(1).argmax(1)
        selection = assign_folds([str(i) for i in order], SELECTION_FOLDS, "ave_avvp", clip_class) == 0
        streams = {m: load_stream(root / f"AVE_AVVP_eval_{stream}_checked_combined.csv", classes,
                                  data_root / "AVVP" / "feature", m) for m, stream in STREAMS.items()}
        return AveAvvpData(root, classes, ave, order, labels, selection, streams, read_label_map("ave_avvp"),
                           N_AVE_CLASSES)

    def files(self, data: AveAvvpData) -> list[Path]:
        return [data.root / "AVE_AVVP_Categories.txt", data.root / "ave_avvp_labels.h5", data.root / "ave_avvp_order.h5",
                *data.ave.files(), data.label_map.path, *stream_files(data.streams)]

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

    def epochs(self, job: SourceRun) -> int:
        if job.protocol == "paper":
            return max(int(job.settings["epochs"]) - (job.checkpoint_epoch + 1), 0)
        return int(job.settings["epochs"])

    def rescore(self, data: AveAvvpData, predictions: dict[str, np.ndarray]) -> dict[str, float]:
        return rescore_localization(predictions)

    def run_source(self, job: SourceRun) -> dict[str, Scored]:
        data: AveAvvpData = job.data
        x_ave = data.embed_ave(job, job.source)
        targets = {t: (job.embed(data.streams[t].source("avvp", t)), data.streams[t].table.labels)
                   for t in job.targets}
        if job.protocol == "paper":
            # ave_avvp.py keeps the epoch with the best F1 and clips alpha with the other modules
            return fit_paper(job, x_ave, data.labels, targets, "legacy_f1", clip_loss=True)
        head = fit_selected(job, x_ave[~data.selection], data.labels[~data.selection], x_ave[data.selection],
                            data.labels[data.selection], int(job.settings["epochs"]))
        batch = int(job.settings["batch_size"])
        return {t: localization_scored(labels, detect(head, inputs), np.arange(len(labels)), batch)
                for t, (inputs, labels) in targets.items()}
