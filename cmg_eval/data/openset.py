"""The reference's open-set files (under `OSCMG(cvpr25)/data/`): the known-class training subsets of AVE, UCF51
and UCF<->VGG, read and checked against the full clip lists they are drawn from.

A subset holds the training clips of the first K classes. Each K the reference ships is read when its file is
there; a missing one is refused only when a run asks for that K.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cmg_eval.data.annotations import ClipTable, read_clip_csv
from cmg_eval.data.ave import read_order
from cmg_eval.errors import CmgError
from cmg_eval.metrics.openset import chance_h_score

OPEN_SET = Path("OSCMG(cvpr25)") / "data"
CLIP_COLUMNS = ("category", "video_id")


@dataclass
class KnownSubsets:
    """K -> the training clips of the first K classes (positions in the full clip list), and the missing files."""

    rows: dict[int, np.ndarray] = field(default_factory=dict)
    missing: dict[int, Path] = field(default_factory=dict)
    paths: dict[int, Path] = field(default_factory=dict)

    def get(self, known: int) -> np.ndarray:
        if known in self.missing:
            raise CmgError(f"{self.missing[known]}: missing file (expected the training clips of the first {known} "
                           f"classes, asked for by known={known})")
        return self.rows[known]


def check_known(path: Path, classes: np.ndarray, known: int, name_of) -> None:
    """Every training clip of the subset `path` is of a class below `known` (a K-way head cannot learn others)."""
    beyond = np.flatnonzero(classes >= known)
    if len(beyond):
        raise CmgError(f"{path}: {name_of(beyond[0])} has class {int(classes[beyond[0]])} ({len(beyond)} of "
                       f"{len(classes)} clips beyond class {known - 1}), expected clips of the first {known} classes "
                       f"only")


def read_known_orders(folder: Path, known_choices: tuple[int, ...], n_clips: int,
                      clip_classes: np.ndarray) -> KnownSubsets:
    """AVE's `train_order_{K}class.h5` (dataset `order`): global clip indices of known-class clips."""
    subsets = KnownSubsets()
    for known in known_choices:
        path = folder / f"train_order_{known}class.h5"
        if not path.is_file():
            subsets.missing[known] = path
            continue
        order = read_order(path, n_clips)
        check_known(path, clip_classes[order], known, lambda i, order=order: f"clip {int(order[i])}")
        subsets.rows[known], subsets.paths[known] = order, path
    if not subsets.rows:
        raise CmgError(f"{folder}: no train_order_{{{','.join(map(str, known_choices))}}}class.h5, expected the "
                       f"known-class training orders")
    return subsets


def subset_rows(subset: ClipTable, full: ClipTable, known: int) -> np.ndarray:
    """Rows of `full` holding the subset's clips: each subset clip must be a clip of the full list, of the same
    class (the reference scores the full list), and of a class below `known`."""
    check_known(subset.path, subset.labels, known, lambda i: f"line {subset.lines[i]} ({subset.ids[i]!r})")
    row_of = {}
    for row, clip in enumerate(full.ids):
        row_of.setdefault(clip, row)
    rows = []
    for clip, label, line in zip(subset.ids, subset.labels, subset.lines):
        if clip not in row_of:
            raise CmgError(f"{subset.path}: line {line}: clip {clip!r} is not in {full.path.name}, expected a "
                           f"subset of its clips")
        if full.labels[row_of[clip]] != label:
            raise CmgError(f"{subset.path}: line {line}: clip {clip!r} has class {int(label)} here and "
                           f"{int(full.labels[row_of[clip]])} in {full.path.name}, expected the same category")
        rows.append(row_of[clip])
    return np.array(rows, np.int64)


def read_known_csvs(path_of, known_choices: tuple[int, ...], full: ClipTable, classes: list[str],
                    list_path: Path) -> KnownSubsets:
    """Clip CSVs (`category, video_id`) of the first K classes, `path_of(K)`, as rows of the full list."""
    subsets = KnownSubsets()
    for known in known_choices:
        path = path_of(known)
        if not path.is_file():
            subsets.missing[known] = path
            continue
        subsets.rows[known] = subset_rows(read_clip_csv(path, CLIP_COLUMNS, classes, list_path), full, known)
        subsets.paths[known] = path
    if not subsets.rows:
        raise CmgError(f"{path_of(known_choices[0]).parent}: no known-class subset "
                       f"({', '.join(path_of(k).name for k in known_choices)}), expected at least one")
    return subsets


def class_counts(train_labels: np.ndarray, test_labels: np.ndarray, known: int, names: list[str]) -> dict:
    """What a K-way head trains and is scored on: known classes with and without training clips, known and unknown
    scored clips, and the H-score of rejecting at random with a head at chance (`chance_h_score`)."""
    trained = np.bincount(train_labels, minlength=known)[:known]
    is_known = test_labels < known
    return {"known_classes": known, "known_classes_with_training_clips": int((trained > 0).sum()),
            "known_classes_without_training_clips": [names[c] for c in np.flatnonzero(trained == 0)],
            "training_clips": int(len(train_labels)), "scored_known_clips": int(is_known.sum()),
            "scored_unknown_clips": int((~is_known).sum()),
            "unknown_classes_scored": int(len(np.unique(test_labels[~is_known]))),
            "chance_h_score": round(chance_h_score(known), 2)}
