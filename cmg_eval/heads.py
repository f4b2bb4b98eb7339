"""Downstream heads and their seeded trainer (on cached embeddings, never on raw features)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn


class SemanticDecoder(nn.Module):
    """The reference clip head: Linear D->D per step, max over time, Linear D->C."""

    def __init__(self, input_dim: int, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(input_dim, input_dim)
        self.event_classifier = nn.Linear(input_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.event_classifier(self.linear(x).max(dim=1).values)


def seeded_head(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a head whose initial weights depend on `seed` only (not on the global RNG)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


@torch.no_grad()
def predict(head: nn.Module, inputs: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Head outputs for all inputs, in eval mode."""
    head.eval()
    outputs = [head(torch.from_numpy(np.ascontiguousarray(inputs[i:i + batch_size]))).numpy()
               for i in range(0, len(inputs), batch_size)]
    return np.concatenate(outputs) if outputs else np.empty((0,))


def train(head: nn.Module, inputs: np.ndarray, targets: np.ndarray, loss_fn: Callable, settings: dict[str, Any],
          seed: int, after_epoch: Callable[[int, nn.Module], None], epochs: int | None = None) -> None:
    """Adam + MultiStepLR + per-module grad-norm clipping, shuffled batches from a seeded generator.

    `after_epoch(epoch, head)` runs after each epoch (selection, scoring); the scheduler steps after it.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(head.parameters(), lr=float(settings["lr"]))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(settings["milestones"]),
                                                     gamma=float(settings["gamma"]))
    x_all, y_all = torch.from_numpy(np.ascontiguousarray(inputs)), torch.from_numpy(np.ascontiguousarray(targets))
    batch_size = int(settings["batch_size"])
    for epoch in range(int(settings["epochs"]) if epochs is None else epochs):
        head.train()
        order = torch.randperm(len(x_all), generator=generator)
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            loss = loss_fn(head(x_all[batch]), y_all[batch])
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(head.parameters(), float(settings["clip_grad"]))
            optimizer.step()
        after_epoch(epoch, head)
        scheduler.step()
