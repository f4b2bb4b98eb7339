"""The AVE release: `AVE-ECCV18-master/data/{visual_feature,audio_feature,labels}.h5` (dataset `avadataset`)
and `{train,val,test}_order.h5` (dataset `order`), read and checked (used by the `ave` and `ave_avvp` tasks)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmg_eval.constants import FEATURE_TAILS, STEPS
from cmg_eval.data.h5 import H5Array
from cmg_eval.data.manifest import fingerprint
from cmg_eval.errors import CmgError
from cmg_eval.task import FeatureSource

N_CLASSES = 28
FEATURE_FILES = {"video": ("visual_feature.h5", (STEPS, *FEATURE_TAILS["video"])),
                 "audio": ("audio_feature.h5", (STEPS, *FEATURE_TAILS["audio"]))}
SPLITS = ("train", "val", "test")


def check_segment_labels(labels: np.ndarray, path: Path, n_classes: int, one_hot: bool, what: str,
                         clips: np.ndarray | None = None) -> None:
    """(rows, steps, classes + 1) labels of `clips` (default: row i is clip i), background last: finite 0/1 values;
    with `one_hot` each segment holds exactly one class and each clip an event (argmax would read none as class 0)."""
    clip = (lambda row: int(row)) if clips is None else (lambda row: int(clips[row]))
    bad = np.argwhere(~np.isin(labels, (0, 1)))
    if len(bad):
        row, step, column = bad[0].tolist()
        raise CmgError(f"{path}: clip {clip(row)} segment {step} holds {float(labels[row, step, column])!r}, "
                       f"expected {what} of 0 and 1")
    if one_hot:
        counts = labels.sum(axis=2)
        if (counts != 1).any():
            row, step = np.argwhere(counts != 1)[0].tolist()
            raise CmgError(f"{path}: clip {clip(row)} segment {step} has {int(counts[row, step])} classes set, "
                           f"expected exactly one ({what}, one-hot with background last)")
        eventless = np.flatnonzero(labels[:, :, :n_classes].max(axis=(1, 2)) == 0)
        if len(eventless):
            raise CmgError(f"{path}: clip {clip(eventless[0])} has no event segment ({len(eventless)} of "
                           f"{len(labels)} clips are background only), expected an event in every clip")


def clip_labels(segment_labels: np.ndarray) -> np.ndarray:
    """The reference rule: drop the background column, argmax per segment, max over segments."""
    return segment_labels[:, :, :N_CLASSES].argmax(axis=2).max(axis=1)


def read_order(path: Path, n_clips: int) -> np.ndarray:
    """A split's global clip indices, checked to be a non-empty 1-D range of valid clips: integers (a boolean or
    float order is refused), no more of them than clips, checked before the read."""
    order = H5Array(path, "order", (), what="1-D int64 clip indices")
    try:
        if order.dataset.dtype.kind not in "iu":
            raise CmgError(f"{path}: dataset 'order' has dtype {order.dataset.dtype}, expected integer clip indices")
        if len(order) > n_clips:
            raise CmgError(f"{path}: dataset 'order' declares {len(order)} indices, expected at most {n_clips} "
                           f"(one per clip)")
        values = order.read_all()
    finally:
        order.close()
    if values.size == 0:
        raise CmgError(f"{path}: dataset 'order' is empty, expected clip indices")
    values = values.astype(np.int64)
    if values.min() < 0 or values.max() >= n_clips:
        raise CmgError(f"{path}: dataset 'order' has index {int(values.max())}, expected 0..{n_clips - 1}")
    return values


@dataclass
class AveData:
    """Validated AVE release: lazily read features, clip labels and split orders."""

    root: Path
    features: dict[str, H5Array]
    labels: np.ndarray          # (N,) clip class in 0..27
    orders: dict[str, np.ndarray]
    fingerprints: dict[str, str]

    def whole(self, modality: str) -> FeatureSource:
        """Every clip of one modality in file order: the one encoding that every split (and every task reading
        these files) is indexed from, read in runs of rows that `H5Array` maps rather than copies."""
        features = self.features[modality]
        rows = np.arange(len(features))
        return FeatureSource(key=f"ave:{self.fingerprints[modality]}:every-row:{modality}", modality=modality,
                             n_items=len(rows), batches=lambda size: features.iter_rows(rows, size),
                             where=str(features.path), part=f"rows of dataset {features.key!r} (every split)")

    def clips(self, modality: str, order: np.ndarray, name: str, part: str) -> FeatureSource:
        """Encoder inputs of one modality for the clips of `order`, in order, indexed out of `whole`."""
        features = self.features[modality]
        order_hash = hashlib.sha256(order.tobytes()).hexdigest()[:16]
        return FeatureSource(key=f"{name}:{self.fingerprints[modality]}:{order_hash}:{modality}", modality=modality,
                             n_items=len(order), batches=lambda size: features.iter_rows(order, size),
                             where=str(features.path), part=part, whole=self.whole(modality), rows=order)

    def source(self, modality: str, split: str) -> FeatureSource:
        """Encoder inputs of one modality for one split, in order."""
        return self.clips(modality, self.orders[split], f"ave:{split}", f"{split} split")

    def files(self) -> list[Path]:
        return [a.path for a in self.features.values()] + [self.root / "labels.h5"] + \
               [self.root / f"{split}_order.h5" for split in SPLITS]


def load_ave(data_root: Path) -> AveData:
    """Validate the AVE release under `data_root` and read its labels and split orders (features stay lazy)."""
    root = Path(data_root) / "AVE-ECCV18-master" / "data"
    features = {m: H5Array(root / name, "avadataset", tail, what=f"AVE {m} features")
                for m, (name, tail) in FEATURE_FILES.items()}
    labels_file = H5Array(root / "labels.h5", "avadataset", (STEPS, N_CLASSES + 1), what="AVE segment labels")
    n_clips = len(labels_file)
    for modality, array in features.items():   # declared sizes agree before anything is read
        if len(array) != n_clips:
            raise CmgError(f"{array.path}: {len(array)} clips, expected {n_clips} as in {labels_file.path}")
    segment_labels = labels_file.read_all()
    labels_file.close()
    check_segment_labels(segment_labels, labels_file.path, N_CLASSES, True, "AVE segment labels")
    orders = {split: read_order(root / f"{split}_order.h5", n_clips) for split in SPLITS}
    fingerprints = {m: fingerprint(a.path) for m, a in features.items()}
    return AveData(root, features, clip_labels(segment_labels), orders, fingerprints)
