"""Annotation files of the releases: class lists, AVVP event CSVs, UCF/VGGSound clip CSVs, label maps.

Every reader checks what it reads and fails with one line naming the file, the line and what was expected.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from cmg_eval.errors import CmgError

LABELMAPS = Path(__file__).parent / "labelmaps"
EVENT_COLUMNS = ("filename", "onset", "offset", "event_labels")


def _open_text(path: Path, what: str):
    if not path.is_file():
        raise CmgError(f"{path}: missing file (expected {what})")
    try:
        return open(path, newline="", encoding="utf-8")
    except OSError as error:
        raise CmgError(f"{path}: not readable ({error.strerror}), expected {what}") from None


def read_class_list(path: str | Path, expected: int, what: str) -> list[str]:
    """Class names, one per line, index = line number; exactly `expected` distinct names."""
    path = Path(path)
    with _open_text(path, f"{expected} {what} class names, one per line") as handle:
        names = [line.strip() for line in handle.read().splitlines()]
    while names and not names[-1]:
        names.pop()
    if len(names) != expected or not all(names):
        raise CmgError(f"{path}: {len(names)} lines{' (some empty)' if not all(names) else ''}, "
                       f"expected {expected} {what} class names, one per line")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise CmgError(f"{path}: class {repeated[0]!r} listed twice, expected {expected} distinct names")
    return names


def _rows(path: Path, delimiter: str, columns: Sequence[str], what: str) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of a delimited file whose header holds `columns`."""
    with _open_text(path, what) as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if header is None or not set(columns) <= {h.strip() for h in header}:
            found = ", ".join(h.strip() for h in header or []) or "nothing"
            separator = "tab" if delimiter == "\t" else repr(delimiter)
            raise CmgError(f"{path}: header has {found}, expected {separator}-separated columns "
                           f"{', '.join(columns)} ({what})")
        header = [h.strip() for h in header]
        rows = []
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                raise CmgError(f"{path}: line {reader.line_num} has {len(fields)} fields, expected {len(header)} "
                               f"({', '.join(header)})")
            rows.append((reader.line_num, {h: f.strip() for h, f in zip(header, fields)}))
    if not rows:
        raise CmgError(f"{path}: no rows, expected {what}")
    return rows


# ------------------------------------------------------------------------------------------ AVVP events


@dataclass
class EventTable:
    """One AVVP-style annotation CSV: a row per clip, per-segment multi-hot labels with background last."""

    path: Path
    names: list[str]          # the `filename` column, e.g. IgN7v8nWmx8_30_40
    labels: np.ndarray        # (rows, steps, classes + 1) float32
    lines: list[int]

    def feature_ids(self) -> list[str]:
        """Feature file stems: the first 11 characters of the clip name (the YouTube id), as the reference."""
        return [name[:11] for name in self.names]


def _segment_bound(text: str, path: Path, line: int, column: str) -> int:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value) or value != int(value):
        raise CmgError(f"{path}: line {line}: {column} {text!r} is not a whole second, expected integers")
    return int(value)


def _event_row(row: dict[str, str], line: int, path: Path, index: dict[str, int], steps: int) -> np.ndarray:
    """One clip's (steps, classes + 1) labels: background everywhere but inside its events."""
    lists = [row[c].split(",") for c in EVENT_COLUMNS[1:]]
    if len({len(values) for values in lists}) != 1:
        raise CmgError(f"{path}: line {line}: onset, offset and event_labels hold "
                       f"{'/'.join(str(len(v)) for v in lists)} items, expected parallel comma-separated lists")
    labels = np.zeros((steps, len(index) + 1), np.float32)
    for onset_text, offset_text, name in zip(*lists):
        onset = _segment_bound(onset_text, path, line, "onset")
        offset = _segment_bound(offset_text, path, line, "offset")
        if name.strip() not in index:
            raise CmgError(f"{path}: line {line}: event label {name.strip()!r} is not in the class list")
        if not 0 <= onset < offset <= steps:
            raise CmgError(f"{path}: line {line}: event {onset}-{offset}, expected 0 <= onset < offset <= {steps}")
        labels[onset:offset, index[name.strip()]] = 1
    labels[:, -1] = labels[:, :-1].max(1) == 0
    return labels


