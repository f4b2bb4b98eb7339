"""The VGGSound-AVEL40k pretraining set, read from its release layout (docs/formats.md).

Every split of `vggsound-avel40k.csv` is used; audio is padded to 10 steps by repeating its last
row or truncated; text is the category's prompt tokens (B, 10, 768), zero-padded.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cmg_eval.constants import FEATURE_TAILS, MAX_TEXT_TOKENS, TOKEN_DIM
from cmg_eval.data.clipzips import ClipZips
from cmg_eval.data.manifest import manifest, manifest_hash
from cmg_eval.data.zipfeat import read_feature_zip
from cmg_eval.errors import CmgError

FOLDER = "vggsound40k"
PRELOAD_BYTES = 4 << 30   # smaller sets are read into memory once; larger ones per batch
MODALITIES = ("video", "audio")   # read from clip zips; text is the category's prompt tokens


def read_rows(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise CmgError(f"{path}: missing file (expected a csv with columns {', '.join(columns)})")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise CmgError(f"{path}: no column {missing[0]!r} (found: {', '.join(reader.fieldnames or [])})")
        rows = list(reader)
    if not rows:
        raise CmgError(f"{path}: no rows, expected one per clip")
    return rows


def read_categories(data: Path) -> list[str]:
    path = data / "VggsoundAVEL40kCategories.txt"
    if not path.is_file():
        raise CmgError(f"{path}: missing file (expected the category list, one name a line)")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise CmgError(f"{path}: empty, expected one category name a line")
    return names


def read_prompt_tokens(base: Path, names: list[str]) -> np.ndarray:
    """(C, 10, 768) prompt tokens in category order, checked against the prompt csv."""
    prompts = read_rows(base / "data" / "vggsoundCategories2Prompts.csv", ("label",))
    labels = [row["label"] for row in prompts]
    path = base / "feature" / "text" / "prompt_tokens.zip"
    tokens = read_feature_zip(path).astype(np.float32)
    if tokens.ndim != 3 or tokens.shape[0] != len(labels) or tokens.shape[2] != TOKEN_DIM \
            or tokens.shape[1] > MAX_TEXT_TOKENS:
        raise CmgError(f"{path}: array of shape {tokens.shape}, expected ({len(labels)}, <={MAX_TEXT_TOKENS}, "
                       f"{TOKEN_DIM}): one row per prompt")
    missing = [n for n in names if n not in labels]
    if missing:
        raise CmgError(f"{base / 'data' / 'vggsoundCategories2Prompts.csv'}: no prompt for category {missing[0]!r}")
    tokens = np.pad(tokens, ((0, 0), (0, MAX_TEXT_TOKENS - tokens.shape[1]), (0, 0)))
    return tokens[[labels.index(n) for n in names]]


@dataclass
class PretrainSet:
    """Clips of all splits: features per clip id, category per clip, prompt tokens per category."""

    root: Path
    zips: dict[str, ClipZips]
    classes: np.ndarray
    tokens: np.ndarray
    files: list[Path]
    cached: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def ids(self) -> list[str]:
        return self.zips["video"].ids

    def read(self, modality: str, index: int) -> np.ndarray:
        """One clip's (10, *tail) float32 features, padded with its last step or cut as the reference loader does."""
        return self.zips[modality].read(index)

    def preload(self) -> "PretrainSet":
        self.cached = {m: np.stack([self.read(m, i) for i in range(len(self))]) for m in MODALITIES}
        return self

    def batch(self, items: np.ndarray) -> dict[str, torch.Tensor]:
        """Float32 tensors: video (B, 10, 7, 7, 512), audio (B, 10, 128), text (B, 10, 768)."""
        out = {}
        for modality in MODALITIES:
            rows = self.cached[modality][items] if self.cached else np.stack([self.read(modality, i) for i in items])
            out[modality] = torch.from_numpy(rows.astype(np.float32))
        out["text"] = torch.from_numpy(self.tokens[self.classes[items]])
        return out

    def manifest_hash(self) -> str:
        return manifest_hash(manifest(self.files, self.root))


def batch_items(seed: int, step: int, batch_size: int, n_clips: int) -> np.ndarray:
    """Clip indices of `step`: epoch-wise permutations from (seed, epoch), last partial batch dropped."""
    per_epoch = max(n_clips // batch_size, 1)
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n_clips)
    return order[position * batch_size:(position + 1) * batch_size]


class StepBatches(Dataset):
    """Item `step` is that step's batch (or this process's `share` of it); numpy only, no torch random numbers."""

    def __init__(self, data: PretrainSet, seed: int, batch_size: int,
                 share: Callable[[np.ndarray], np.ndarray] = lambda items: items):
        self.data, self.seed, self.batch_size, self.share = data, seed, batch_size, share

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        return self.data.batch(self.share(batch_items(self.seed, step, self.batch_size, len(self.data))))


def step_loader(batches: StepBatches, first: int, last: int, workers: int = 0, pin_memory: bool = False
                ) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of steps first..last-1 in order; with `workers` > 0 they are read ahead in worker processes
    while the current step computes. The loader gets its own generator, so the training random state
    (dropout, CPC step, resets) is the same with or without workers."""
    loader = DataLoader(batches, batch_size=None, sampler=range(first, last), num_workers=workers,
                        pin_memory=pin_memory, prefetch_factor=4 if workers else None,
                        generator=torch.Generator().manual_seed(batches.seed))
    return iter(loader)


def load_pretrain_set(root: str | Path, preload: bool = True) -> PretrainSet:
    """Read and check the meta files; features stay on disk, or are read into memory when small."""
    root = Path(root)
    base = root / FOLDER
    meta = base / "data" / "vggsound-avel40k.csv"
    rows = read_rows(meta, ("category", "video_id", "split"))
    names = read_categories(base / "data")
    unknown = sorted({r["category"] for r in rows} - set(names))
    if unknown:
        raise CmgError(f"{meta}: category {unknown[0]!r} is not in VggsoundAVEL40kCategories.txt")
    ids = [r["video_id"] for r in rows]
    lines = list(range(2, len(ids) + 2))   # the header is line 1
    zips = {m: ClipZips(base / "feature" / m / "zip", ids, ids, FEATURE_TAILS[m], meta, lines, pad=True,
                        what=f"{m} features") for m in MODALITIES}
    tokens = read_prompt_tokens(base, names)
    files = [meta, base / "data" / "VggsoundAVEL40kCategories.txt", base / "data" / "vggsoundCategories2Prompts.csv",
             base / "feature" / "text" / "prompt_tokens.zip"]
    files += [path for m in MODALITIES for path in zips[m].paths()]
    dataset = PretrainSet(root, zips, np.array([names.index(r["category"]) for r in rows]), tokens, files)
    size = sum(path.stat().st_size for m in MODALITIES for path in zips[m].paths())
    return dataset.preload() if preload and size * 2 <= PRELOAD_BYTES else dataset
