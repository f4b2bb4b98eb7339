"""Readers of the caption-retrieval releases: caption files, per-item feature zips, `text_tokens.h5`.

Captions of one item are grouped whatever the file order (one gallery item per image, clip or
video); items keep the order of their first caption. A caption's id is `<item id>#<k>`, k counting
that item's captions from 0 in file order: the key of `text_tokens.h5` (datasets `tokens` (N,10,768)
float32 and `caption_id`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator

import h5py
import numpy as np

from cmg_eval.data.decode import Unit
from cmg_eval.data.h5 import H5Array
from cmg_eval.data.clipzips import MAX_STEPS, member_bound
from cmg_eval.data.zipfeat import read_feature_zip
from cmg_eval.errors import CmgError

MAX_TOKENS = 10
TOKEN_DIM = 768
TOKENS_FILE = "text_tokens.h5"
CLOTHO_CAPTIONS = tuple(f"caption_{i}" for i in range(1, 6))
LENGTH_CHUNK = 1024


@dataclass
class CaptionSet:
    """Items and their captions: `caption_item[c]` is the index in `items` of caption c."""

    items: list[str]
    captions: list[str]
    caption_item: np.ndarray
    where: Path

    @property
    def caption_ids(self) -> list[str]:
        seen: dict[int, int] = {}
        ids = []
        for item in self.caption_item.tolist():
            ids.append(f"{self.items[item]}#{seen.get(item, 0)}")
            seen[item] = seen.get(item, 0) + 1
        return ids

    def groups(self) -> list[np.ndarray]:
        """Caption indices of each item, in item order."""
        order = np.argsort(self.caption_item, kind="stable")
        bounds = np.cumsum(np.bincount(self.caption_item, minlength=len(self.items)))[:-1]
        return np.split(order, bounds)


def group_captions(pairs: Iterable[tuple[str, str]], where: Path) -> CaptionSet:
    """(item id, caption) pairs in file order -> a CaptionSet; empty captions are refused."""
    index: dict[str, int] = {}
    captions, owners = [], []
    for number, (item, caption) in enumerate(pairs):
        if not caption.strip():
            raise CmgError(f"{where}: caption {number} of item {item!r} is empty, expected text")
        owners.append(index.setdefault(item, len(index)))
        captions.append(caption.strip())
    if not captions:
        raise CmgError(f"{where}: no captions found, expected at least one item with captions")
    return CaptionSet(list(index), captions, np.asarray(owners, dtype=np.int64), where)


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a comma-separated file with a header that has `columns`."""
    if not path.is_file():
        raise CmgError(f"{path}: missing file (expected a comma-separated caption file with columns "
                       f"{', '.join(columns)})")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                found = ", ".join(reader.fieldnames or []) or "nothing"
                raise CmgError(f"{path}: no column {missing[0]!r} (found: {found}); expected columns "
                               f"{', '.join(columns)}")
            return list(reader)
    except (UnicodeDecodeError, csv.Error) as error:
        raise CmgError(f"{path}: not a readable UTF-8 CSV ({error})") from None


def read_msrvtt(path: str | Path) -> CaptionSet:
    """`msrvtt_1kA_test.csv`: header `video_id,caption`, one row per caption."""
    path = Path(path)
    rows = _read_csv(path, ("video_id", "caption"))
    pairs = ((_text(row["video_id"], path, "video_id", i), row["caption"] or "") for i, row in enumerate(rows))
    return group_captions(pairs, path)


def read_clotho(path: str | Path) -> CaptionSet:
    """`clotho_captions_evaluation.csv`: `file_name` (with extension), `caption_1` .. `caption_5`."""
    path = Path(path)
    rows = _read_csv(path, ("file_name", *CLOTHO_CAPTIONS))

    def pairs() -> Iterator[tuple[str, str]]:
        for i, row in enumerate(rows):
            stem = PurePosixPath(_text(row["file_name"], path, "file_name", i)).stem
            for column in CLOTHO_CAPTIONS:
                yield stem, row[column] or ""

    return group_captions(pairs(), path)


