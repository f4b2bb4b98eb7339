"""Zero-shot caption retrieval, shared by the `msrvtt_vt`, `mscoco_vt` and `clotho_at` tasks.

Item embedding = mean over time of the encoder output (the encoder's readout; items of equal
length are batched together, so the mean runs over the true length, never over padding); caption
embedding likewise over its tokens. Cosine similarity, both directions, no head; metrics are exact
expectations under uniform random tie-breaking (`cmg_eval.metrics.retrieval`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from cmg_eval.data.captions import (TOKENS_FILE, CaptionSet, CaptionTokens, ItemZips, read_token_file,
                                    tokens_from_array)
from cmg_eval.data.clipzips import check_stem
from cmg_eval.data.manifest import fingerprint
from cmg_eval.encoders.base import INPUT_TAIL
from cmg_eval.errors import CmgError
from cmg_eval.metrics.retrieval import chance_per_query, cosine_retrieval, pad_positives, summarize
from cmg_eval.task import FeatureSource, Predictions, Scored, SourceRun, Task, direction_name
from cmg_eval.text import make_featurizer

RETRIEVAL_METRICS = ("r1", "r5", "r10", "r50", "medr", "meanr", "map10", "r10_chance")
RETRIEVAL_LOWER_IS_BETTER = ("medr", "meanr")
TEXT_FEATURES = "auto"   # auto: text_tokens.h5 when present, else the bert featurizer; file; or a featurizer name


def _order_hash(order: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(order, np.int64).tobytes()).hexdigest()[:16]


def _finite(array: np.ndarray) -> bool:
    return bool(np.isfinite(array.sum(dtype=np.float64)) or np.isfinite(array).all())


@dataclass
class RetrievalData:
    """A validated caption-retrieval release: items with feature zips, captions, optional token file."""

    task: str
    root: Path
    caption_file: Path
    captions: CaptionSet
    zips: ItemZips
    item_modality: str
    token_file: Path
    file_tokens: CaptionTokens | None
    zip_digest: str
    _featurized: dict[str, CaptionTokens] = field(default_factory=dict)

    def item_source(self, strict: bool) -> tuple[FeatureSource, np.ndarray]:
        """Items sorted by length (equal T batched together) and that order."""
        order = self.zips.order()

        def check(array: np.ndarray, path: Path, item: str) -> None:
            if strict and not _finite(array):
                raise CmgError(f"{path}: non-finite {self.item_modality} features for item {item!r}, expected "
                               f"finite numbers (--allow-nonfinite sets them to 0)")

        key = f"{self.task}:{self.item_modality}:{self.zip_digest}:{_order_hash(order)}"
        source = FeatureSource(key=key, modality=self.item_modality, n_items=len(order),
                               batches=lambda size: self.zips.batches(order, size, check),
                               where=str(self.zips.paths[0].parent), part="items", pool=True)
        return source, order

    def tokens(self, settings: dict[str, Any]) -> CaptionTokens:
        """Caption token features: the dataset's token file or a featurizer, as `text_features` says."""
        choice = settings.get("text_features", TEXT_FEATURES)
        if choice in ("auto", "file") and self.file_tokens is not None:
            return self.file_tokens
        if choice == "file":
            raise CmgError(f"{self.token_file}: missing (text_features=file expects datasets tokens (N,10,768) "
                           f"float32 and caption_id)")
        featurizer = make_featurizer("bert" if choice == "auto" else choice, settings.get("text_model", ""),
                                     fallback=f"provide {self.token_file} (datasets tokens (N,10,768) float32 and "
                                              f"caption_id '<item id>#<k>')")
        captions_hash = hashlib.sha256("\n".join(self.captions.captions).encode()).hexdigest()[:16]
        key = f"featurizer:{featurizer.identity()}:{captions_hash}"
        if key not in self._featurized:
            where = f"{self.caption_file} (text featurizer {featurizer.name})"
            self._featurized[key] = tokens_from_array(featurizer(self.captions.captions), where, key)
        return self._featurized[key]

    def text_source(self, settings: dict[str, Any], strict: bool) -> tuple[FeatureSource, np.ndarray]:
        """Captions sorted by token count (equal lengths batched together) and that order."""
        tokens = self.tokens(settings)
        order = tokens.order()
        ids = self.captions.caption_ids

        def check(batch: np.ndarray, first: int) -> None:
            if strict and not _finite(batch):
                bad = int(order[first + np.flatnonzero(~np.isfinite(batch.reshape(len(batch), -1)).all(1))[0]])
                raise CmgError(f"{tokens.where}: non-finite token features for caption {ids[bad]!r}, expected "
                               f"finite numbers (--allow-nonfinite sets them to 0)")

        source = FeatureSource(key=f"{self.task}:text:{tokens.key}:{_order_hash(order)}", modality="text",
                               n_items=len(order), batches=lambda size: tokens.batches(order, size, check),
                               where=tokens.where, part="captions", pool=True)
        return source, order


