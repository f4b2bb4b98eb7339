"""Encode a FeatureSource once per model, through the on-disk cache, checking inputs and outputs.

With `device="cuda"` the encoder's modules and tensors move to the GPU and each batch is encoded
there; the embeddings come back to the CPU before they are checked and cached.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from cmg_eval.cache import EmbeddingCache, cache_key
from cmg_eval.constants import MAX_TEXT_TOKENS
from cmg_eval.encoders.base import LoadedModel, all_finite, finite_activations, tensor_holders
from cmg_eval.errors import CmgError
from cmg_eval.task import FeatureSource

ENCODER_CACHE_VERSION = "1"
DEVICES = ("cpu", "cuda")


def check_device(device: str) -> str:
    """`cpu` or `cuda` (then a GPU must be visible to torch); float32 matmuls and convolutions stay exact
    (no TF32), so GPU embeddings differ from CPU ones by rounding only."""
    if device not in DEVICES:
        raise CmgError(f"--device {device}: expected one of {', '.join(DEVICES)}")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise CmgError("--device cuda: torch sees no GPU (torch.cuda.is_available() is False); use --device cpu")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return device


def move_encoder(encoder: object, device: str, seen: set[int] | None = None) -> None:
    """Move an encoder to `device`: an object with a `to(device)` method moves itself; otherwise every module and
    tensor among its attributes (through plain objects, dicts, lists and tuples) is moved (docs/encoders.md)."""
    seen = set() if seen is None else seen
    if id(encoder) in seen:
        return
    seen.add(id(encoder))
    mover = getattr(encoder, "to", None)
    if callable(mover) and not isinstance(encoder, torch.Tensor):
        mover(device)
        return
    for container, key, value in tensor_holders(encoder):
        if isinstance(value, torch.Tensor):
            if container is None:
                raise CmgError(f"encoder {type(encoder).__name__}: a tensor inside a tuple cannot be moved to "
                               f"{device}; hold it in a list or give the encoder a to(device) method")
            if isinstance(container, (dict, list)):
                container[key] = value.to(device)
            else:
                setattr(container, key, value.to(device))
        else:
            move_encoder(value, device, seen)


class Embedder:
    """`embedder(source) -> (N, T, D)` float32 (or (N, D) for pooled sources), encoded at most once."""

    def __init__(self, model: LoadedModel, cache: EmbeddingCache, batch_size: int, progress: Progress,
                 mask_nonfinite: bool = False, device: str = "cpu"):
        self.model = model
        self.device = device
        if device != "cpu":
            move_encoder(model.encoder, device)
        self.cache = cache
        self.batch_size = batch_size
        self.progress = progress
        self.mask_nonfinite = mask_nonfinite
        self.masked: dict[str, int] = {}   # source key -> items whose non-finite inputs were set to 0
        self.seconds = 0.0

    def __call__(self, source: FeatureSource) -> np.ndarray:
        if source.whole is not None:   # the cached whole is mapped, so only these rows are read from it
            return np.asarray(self._embedded(source.whole, mapped=True)[source.rows])
        return self._embedded(source)

    def _embedded(self, source: FeatureSource, mapped: bool = False) -> np.ndarray:
        """`source` from the cache (memory-mapped if `mapped`), else encoded and stored."""
        key = cache_key(ENCODER_CACHE_VERSION, self.model.identity, source.key, "pooled" if source.pool else "steps",
                        "masked" if self.mask_nonfinite else "strict",
                        *([] if self.device == "cpu" else [self.device]))  # GPU embeddings: their own entries
        cached = self.cache.load(key, mapped=mapped)
        if cached is not None:
            return cached
        with self.cache.lock(key):  # another process may be encoding the same thing: wait, then reuse
            cached = self.cache.load(key, count_miss=False, mapped=mapped)
            if cached is not None:
                return cached
            started = time.perf_counter()
            array = self._encode(source)
            self.seconds += time.perf_counter() - started
            self.cache.store(key, array, {"model": self.model.identity, "data": source.key, "where": source.where})
        return array

    def encode_uncached(self, source: FeatureSource) -> np.ndarray:
        """`source` encoded now, bypassing the cache (encodings that differ from call to call)."""
        return self._encode(source)

    def _encode(self, source: FeatureSource) -> np.ndarray:
        encoder, readout = self.model.encoder, self.model.readout
        dim = encoder.output_dim(readout)
        parts, done = [], 0
        bar = self.progress.add_task(f"encode {self.model.label} {source.modality} ({Path(source.where).name})",
                                     total=source.n_items)
        for batch in source.batches(self.batch_size):
            with np.errstate(over="ignore"):   # what the encoders compute in, checked after the cast below
                batch = np.ascontiguousarray(batch, dtype=np.float32)
            if not all_finite(torch.from_numpy(batch)):
                bad_items = np.flatnonzero(~np.isfinite(batch.reshape(len(batch), -1)).all(1))
                if not self.mask_nonfinite:
                    raise CmgError(f"{source.where}: non-finite {source.modality} features in item "
                                   f"{done + int(bad_items[0])} of the {source.part}, expected finite numbers "
                                   f"(--allow-nonfinite sets them to 0)")
                batch = np.nan_to_num(batch, nan=0.0, posinf=0.0, neginf=0.0)
                self.masked[source.key] = self.masked.get(source.key, 0) + len(bad_items)
            with torch.inference_mode(), finite_activations(self.model.label, f"{source.modality} inputs of "
                                                                              f"{source.where}"):
                out = encoder.encode(source.modality, torch.from_numpy(batch).to(self.device),
                                     readout).cpu()
            steps = {batch.shape[1], MAX_TEXT_TOKENS} if source.modality == "text" else {batch.shape[1]}
            if out.dim() != 3 or out.shape[0] != len(batch) or out.shape[2] != dim or out.shape[1] not in steps:
                raise CmgError(f"encoder {self.model.label!r}: {source.modality} output shape {tuple(out.shape)}, "
                               f"expected ({len(batch)}, {batch.shape[1]}, {dim})")
            if not all_finite(out):
                raise CmgError(f"encoder {self.model.label!r}: non-finite {source.modality} embeddings for "
                               f"{source.where}")
            out = out.mean(dim=1) if source.pool else out
            parts.append(out.detach().float().numpy())
            done += len(batch)
            self.progress.advance(bar, len(batch))
        self.progress.remove_task(bar)
        if done != source.n_items:
            raise CmgError(f"{source.where}: read {done} {source.modality} items, expected {source.n_items}")
        return np.concatenate(parts) if parts else np.empty((0, dim) if source.pool else (0, 0, dim), np.float32)


class DeviceEncoder:
    """An encoder moved to `device` that takes and returns CPU tensors (for `cmg-eval embed`)."""

    def __init__(self, encoder: object, device: str):
        move_encoder(encoder, device)
        self._encoder, self._device = encoder, device

    def __getattr__(self, name: str):
        return getattr(self._encoder, name)

    def encode(self, modality: str, feats: torch.Tensor, readout: str | None = None) -> torch.Tensor:
        return self._encoder.encode(modality, torch.as_tensor(feats).to(self._device), readout).cpu()

    def encode_indices(self, modality: str, feats: torch.Tensor) -> torch.Tensor | None:
        out = self._encoder.encode_indices(modality, torch.as_tensor(feats).to(self._device))
        return None if out is None else out.cpu()