def read_mscoco(path: str | Path) -> CaptionSet:
    """`val_part_1.json`: `annotations`, a list of {`image_id` int, `caption` str}."""
    path = Path(path)
    if not path.is_file():
        raise CmgError(f"{path}: missing file (expected JSON with 'annotations': [{{'image_id', 'caption'}}])")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CmgError(f"{path}: not valid JSON ({error})") from None
    annotations = document.get("annotations") if isinstance(document, dict) else None
    if not isinstance(annotations, list):
        raise CmgError(f"{path}: no 'annotations' list, expected {{'annotations': [{{'image_id', 'caption'}}]}}")

    def pairs() -> Iterator[tuple[str, str]]:
        for i, entry in enumerate(annotations):
            image_id = entry.get("image_id") if isinstance(entry, dict) else None
            caption = entry.get("caption") if isinstance(entry, dict) else None
            if isinstance(image_id, bool) or not isinstance(image_id, int) or image_id < 0 \
                    or not isinstance(caption, str):
                raise CmgError(f"{path}: annotation {i} is {entry!r:.80}, expected "
                               f"{{'image_id': int >= 0, 'caption': str}}")
            yield str(image_id), caption

    return group_captions(pairs(), path)


def _text(value: str | None, path: Path, column: str, row: int) -> str:
    if not value or not value.strip():
        raise CmgError(f"{path}: row {row + 1} has an empty {column!r}, expected an id")
    return value.strip()


# ------------------------------------------------------------------------------------------ item features


def _feature_member(archive: zipfile.ZipFile) -> zipfile.ZipInfo | None:
    """The member `read_feature_zip` reads: the last `.pkl`, else the last file."""
    members = [m for m in archive.infolist() if not m.filename.endswith("/")]
    pickles = [m for m in members if m.filename.endswith(".pkl")] or members
    return pickles[-1] if pickles else None


@dataclass
class ItemZips:
    """One `<id>.zip` per item, each a pickled (T, *tail) array; T differs between items."""

    paths: list[Path]
    ids: list[str]
    tail: tuple[int, ...]
    sizes: np.ndarray = field(init=False)   # uncompressed member bytes: equal T <=> equal size (same dtype)

    def __post_init__(self) -> None:
        sizes = []
        bound = member_bound(MAX_STEPS, self.tail)
        for item, path in zip(self.ids, self.paths):
            if not path.is_file():
                raise CmgError(f"{path}: missing feature zip for item {item!r} (expected a zip holding one pickled "
                               f"(T, {', '.join(map(str, self.tail))}) array)")
            try:
                with zipfile.ZipFile(path) as archive:
                    member = _feature_member(archive)
            except (zipfile.BadZipFile, OSError) as error:
                raise CmgError(f"{path}: not a readable zip for item {item!r} ({error})") from None
            if member is None:
                raise CmgError(f"{path}: empty zip for item {item!r}, expected one pickled numpy array")
            if member.file_size > bound:
                raise CmgError(f"{path}:{member.filename}: declares {member.file_size} bytes unpacked, expected at "
                               f"most {bound} for a (T <= {MAX_STEPS}, {', '.join(map(str, self.tail))}) array")
            sizes.append(member.file_size)
        self.sizes = np.asarray(sizes, dtype=np.int64)

    def digest(self) -> str:
        """Changes when any file is rewritten (name, size, mtime): part of embedding cache keys."""
        digest = hashlib.sha256()
        for path in self.paths:
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:24]

    def order(self) -> np.ndarray:
        """Items sorted so that equal lengths are adjacent (stable: ties keep item order)."""
        return np.argsort(self.sizes, kind="stable")

    def read(self, index: int) -> np.ndarray:
        """Item `index` as float32 (T, *tail), T >= 1."""
        path = self.paths[index]
        array = read_feature_zip(path, member_bound(MAX_STEPS, self.tail))
        if array.ndim != 1 + len(self.tail) or tuple(array.shape[1:]) != self.tail or array.shape[0] < 1:
            raise CmgError(f"{path}: array of shape {array.shape} for item {self.ids[index]!r}, expected "
                           f"(T, {', '.join(map(str, self.tail))}) with T >= 1")
        return array.astype(np.float32, copy=False)

    def units(self, quick: bool) -> list[Unit]:
        """One read per item (quick: the first), decoded and checked as `read` does."""
        units = [Unit(path, f"the array of item {item!r}", lambda index=index: self.read(index))
                 for index, (path, item) in enumerate(zip(self.paths, self.ids))]
        return units[:1] if quick else units

    def batches(self, order: np.ndarray, size: int,
                check: Callable[[np.ndarray, Path, str], None]) -> Iterator[np.ndarray]:
        """Items in `order`, stacked into batches of equal T (never padded); `check` sees each array."""
        batch: list[np.ndarray] = []
        for index in order.tolist():
            array = self.read(index)
            check(array, self.paths[index], self.ids[index])
            if batch and (len(batch) == size or array.shape[0] != batch[0].shape[0]):
                yield np.stack(batch)
                batch = []
            batch.append(array)
        if batch:
            yield np.stack(batch)


# ------------------------------------------------------------------------------------------ caption tokens


