"""Downstream heads and their seeded trainer (on cached embeddings, never on raw features).

Heads train on the CPU unless a run asks for another device (`on_device`); embeddings stay numpy
arrays on the CPU and batches move to the head's device, predictions come back as numpy.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

CPU = torch.device("cpu")
_DEVICE = CPU  # where `train` puts heads; set for a run by `on_device`


@contextmanager
def on_device(device: str | torch.device) -> Iterator[None]:
    """Meanwhile `train` moves heads, loss modules and batches to `device`."""
    global _DEVICE
    previous, _DEVICE = _DEVICE, torch.device(device)
    try:
        yield
    finally:
        _DEVICE = previous


class SemanticDecoder(nn.Module):
    """The reference clip head: Linear D->D per step, max over time, Linear D->C."""

    def __init__(self, input_dim: int, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(input_dim, input_dim)
        self.event_classifier = nn.Linear(input_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.event_classifier(self.linear(x).max(dim=1).values)


class SegmentDecoder(nn.Module):
    """The reference localization head (Semantic_Decoder_AVVP): Linear D->D, Linear D->C per step, no pooling."""

    def __init__(self, input_dim: int, n_outputs: int):
        super().__init__()
        self.linear = nn.Linear(input_dim, input_dim)
        self.event_classifier = nn.Linear(input_dim, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.event_classifier(self.linear(x))


def seeded_head(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a head whose initial weights depend on `seed` only (not on the global RNG)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


@torch.no_grad()
def predict(head: nn.Module, inputs: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Head outputs for all inputs, in eval mode."""
    head.eval()
    device = next(head.parameters(), torch.empty(0)).device
    outputs = [head(torch.from_numpy(np.ascontiguousarray(inputs[i:i + batch_size])).to(device)).cpu().numpy()
               for i in range(0, len(inputs), batch_size)]
    return np.concatenate(outputs) if outputs else np.empty((0,))


@contextmanager
def small_model_cpu() -> Iterator[None]:
    """Meanwhile one intra-op thread (head matrices gain nothing from more, and on a busy machine threads
    waiting for each other make a one-second job take a minute) and denormal floats read as zero (tiny
    embeddings, e.g. a random codebook's, give denormal gradients that run tens of times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    flushing = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if flushing:
            torch.set_flush_denormal(False)


@small_model_cpu()
def train(head: nn.Module, inputs: np.ndarray, targets: np.ndarray, loss_fn: Callable, settings: dict[str, Any],
          seed: int, after_epoch: Callable[[int, nn.Module], None], epochs: int | None = None,
          clip_loss: bool = True) -> None:
    """Adam + MultiStepLR + per-module grad-norm clipping, shuffled batches from a seeded generator.

    `after_epoch(epoch, head)` runs after each epoch (selection, scoring); the scheduler steps after it.
    A `loss_fn` module with parameters (the reference's learnable loss weights) is optimized with the head
    and clipped as its own module unless `clip_loss` is False.
    """
    generator = torch.Generator().manual_seed(seed)  # on the CPU whatever the device: the same batches
    device = _DEVICE
    if device != CPU:
        head.to(device)
        if isinstance(loss_fn, nn.Module):
            loss_fn.to(device)
    loss_params = list(loss_fn.parameters()) if isinstance(loss_fn, nn.Module) else []
    optimizer = torch.optim.Adam([*head.parameters(), *loss_params], lr=float(settings["lr"]))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(settings["milestones"]),
                                                     gamma=float(settings["gamma"]))
    x_all, y_all = torch.from_numpy(np.ascontiguousarray(inputs)), torch.from_numpy(np.ascontiguousarray(targets))
    if device != CPU:
        x_all, y_all = x_all.to(device), y_all.to(device)
    batch_size = int(settings["batch_size"])
    for epoch in range(int(settings["epochs"]) if epochs is None else epochs):
        head.train()
        order = torch.randperm(len(x_all), generator=generator)
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            if device != CPU:
                batch = batch.to(device)
            loss = loss_fn(head(x_all[batch]), y_all[batch])
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(head.parameters(), float(settings["clip_grad"]))
            if loss_params and clip_loss:
                nn.utils.clip_grad_norm_(loss_params, float(settings["clip_grad"]))
            optimizer.step()
        after_epoch(epoch, head)
        scheduler.step()