class RetrievalTask(Task):
    """Zero-shot retrieval between items (video or audio) and their captions; no head, run once."""

    seeded = False
    defaults = {"text_features": TEXT_FEATURES, "text_model": "bert-base-uncased"}
    # Set by each dataset's task file.
    item_modality: str = "video"
    folder: str = ""
    caption_file: str = ""
    zip_folder: str = ""
    read_captions: Callable[[Path], CaptionSet]

    def zip_name(self, item: str) -> str:
        """The feature zip's stem for an item id."""
        return item

    def load(self, data_root: Path) -> RetrievalData:
        root = Path(data_root) / self.folder
        captions = type(self).read_captions(root / self.caption_file)
        zip_dir = root / self.zip_folder
        for item in captions.items:
            check_stem(self.zip_name(item), f"{root / self.caption_file}: item", zip_dir)
        zips = ItemZips([zip_dir / f"{self.zip_name(item)}.zip" for item in captions.items], captions.items,
                        INPUT_TAIL[self.item_modality])
        token_file = root / TOKENS_FILE
        file_tokens = read_token_file(token_file, captions.caption_ids, fingerprint(token_file)) \
            if token_file.is_file() else None
        return RetrievalData(self.name, root, root / self.caption_file, captions, zips, self.item_modality,
                             token_file, file_tokens, zips.digest())

    def files(self, data: RetrievalData) -> list[Path]:
        tokens = [data.token_file] if data.file_tokens is not None else []
        return [data.caption_file, *tokens, *data.zips.paths]

    def feature_readers(self, data: RetrievalData) -> list:
        return [data.zips, *([data.file_tokens] if data.file_tokens is not None else [])]

    def positives(self, data: RetrievalData, source: str) -> np.ndarray:
        """(queries, P) gallery indices: an item's captions, or a caption's item."""
        if source == "text":
            return data.captions.caption_item[:, None].copy()
        return pad_positives(data.captions.groups())

    def about(self, data: RetrievalData) -> dict[str, Any]:
        counts = np.bincount(data.captions.caption_item)
        chance = {}
        for source, target in self.directions:
            positives = self.positives(data, source)
            gallery = len(data.captions.captions) if target == "text" else len(data.captions.items)
            expected = summarize(chance_per_query(gallery, (positives >= 0).sum(1)))
            chance[direction_name(source, target)] = {k: round(v, 3) for k, v in expected.items()}
        text = str(data.token_file.relative_to(data.root.parent)) if data.file_tokens is not None \
            else "text featurizer (setting text_features)"
        return {"items": len(data.captions.items), "captions": len(data.captions.captions),
                "captions_per_item": [int(counts.min()), int(counts.max())], "text_features": text,
                "chance": chance}

    def rescore(self, data: RetrievalData, predictions: Mapping[str, np.ndarray]) -> dict[str, float]:
        return {**summarize(predictions), "r10_chance": 100.0 * float(np.mean(predictions["chance10"]))}

    def _embed(self, job: SourceRun, modality: str) -> np.ndarray:
        """Pooled embeddings (N, D) in item (or caption) order."""
        data: RetrievalData = job.data
        if modality == "text":
            source, order = data.text_source(job.settings, job.strict)
        else:
            source, order = data.item_source(job.strict)
        rows = job.embed(source)
        out = np.empty_like(rows)
        out[order] = rows
        return out

    def run_source(self, job: SourceRun) -> dict[str, Scored]:
        data: RetrievalData = job.data
        queries = self._embed(job, job.source)
        positives = self.positives(data, job.source)
        scored = {}
        for target in job.targets:
            gallery = self._embed(job, target)
            arrays = cosine_retrieval(queries, gallery, positives)
            arrays["chance10"] = chance_per_query(len(gallery), (positives >= 0).sum(1))["r10"]
            predictions = Predictions(np.arange(len(queries)), arrays)
            scored[target] = Scored(self.rescore(data, predictions), len(queries), predictions)
        return scored
