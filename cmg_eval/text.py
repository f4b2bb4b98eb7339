"""Text featurizers: caption strings -> (N, 10, 768) token vectors, the text input of CMG encoders.

Plugins register with `register_featurizer(name)` (or the entry-point group
`cmg_eval.text_featurizers`): a factory `(model: str) -> TextFeaturizer`. The built-in `bert`
featurizer follows the reference pipeline with a *local* BERT through `transformers` (optional
extra `text`): word-pieces averaged per word, special tokens dropped, the first 10 words kept,
zero padding. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from cmg_eval.constants import MAX_TEXT_TOKENS, TOKEN_DIM
from cmg_eval.data.manifest import fingerprint
from cmg_eval.errors import CmgError
from cmg_eval.registry import Registry

MAX_PIECES = 25      # the reference's bert-embedding default sequence length (word-pieces, specials included)
BATCH = 64

featurizers: Registry = Registry("text featurizer", "cmg_eval.text_featurizers", ())
register_featurizer = featurizers.register


class TextFeaturizer(ABC):
    """Caption strings -> float32 (N, 10, 768), zero-padded after each caption's last word."""

    name: str = "featurizer"

    @abstractmethod
    def identity(self) -> str:
        """What decides the vectors (model files): part of embedding cache keys."""

    @abstractmethod
    def __call__(self, captions: Sequence[str]) -> np.ndarray:
        """Token vectors of each caption."""


def make_featurizer(name: str, model: str, fallback: str) -> TextFeaturizer:
    """The named featurizer; `fallback` (one line) says how to provide token features instead."""
    factory: Callable[..., TextFeaturizer] = featurizers.get(name)
    return factory(model=model, fallback=fallback)


def words_of(word_ids: Sequence[int | None], hidden: np.ndarray) -> np.ndarray:
    """Average the word-piece vectors of each word (special tokens have no word id): (words, 768)."""
    pieces: dict[int, list[int]] = {}
    for position, word in enumerate(word_ids):
        if word is not None:
            pieces.setdefault(word, []).append(position)
    if not pieces:
        return np.zeros((0, hidden.shape[-1]), np.float32)
    return np.stack([hidden[positions].mean(axis=0) for _, positions in sorted(pieces.items())]).astype(np.float32)


def pad_words(vectors: list[np.ndarray]) -> np.ndarray:
    """Per-caption word vectors -> (N, 10, 768), first 10 words, zeros after."""
    out = np.zeros((len(vectors), MAX_TEXT_TOKENS, TOKEN_DIM), np.float32)
    for row, words in zip(out, vectors):
        kept = words[:MAX_TEXT_TOKENS]
        row[:len(kept)] = kept
    return out


@register_featurizer("bert")
class BertFeaturizer(TextFeaturizer):
    """A local BERT (a folder, or a name already in the Hugging Face cache); offline only."""

    name = "bert"

    def __init__(self, model: str, fallback: str = "provide precomputed token features"):
        self.model_name = model
        self.fallback = fallback
        self.folder = self._resolve()
        self._loaded: tuple | None = None

    def _missing(self, why: str) -> CmgError:
        return CmgError(f"text featurizer 'bert': {why}; put a local BERT folder in --set text_model=DIR "
                        f"(needs `pip install cmg-eval[text]`), or {self.fallback}")

    def _resolve(self) -> Path:
        """The model folder on this machine, without any network access."""
        folder = Path(self.model_name).expanduser()
        if folder.is_dir():
            if not (folder / "config.json").is_file():
                raise self._missing(f"{folder} has no config.json")
            return folder
        try:
            from huggingface_hub import snapshot_download
        except ImportError:
            raise self._missing("transformers is not installed") from None
        try:
            return Path(snapshot_download(self.model_name, local_files_only=True))
        except Exception:  # not in the local cache (or not a valid name): never download
            raise self._missing(f"no local model {self.model_name!r}") from None

    def identity(self) -> str:
        digest = hashlib.sha256()
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            digest.update(f"{path.relative_to(self.folder)}:{fingerprint(path)}\n".encode())
        return f"bert:{MAX_PIECES}:{digest.hexdigest()[:24]}"

    def _load(self) -> tuple:
        if self._loaded is None:
            try:
                from transformers import AutoModel, AutoTokenizer
            except ImportError:
                raise self._missing("transformers is not installed") from None
            try:
                tokenizer = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
                model = AutoModel.from_pretrained(str(self.folder), local_files_only=True).eval()
            except (OSError, ValueError) as error:
                raise self._missing(f"{self.folder} is not a loadable BERT ({str(error).splitlines()[0]})") from None
            if not getattr(tokenizer, "is_fast", False):
                raise self._missing(f"{self.folder} has no fast tokenizer (tokenizer.json or vocab.txt)")
            if model.config.hidden_size != TOKEN_DIM:
                raise self._missing(f"{self.folder} has hidden size {model.config.hidden_size}, expected {TOKEN_DIM}")
            self._loaded = (tokenizer, model)
        return self._loaded

    def __call__(self, captions: Sequence[str]) -> np.ndarray:
        import torch

        tokenizer, model = self._load()
        vectors: list[np.ndarray] = []
        for start in range(0, len(captions), BATCH):
            batch = [str(c) for c in captions[start:start + BATCH]]
            encoded = tokenizer(batch, padding=True, truncation=True, max_length=MAX_PIECES, return_tensors="pt")
            with torch.inference_mode():
                hidden = model(**encoded).last_hidden_state.float().numpy()
            vectors += [words_of(encoded.word_ids(i), hidden[i]) for i in range(len(batch))]
        return pad_words(vectors)