def token_lengths(tokens: np.ndarray) -> np.ndarray:
    """Tokens before the zero padding: 1 + index of the last non-zero token (at least 1)."""
    nonzero = (tokens != 0).any(axis=2)   # NaN counts as a token, so the finiteness check sees it
    last = np.where(nonzero.any(1), tokens.shape[1] - np.argmax(nonzero[:, ::-1], axis=1), 1)
    return last.astype(np.int64)


class CaptionTokens:
    """(C, 10, 768) token features in caption order: rows read on demand, lengths found on first use."""

    def __init__(self, where: str, key: str, read_rows: Callable[[np.ndarray], np.ndarray], count: int):
        self.where = where
        self.key = key              # identity of the tokens, for cache keys
        self.read_rows = read_rows  # caption indices (increasing) -> float32 (n, 10, 768)
        self.count = count
        self._lengths: np.ndarray | None = None

    @property
    def lengths(self) -> np.ndarray:
        if self._lengths is None:
            chunks = [token_lengths(self.read_rows(np.arange(start, min(start + LENGTH_CHUNK, self.count))))
                      for start in range(0, self.count, LENGTH_CHUNK)]
            self._lengths = np.concatenate(chunks) if chunks else np.zeros(0, np.int64)
        return self._lengths

    def units(self, quick: bool) -> list[Unit]:
        """The token rows in blocks (quick: the first row)."""
        size = 1 if quick else LENGTH_CHUNK
        starts = range(0, min(self.count, 1) if quick else self.count, size)
        return [Unit(Path(self.where), f"token rows {start}-{min(start + size, self.count) - 1}",
                     lambda start=start: self.read_rows(np.arange(start, min(start + size, self.count))))
                for start in starts]

    def order(self) -> np.ndarray:
        """Captions sorted so that equal lengths are adjacent (stable)."""
        return np.argsort(self.lengths, kind="stable")

    def batches(self, order: np.ndarray, size: int, check: Callable[[np.ndarray, int], None]) -> Iterator[np.ndarray]:
        """Captions in `order`, batches of equal length cut to that length; `check(batch, first)`."""
        lengths = self.lengths[order]
        start = 0
        while start < len(order):
            stop = min(start + size, len(order))
            stop = start + int(np.argmax(np.append(lengths[start:stop] != lengths[start], True)))
            rows = self.read_rows(order[start:stop])
            check(rows, start)
            yield np.ascontiguousarray(rows[:, :lengths[start]])
            start = stop


def tokens_from_array(tokens: np.ndarray, where: str, key: str) -> CaptionTokens:
    """Featurized tokens held in memory."""
    tokens = np.asarray(tokens, dtype=np.float32)
    return CaptionTokens(where, key, lambda rows: tokens[rows], len(tokens))


def read_token_file(path: str | Path, caption_ids: list[str], fingerprint: str) -> CaptionTokens:
    """`text_tokens.h5` rows of the given captions (by `caption_id`); every caption must be present."""
    path = Path(path)
    tokens = H5Array(path, "tokens", (MAX_TOKENS, TOKEN_DIM), what="BERT token features of each caption")
    with h5py.File(path, "r") as handle:
        if "caption_id" not in handle or not isinstance(handle["caption_id"], h5py.Dataset) \
                or handle["caption_id"].ndim != 1:
            raise CmgError(f"{path}: no 1-D dataset 'caption_id', expected one id per row of 'tokens'")
        raw = handle["caption_id"]
        ids = raw.asstr()[()] if h5py.check_string_dtype(raw.dtype) else raw[()]
    ids = [str(i) for i in ids.tolist()]
    if len(ids) != len(tokens):
        raise CmgError(f"{path}: 'caption_id' has {len(ids)} rows, expected {len(tokens)} as in 'tokens'")
    row_of = {cid: row for row, cid in enumerate(ids)}
    if len(row_of) != len(ids):
        repeated = next(cid for cid, n in Counter(ids).items() if n > 1)
        raise CmgError(f"{path}: caption_id {repeated!r} repeats, expected unique ids")
    missing = [cid for cid in caption_ids if cid not in row_of]
    if missing:
        raise CmgError(f"{path}: no tokens for caption {missing[0]!r} ({len(missing)} missing), expected "
                       f"caption_id '<item id>#<k>' for every caption")
    rows = np.asarray([row_of[cid] for cid in caption_ids], dtype=np.int64)
    return CaptionTokens(str(path), f"{fingerprint}:{hashlib.sha256(rows.tobytes()).hexdigest()[:16]}",
                         lambda wanted: tokens.read_rows(rows[wanted]), len(rows))
