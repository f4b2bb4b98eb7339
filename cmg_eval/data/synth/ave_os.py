"""Synthetic open-set AVE files: `OSCMG(cvpr25)/data/AVE_OSCMG/train_order_{14,21}class.h5`.

As in the reference, each is the AVE train order's clips of the first K classes, grouped by class (so its
length is the number of such clips). It reads the AVE files the `ave` writer wrote before it (writers run by
name); the clips, features and labels are AVE's.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from cmg_eval.data.h5 import write_h5
from cmg_eval.data.synth.ave import AVE_CLASSES
from cmg_eval.data.synth.world import World

OPEN_SET = Path("OSCMG(cvpr25)") / "data"
KNOWN = (14, 21)


def known_train_order(train_order: np.ndarray, clip_classes: np.ndarray, known: int) -> np.ndarray:
    """The train order's clips of classes < `known`, grouped by class, in train order within a class."""
    classes = clip_classes[train_order]
    keep = classes < known
    return train_order[keep][np.argsort(classes[keep], kind="stable")].astype(np.int64)


def write(root: Path, world: World, size: str, rng: np.random.Generator) -> dict:
    ave = root / "AVE-ECCV18-master" / "data"
    with h5py.File(ave / "labels.h5", "r") as labels, h5py.File(ave / "train_order.h5", "r") as order:
        clip_classes = labels["avadataset"][:, :, :len(AVE_CLASSES)].argmax(axis=2).max(axis=1)
        train_order = order["order"][:]
    folder = root / OPEN_SET / "AVE_OSCMG"
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for known in KNOWN:
        order = known_train_order(train_order, clip_classes, known)
        write_h5(folder / f"train_order_{known}class.h5", "order", order)
        written[f"train_order_{known}class"] = len(order)
    return written
