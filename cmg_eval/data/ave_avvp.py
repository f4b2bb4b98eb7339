"""The release files of the `ave_avvp` task, read and checked.

Train data: AVE features (`AVE-ECCV18-master/data/{visual,audio}_feature.h5`, read by the AVE task's reader and
indexed out of the same one encoding per file, so both tasks share its cache entry) with the 12-class labels
`AVE_AVVP/ave_avvp_labels.h5` (`avadataset`, rows aligned with the AVE arrays) of the clips in
`AVE_AVVP/ave_avvp_order.h5` (`order`). Test data: `AVE_AVVP/AVE_AVVP_eval_{audio,visual}_checked_combined.csv`
with the AVVP feature zips. Class list `AVE_AVVP/AVE_AVVP_Categories.txt`: line i names label column i (12 lines
in the paper), as the reference pairs them; the versioned `ave_avvp` label map only names the AVE side in
reports, and its differences from the list are reported, never refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmg_eval.constants import STEPS
from cmg_eval.data.annotations import LabelMap, assign_folds, read_class_list, read_label_map
from cmg_eval.data.ave import N_CLASSES as N_AVE_CLASSES
from cmg_eval.data.ave import AveData, check_segment_labels, load_ave, read_order
from cmg_eval.data.h5 import H5Array
from cmg_eval.data.streams import STREAMS, Stream, load_stream, stream_files
from cmg_eval.errors import CmgError
from cmg_eval.task import FeatureSource

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

    def files(self) -> list[Path]:
        return [self.root / "AVE_AVVP_Categories.txt", self.root / "ave_avvp_labels.h5", self.root / "ave_avvp_order.h5",
                *self.ave.files(), self.label_map.path, *stream_files(self.streams)]

    def source(self, modality: str) -> FeatureSource:
        """The order's clips, indexed out of the AVE file's one encoding (shared with the AVE tasks)."""
        return self.ave.clips(modality, self.order, "ave_avvp", "clips of ave_avvp_order.h5")


def load_ave_avvp(data_root: Path) -> AveAvvpData:
    """The AVE clips of the order with their labels and selection fold, the AVVP test streams, the label map."""
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
