"""Encoding with the encoder's dropout active, for the paper protocol's `encode_mode=train`: the reference's
scripts leave the frozen encoder in train mode while they train a head (dropout on, no gradients), so the
training embeddings change from epoch to epoch; they score in eval mode."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from cmg_eval.embedder import Embedder
from cmg_eval.encoders.base import LoadedModel
from cmg_eval.errors import CmgError
from cmg_eval.task import FeatureSource


def torch_modules(encoder: Any) -> list[nn.Module]:
    """The torch modules an encoder holds: itself, its attributes, and one level into dicts and lists."""
    if isinstance(encoder, nn.Module):
        return [encoder]
    found: list[nn.Module] = []
    for value in vars(encoder).values():
        inner = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
        found += [v for v in inner if isinstance(v, nn.Module)]
    return found


def dropout_rate(modules: list[nn.Module]) -> float:
    """The largest dropout probability in the modules (dropout layers and attention dropout), 0 if none."""
    rates = [m.p for root in modules for m in root.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    rates += [m.dropout for root in modules for m in root.modules() if isinstance(m, nn.MultiheadAttention)]
    return max(rates, default=0.0)


def check_dropout(model: LoadedModel) -> list[nn.Module]:
    """The model's torch modules, refused in one line when nothing in them drops out."""
    modules = torch_modules(model.encoder)
    if dropout_rate(modules) <= 0:
        raise CmgError(f"--set encode_mode=train: encoder {model.label!r} ({model.method}) has no dropout to "
                       f"activate (train-mode encoding would equal eval mode); use encode_mode=eval")
    return modules


@contextmanager
def train_mode(modules: list[nn.Module]) -> Iterator[None]:
    """Meanwhile every module (and submodule) is in train mode; each flag restored afterwards."""
    previous = [(m, m.training) for root in modules for m in root.modules()]
    for root in modules:
        root.train()
    try:
        yield
    finally:
        for module, training in previous:
            module.training = training


class DropoutEncoding:
    """`(source, seed) -> embeddings` of the source with dropout active, reproducible for a seed, never cached."""

    def __init__(self, embedder: Embedder):
        self.embedder = embedder
        self.modules = check_dropout(embedder.model)

    def __call__(self, source: FeatureSource, seed: int) -> np.ndarray:
        device = torch.device(self.embedder.device)
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), train_mode(self.modules):
            torch.manual_seed(seed)
            return self.embedder.encode_uncached(source)
