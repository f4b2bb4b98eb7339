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
        return open(path, newline="", encoding="utf-8-sig")  # a byte-order mark is not part of the first name
    except OSError as error:
        raise CmgError(f"{path}: not readable ({error.strerror}), expected {what}") from None


def read_class_list(path: str | Path, what: str) -> list[str]:
    """Class names, one per line, index = line number (paired by position with other files, never by name);
    CRLF or LF line ends, trailing blank lines ignored. Refused: no names, a blank line among them, a repeat."""
    path = Path(path)
    with _open_text(path, f"{what} class names, one per line") as handle:
        names = [line.strip() for line in handle.read().splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise CmgError(f"{path}: no class names, expected {what} class names, one per line")
    if not all(names):
        raise CmgError(f"{path}: line {names.index('') + 1} is blank, expected {what} class names, one per line")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise CmgError(f"{path}: class {repeated[0]!r} listed twice, expected distinct names (classes pair by line)")
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
    zero_length_rows: int = 0  # rows with an event whose onset equals its offset (it covers no segment)

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


def _event_row(row: dict[str, str], line: int, path: Path, index: dict[str, int], steps: int) -> tuple[np.ndarray, int]:
    """One clip's (steps, classes + 1) labels, background everywhere but inside its events, and how many of
    its events have onset == offset (the reference reads them as covering no segment)."""
    lists = [row[c].split(",") for c in EVENT_COLUMNS[1:]]
    if len({len(values) for values in lists}) != 1:
        raise CmgError(f"{path}: line {line}: onset, offset and event_labels hold "
                       f"{'/'.join(str(len(v)) for v in lists)} items, expected parallel comma-separated lists")
    labels = np.zeros((steps, len(index) + 1), np.float32)
    empty = 0
    for onset_text, offset_text, name in zip(*lists):
        onset = _segment_bound(onset_text, path, line, "onset")
        offset = _segment_bound(offset_text, path, line, "offset")
        if name.strip() not in index:
            raise CmgError(f"{path}: line {line}: event label {name.strip()!r} is not in the class list")
        if not 0 <= onset <= offset <= steps:
            raise CmgError(f"{path}: line {line}: event {onset}-{offset}, expected 0 <= onset <= offset <= {steps}")
        labels[onset:offset, index[name.strip()]] = 1
        empty += onset == offset
    labels[:, -1] = labels[:, :-1].max(1) == 0
    return labels, empty


def read_event_csv(path: str | Path, classes: list[str], steps: int = 10) -> EventTable:
    """Tab-separated `filename, onset, offset, event_labels`; segment s is in an event if onset <= s < offset."""
    path = Path(path)
    rows = _rows(path, "\t", EVENT_COLUMNS, "AVVP event annotations")
    index = {name: i for i, name in enumerate(classes)}
    parsed = [_event_row(row, line, path, index, steps) for line, row in rows]
    for line, row in rows:
        if len(row["filename"]) < 11:
            raise CmgError(f"{path}: line {line}: filename {row['filename']!r} is shorter than the 11-character "
                           f"video id the feature files are named by")
    return EventTable(path, [row["filename"] for _, row in rows], np.stack([labels for labels, _ in parsed]),
                      [line for line, _ in rows], sum(empty > 0 for _, empty in parsed))


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
    """A versioned one-to-one class pairing between two datasets: metadata that names classes in reports and
    is compared with the release's own lists (which pair classes by line position and always win)."""

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

    def pair_differences(self, pairs: Sequence[tuple[str, str]], where: str) -> list[str]:
        """How classes paired by line position (line i of two lists) differ from this map; nothing is refused."""
        partner = self.forward()
        notes = []
        for line, (a, b) in enumerate(pairs, start=1):
            if a not in partner:
                notes.append(f"line {line}: {self.source} {a!r} / {self.target} {b!r} is not a pair of label map "
                             f"{self.label}")
            elif partner[a] != b:
                notes.append(f"line {line}: {self.source} {a!r} is paired with {self.target} {b!r} by position; "
                             f"label map {self.label} pairs it with {partner[a]!r}")
        listed = {a for a, _ in pairs}
        return notes + [f"label map {self.label} pair {a!r} / {b!r} is not in {where}"
                        for a, b in self.pairs if a not in listed]

    def target_differences(self, names: Sequence[str], where: str) -> list[str]:
        """How a list of target classes differs from this map's targets; nothing is refused."""
        source_of = self.backward()
        notes = [f"line {line}: {self.target} class {name!r} has no {self.source} class in label map {self.label}"
                 for line, name in enumerate(names, start=1) if name not in source_of]
        return notes + [f"label map {self.label} class {b!r} ({self.source} {a!r}) is not in {where}"
                        for a, b in self.pairs if b not in names]


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


def _hash_order(keys, salt: str) -> list[str]:
    return sorted(keys, key=lambda k: hashlib.sha256(f"{salt}\x1f{k}".encode()).hexdigest())


def assign_folds_multilabel(keys: Sequence[str], labels: np.ndarray, n_folds: int, salt: str) -> np.ndarray:
    """Fold per (distinct) key with (keys, classes) boolean labels, fixed by the keys alone: classes from the
    rarest up, each class's unassigned keys go in hash order to the fold holding fewest of that class (then
    fewest keys), so every class is spread over the folds (a simple iterative stratification)."""
    keys = list(keys)
    labels = np.asarray(labels, bool)
    per_fold = np.zeros((n_folds, labels.shape[1]), np.int64)
    sizes = np.zeros(n_folds, np.int64)
    fold_of: dict[str, int] = {}
    row_of = {key: row for row, key in enumerate(keys)}

    for cls in [int(c) for c in np.argsort(labels.sum(0), kind="stable")] + [-1]:
        members = [k for k in row_of if k not in fold_of and (cls < 0 or labels[row_of[k], cls])]
        for key in _hash_order(members, salt):
            of_class = per_fold[:, cls] if cls >= 0 else sizes
            fold = int(np.lexsort((np.arange(n_folds), sizes, of_class))[0])  # fewest of the class, then keys
            fold_of[key] = fold
            sizes[fold] += 1
            per_fold[fold] += labels[row_of[key]]
    return np.array([fold_of[key] for key in keys], np.int64)


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
        members = _hash_order((k for k, s in first_stratum.items() if s == stratum), salt)
        start = len(fold_of)  # continue the deal where the last stratum stopped, so folds stay balanced overall
        fold_of.update({key: (start + position) % n_folds for position, key in enumerate(members)})
    return np.array([fold_of[key] for key in keys], np.int64)