def read_event_csv(path: str | Path, classes: list[str], steps: int = 10) -> EventTable:
    """Tab-separated `filename, onset, offset, event_labels`; segment s is in an event if onset <= s < offset."""
    path = Path(path)
    rows = _rows(path, "\t", EVENT_COLUMNS, "AVVP event annotations")
    index = {name: i for i, name in enumerate(classes)}
    labels = [_event_row(row, line, path, index, steps) for line, row in rows]
    for line, row in rows:
        if len(row["filename"]) < 11:
            raise CmgError(f"{path}: line {line}: filename {row['filename']!r} is shorter than the 11-character "
                           f"video id the feature files are named by")
    return EventTable(path, [row["filename"] for _, row in rows], np.stack(labels), [line for line, _ in rows])


# ------------------------------------------------------------------------------------------ UCF / VGGSound


@dataclass
class ClipTable:
    """One clip-list CSV (`category, video_id[, split]`): clip ids and class indices in a class list."""

    path: Path
    ids: list[str]
    labels: np.ndarray        # (rows,) int64
    lines: list[int]


def read_clip_csv(path: str | Path, columns: Sequence[str], classes: list[str], list_path: Path) -> ClipTable:
    """Comma-separated clips; every category must be a line of the class list `list_path`."""
    path = Path(path)
    rows = _rows(path, ",", columns, "clips with their category")
    index = {name: i for i, name in enumerate(classes)}
    for line, row in rows:
        if row["category"] not in index:
            raise CmgError(f"{path}: line {line}: category {row['category']!r} is not in {list_path.name}")
        if not row["video_id"]:
            raise CmgError(f"{path}: line {line}: empty video_id, expected a feature file stem")
    return ClipTable(path, [row["video_id"] for _, row in rows],
                     np.array([index[row["category"]] for _, row in rows], np.int64), [line for line, _ in rows])


# ------------------------------------------------------------------------------------------ label maps


@dataclass
class LabelMap:
    """A versioned one-to-one class pairing between two datasets (data, not code)."""

    name: str
    version: int
    source: str
    target: str
    pairs: list[tuple[str, str]]
    path: Path

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"

    def forward(self) -> dict[str, str]:
        return dict(self.pairs)

    def backward(self) -> dict[str, str]:
        return {b: a for a, b in self.pairs}


def label_map_path(name: str, version: int | None = None) -> Path:
    """The map file of `name` at `version` (default: the highest version shipped)."""
    if version is not None:
        return LABELMAPS / f"{name}.v{version}.json"
    found = sorted(LABELMAPS.glob(f"{name}.v*.json"), key=lambda p: int(p.stem.rsplit(".v", 1)[1]))
    if not found:
        raise CmgError(f"{LABELMAPS}: no label map {name!r} (expected {name}.v<N>.json)")
    return found[-1]


def read_label_map(name: str, version: int | None = None) -> LabelMap:
    """Read and check a label map: name and version as in its file name, pairs one-to-one."""
    path = label_map_path(name, version)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        pairs = [(str(a), str(b)) for a, b in data["pairs"]]
        label_map = LabelMap(data["name"], int(data["version"]), data["from"], data["to"], pairs, path)
    except FileNotFoundError:
        raise CmgError(f"{path}: missing label map") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise CmgError(f"{path}: not a label map ({type(error).__name__}: {error}), expected name, version, "
                       f"from, to and pairs [[from_class, to_class], ...]") from None
    if path.name != f"{label_map.name}.v{label_map.version}.json":
        raise CmgError(f"{path}: declares {label_map.label}, expected the name and version of its file name")
    for side in (0, 1):
        names = [pair[side] for pair in pairs]
        if len(set(names)) != len(names):
            raise CmgError(f"{path}: a class appears in two pairs, expected a one-to-one map")
    return label_map


# ------------------------------------------------------------------------------------------ folds


def assign_folds(keys: Sequence[str], n_folds: int, salt: str, strata: np.ndarray | None = None) -> np.ndarray:
    """Fold index per item, fixed by the keys alone (no RNG state): items of one key share a fold, and
    within each stratum keys are dealt round-robin in hash order, so folds are balanced per stratum."""
    keys = list(keys)
    strata = np.zeros(len(keys), np.int64) if strata is None else np.asarray(strata)
    first_stratum = {}
    for key, stratum in zip(keys, strata.tolist()):
        first_stratum.setdefault(key, stratum)
    fold_of: dict[str, int] = {}
    for stratum in sorted(set(first_stratum.values())):
        members = sorted((k for k, s in first_stratum.items() if s == stratum),
                         key=lambda k: hashlib.sha256(f"{salt}\x1f{k}".encode()).hexdigest())
        start = len(fold_of)  # continue the deal where the last stratum stopped, so folds stay balanced overall
        fold_of.update({key: (start + position) % n_folds for position, key in enumerate(members)})
    return np.array([fold_of[key] for key in keys], np.int64)
