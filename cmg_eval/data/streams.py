"""AVVP-style annotation streams: a tab-separated CSV of events per clip and one feature zip per clip, per
modality (the test clips of the `avvp` and `ave_avvp` tasks)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmg_eval.constants import FEATURE_TAILS, STEPS
from cmg_eval.data.annotations import EventTable, read_event_csv
from cmg_eval.data.clipzips import ClipZips
from cmg_eval.task import FeatureSource

STREAMS = {"audio": "audio", "video": "visual"}         # modality -> annotation stream
FEATURES = {"audio": (FEATURE_TAILS["audio"], True, "VGGish audio"),   # per-step shape, padded, what
            "video": (FEATURE_TAILS["video"], False, "VGG19 pool5 video")}

@dataclass
class Stream:
    """One modality's annotated clips and their feature zips, row-aligned."""

    table: EventTable
    zips: ClipZips

    def source(self, task: str, modality: str) -> FeatureSource:
        zips = self.zips
        return FeatureSource(key=f"{task}:{modality}:{zips.key()}", modality=modality, n_items=len(zips),
                             batches=lambda size: zips.iter_rows(np.arange(len(zips)), size), where=str(zips.folder),
                             part=f"data rows of {self.table.path.name} (item = row, from 0)")


def load_stream(csv_path: Path, classes: list[str], feature_root: Path, modality: str) -> Stream:
    """An annotation CSV and the `<feature_root>/<modality>/zip/<id>.zip` files of its clips."""
    table = read_event_csv(csv_path, classes, STEPS)
    tail, pad, what = FEATURES[modality]
    zips = ClipZips(feature_root / modality / "zip", table.feature_ids(), table.names, tail, table.path, table.lines,
                    pad=pad, steps=STEPS, what=what)
    return Stream(table, zips)


def stream_notes(streams: dict[str, Stream]) -> dict:
    """Rows per annotation stream holding a zero-length event (onset == offset: it labels no segment)."""
    return {"zero_length_event_rows": {STREAMS[m]: s.table.zero_length_rows for m, s in streams.items()}}


def stream_files(streams: dict[str, Stream]) -> list[Path]:
    return [path for s in streams.values() for path in (s.table.path, *s.zips.paths())]
