"""AVVP cross-modal segment-level event localization (docs/protocols.md, `## avvp`), the whole task in one file.

Data: `AVVP/data/AVVP_Categories.txt` (class i = line i; 25 lines in the release),
`AVVP/data/AVVP_eval_{audio,visual}_checked_combined.csv` (tab-separated, one row per clip) and
`AVVP/feature/{audio,video}/zip/<11-char id>.zip`. Train and test are the same clips with per-modality labels,
so the clean protocol cross-fits 5 clip folds. Head and losses: `cmg_eval.localization`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmg_eval.data.annotations import assign_folds_multilabel, read_class_list
from cmg_eval.data.streams import STREAMS, Stream, load_stream, stream_files, stream_notes
from cmg_eval.errors import CmgError
from cmg_eval.headtask import HEAD_DIRECTIONS, Fold, HeadPlan
from cmg_eval.localization import LOCALIZATION_METRICS, LocalizationTask, stream_labeled
from cmg_eval.registry import register_task
from cmg_eval.task import SourceRun, TaskMeta

N_FOLDS = 5


def clip_classes(streams: dict[str, Stream]) -> tuple[list[str], np.ndarray]:
    """The clips of all streams (sorted) and the classes each has in any stream, (clips, classes) boolean."""
    present: dict[str, np.ndarray] = {}
    for stream in streams.values():
        for name, labels in zip(stream.table.names, stream.table.labels[..., :-1].max(1) > 0):
            present[name] = present.get(name, np.zeros(len(labels), bool)) | labels
    clips = sorted(present)
    return clips, np.array([present[c] for c in clips])


@dataclass
class AvvpData:
    """Validated AVVP release: per-modality streams and the clip fold of each row."""

    root: Path
    classes: list[str]
    streams: dict[str, Stream]
    folds: dict[str, np.ndarray]


@register_task("avvp")
class Avvp(LocalizationTask):
    """Segment-level event localization: a head trained on one modality's events, scored on another's."""

    meta = TaskMeta(name="avvp", version="1", primary_metric="seg_f1", metrics=LOCALIZATION_METRICS,
                    directions=HEAD_DIRECTIONS,
                    reference="Tian, Li, Xu: Unified Multisensory Perception: Weakly-Supervised Audio-Visual Video "
                              "Parsing, ECCV 2020",
                    files=("AVVP/data/AVVP_Categories.txt",
                           "AVVP/data/AVVP_eval_{audio,visual}_checked_combined.csv",
                           "AVVP/feature/{audio,video}/zip/*.zip"))
    paper_metric = "legacy_precision"   # NEU avvp.py keeps the epoch with the best precision
    clip_loss = False                   # and leaves the loss weights unclipped

    def load(self, data_root: Path) -> AvvpData:
        root = Path(data_root) / "AVVP"
        classes = read_class_list(root / "data" / "AVVP_Categories.txt", "AVVP")
        streams = {m: load_stream(root / "data" / f"AVVP_eval_{stream}_checked_combined.csv", classes,
                                  root / "feature", m) for m, stream in STREAMS.items()}
        # folds over the union of clips, so a clip sits in the same fold in both streams
        # and stratified by class, so no class is missing from the folds a head is fitted on (unstratified, the
        # 8 clips of a class in a 100-clip folder could fall into two folds and never be learned)
        clips, present = clip_classes(streams)
        fold_of = dict(zip(clips, assign_folds_multilabel(clips, present, N_FOLDS, "avvp").tolist()))
        folds = {m: np.array([fold_of[n] for n in s.table.names], np.int64) for m, s in streams.items()}
        return AvvpData(root, classes, streams, folds)

    def files(self, data: AvvpData) -> list[Path]:
        return [data.root / "data" / "AVVP_Categories.txt", *stream_files(data.streams)]

    def feature_readers(self, data: AvvpData) -> list:
        return [s.zips for s in data.streams.values()]

    def data_notes(self, data: AvvpData) -> dict:
        return stream_notes(data.streams)

    def about(self, data: AvvpData) -> dict:
        names = {m: set(s.table.names) for m, s in data.streams.items()}
        labels = {m: s.table.labels for m, s in data.streams.items()}
        # features are keyed by the first 11 characters of the clip name, so two cuts of one video share a file
        shared = {STREAMS[m]: len(set(s.table.names)) - len(set(s.table.feature_ids())) for m, s in data.streams.items()}
        return {"clips": {STREAMS[m]: len(s.table.names) for m, s in data.streams.items()},
                "clips_in_both_streams": len(names["audio"] & names["video"]), "clips_sharing_a_feature_file": shared,
                "event_segments": {STREAMS[m]: int(l[..., :-1].sum()) for m, l in labels.items()},
                "classes": len(data.classes), "folds": N_FOLDS}

    def plan(self, data: AvvpData, job: SourceRun) -> HeadPlan:
        """Clean: for each fold k, train on three source folds, select on fold k+1, score fold k of every target.
        Paper (the reference): train on every source clip, score every target clip."""
        tests = {t: stream_labeled(data.streams[t], self.name, t) for t in job.targets}
        source = stream_labeled(data.streams[job.source], self.name, job.source)
        if job.protocol == "paper":
            return HeadPlan([Fold(source)], tests)
        folds, source_folds = [], data.folds[job.source]
        for fold in range(N_FOLDS):
            select = source_folds == (fold + 1) % N_FOLDS
            fit = (source_folds != fold) & ~select
            if not select.any() or not fit.any():
                raise CmgError(f"{data.streams[job.source].table.path}: {len(source_folds)} clips are too few for "
                               f"{N_FOLDS}-fold cross-fitting, expected at least {N_FOLDS}")
            folds.append(Fold(source.take(fit), source.take(select), {t: data.folds[t] == fold for t in job.targets}))
        return HeadPlan(folds, tests)
