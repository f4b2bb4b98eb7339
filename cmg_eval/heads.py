"""Downstream heads and their seeded trainer (on cached embeddings, never on raw features).

Heads train on the CPU unless a job asks for another device (`SourceRun.device`, passed to `train`); embeddings
stay numpy arrays on the CPU and batches move to the head's device, predictions come back as numpy.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

CPU = torch.device("cpu")


class SemanticDecoder(nn.Module):
    """The reference clip head: Linear D->D per step, max over time, Linear D->C."""

    def __init__(self, input_dim: int, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(input_dim, input_dim)
        self.event_classifier = nn.Linear(input_dim, n_classes)

    def per_step(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    def after_steps(self, steps: torch.Tensor) -> torch.Tensor:
        return self.event_classifier(steps.max(dim=1).values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after_steps(self.per_step(x))


class SegmentDecoder(nn.Module):
    """The reference localization head (Semantic_Decoder_AVVP): Linear D->D, Linear D->C per step, no pooling."""

    def __init__(self, input_dim: int, n_outputs: int):
        super().__init__()
        self.linear = nn.Linear(input_dim, input_dim)
        self.event_classifier = nn.Linear(input_dim, n_outputs)

    def per_step(self, x: torch.Tensor) -> torch.Tensor:
        return self.event_classifier(self.linear(x))

    def after_steps(self, steps: torch.Tensor) -> torch.Tensor:
        return steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.per_step(x)


@dataclass(frozen=True)
class DistinctRows:
    """(N, T, D) inputs held as their distinct rows (K, D) and each step's row number (N, T). Codebook readouts
    repeat a few hundred rows, so a head's per-step part runs on K rows instead of N x T."""

    table: np.ndarray
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.index)


def distinct_rows(inputs: np.ndarray, max_share: float = 0.25) -> np.ndarray | DistinctRows:
    """`inputs` as `DistinctRows` when at most `max_share` of its step rows are distinct, else unchanged."""
    if inputs.ndim != 3 or inputs.size == 0:
        return inputs
    rows = np.ascontiguousarray(inputs).reshape(-1, inputs.shape[-1])
    as_bytes = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    _, first, inverse = np.unique(as_bytes, return_index=True, return_inverse=True)
    if len(first) > max_share * len(rows):
        return inputs
    return DistinctRows(rows[first], inverse.reshape(inputs.shape[:2]).astype(np.int64))


def per_step_parts(head: nn.Module) -> tuple[Callable, Callable] | None:
    """(per-step part, rest) of a head whose output starts with the same computation on every step alone
    (`per_step`/`after_steps`, optionally behind `Standardize`); None for any other head."""
    if isinstance(head, nn.Sequential) and len(head) == 2 and isinstance(head[0], Standardize):
        inner = per_step_parts(head[1])
        return None if inner is None else (lambda x: inner[0](head[0](x)), inner[1])
    if callable(getattr(head, "per_step", None)) and callable(getattr(head, "after_steps", None)):
        return head.per_step, head.after_steps
    return None


# What the clean protocol adds to the reference's head training (all settable with --set): embeddings rescaled
# to unit spread before the head (`Standardize`), and at least `min_steps` optimizer steps, however few batches
# an epoch has on a small set. Without them the reference schedule (30-50 epochs of 1-2 batches on ~100 clips,
# the learning rate halved after 10 epochs) stops a head long before it fits what the embeddings separate.
CLEAN_TRAINING = {"standardize": True, "min_steps": 300}


class Standardize(nn.Module):
    """Embeddings centred per feature and divided by one number, their root-mean-square spread on the training
    data. The head's first Linear layer absorbs it, so what the head can express is unchanged; what changes is
    that Adam's fixed step size meets inputs of unit spread, whatever scale an encoder's embeddings have. One
    number for all features keeps their relative spread: features that hardly vary stay small (dividing each
    by its own spread would blow their noise up to the size of the signal)."""

    def __init__(self, inputs: np.ndarray):
        super().__init__()
        rows = np.asarray(inputs).reshape(-1, inputs.shape[-1])
        mean = rows.mean(axis=0, dtype=np.float64)
        spread = float(np.sqrt(rows.var(axis=0, dtype=np.float64).mean())) if len(rows) else 0.0
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(1.0 / spread if spread > 0 else 1.0, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.scale


def clean_head(factory: Callable[[], nn.Module], seed: int, inputs: np.ndarray, settings: dict[str, Any]) -> nn.Module:
    """The clean protocol's head: the reference head, behind `Standardize` of `inputs` when `standardize` is on."""
    head = seeded_head(factory, seed)
    return nn.Sequential(Standardize(inputs), head) if settings["standardize"] else head


def passes_per_epoch(n_items: int, settings: dict[str, Any], epochs: int, min_steps: int) -> int:
    """Shuffled passes over the data per epoch so that training takes at least `min_steps` optimizer steps
    (1 when the epochs already do; the learning-rate milestones keep counting epochs)."""
    batches = -(-n_items // int(settings["batch_size"]))
    return max(1, -(-min_steps // max(epochs * batches, 1)))


def seeded_head(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a head whose initial weights depend on `seed` only (not on the global RNG)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


@torch.no_grad()
def predict(head: nn.Module, inputs: np.ndarray | DistinctRows, batch_size: int = 1024) -> np.ndarray:
    """Head outputs for all inputs, in eval mode. With `DistinctRows` the per-step part runs once per distinct
    row and is gathered: the same numbers as on the full inputs (a Linear layer computes each row alone)."""
    head.eval()
    device = next(head.parameters(), torch.empty(0)).device
    parts = per_step_parts(head) if isinstance(inputs, DistinctRows) else None
    if isinstance(inputs, DistinctRows) and parts is None:
        inputs = inputs.table[inputs.index]
    if parts is not None:
        per_step, after_steps = parts
        table = per_step(torch.from_numpy(inputs.table).to(device))
        run = lambda i: after_steps(table[torch.from_numpy(inputs.index[i:i + batch_size]).to(device)])  # noqa: E731
    else:
        run = lambda i: head(torch.from_numpy(np.ascontiguousarray(inputs[i:i + batch_size])).to(device))  # noqa: E731
    outputs = [run(i).cpu().numpy() for i in range(0, len(inputs), batch_size)]
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
          clip_loss: bool = True, min_steps: int = 0, device: str | torch.device = "cpu",
          epoch_inputs: Callable[[int], np.ndarray] | None = None) -> None:
    """Adam + MultiStepLR + per-module grad-norm clipping, shuffled batches from a seeded generator.

    `after_epoch(epoch, head)` runs after each epoch (selection, scoring); the scheduler steps after it.
    A `loss_fn` module with parameters (the reference's learnable loss weights) is optimized with the head
    and clipped as its own module unless `clip_loss` is False. With `min_steps`, an epoch is as many
    shuffled passes as it takes for all epochs to make at least that many optimizer steps. Head, loss module
    and batches move to `device`. With `epoch_inputs`, each epoch trains on `epoch_inputs(epoch)` (the same items
    encoded anew) instead of `inputs`.
    """
    generator = torch.Generator().manual_seed(seed)  # on the CPU whatever the device: the same batches
    device = torch.device(device)
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
    # Few distinct rows (a codebook readout): each step runs the per-step part once per distinct row, then gathers.
    parts = per_step_parts(head) if epoch_inputs is None else None
    rows = distinct_rows(inputs, max_share=batch_size / (2 * max(len(inputs), 1))) if parts else inputs
    if isinstance(rows, DistinctRows):
        table, index = torch.from_numpy(rows.table).to(device), torch.from_numpy(rows.index).to(device)
        outputs = lambda batch: parts[1](parts[0](table)[index[batch]])  # noqa: E731
    else:
        outputs = lambda batch: head(x_all[batch])  # noqa: E731
    epochs = int(settings["epochs"]) if epochs is None else epochs
    passes = passes_per_epoch(len(x_all), settings, epochs, min_steps) if min_steps else 1
    for epoch in range(epochs):
        if epoch_inputs is not None:
            x_all = torch.from_numpy(np.ascontiguousarray(epoch_inputs(epoch))).to(device)
        head.train()
        for _ in range(passes):
            order = torch.randperm(len(x_all), generator=generator)
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                if device != CPU:
                    batch = batch.to(device)
                loss = loss_fn(outputs(batch), y_all[batch])
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(head.parameters(), float(settings["clip_grad"]))
                if loss_params and clip_loss:
                    nn.utils.clip_grad_norm_(loss_params, float(settings["clip_grad"]))
                optimizer.step()
        after_epoch(epoch, head)
        scheduler.step()


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean())


class BestEpoch:
    """The head state of the epoch with the best validation score; equal scores go to the lower validation loss.
    A small validation set saturates its score within a few epochs, and the earliest such epoch is barely
    trained (AVE on ~100 clips: selected at epoch 2 it scores 86-95 on test, at the lowest loss 100)."""

    def __init__(self) -> None:
        self.key: tuple[float, float] | None = None
        self.state: dict[str, torch.Tensor] | None = None

    def offer(self, model: nn.Module, score: float, loss: float) -> None:
        if self.key is None or (score, -loss) > self.key:
            self.key, self.state = (score, -loss), copy.deepcopy(model.state_dict())

    def restore(self, model: nn.Module) -> nn.Module:
        if self.state is not None:
            model.load_state_dict(self.state)
        return model


def fit_clean(head: nn.Module, x_fit: np.ndarray, y_fit: np.ndarray, x_select: np.ndarray, y_select: np.ndarray,
              loss_fn: Callable, score: Callable[[np.ndarray, np.ndarray], float], settings: dict[str, Any], seed: int,
              epochs: int, on_epoch: Callable[[], None] = lambda: None, device: str = "cpu") -> nn.Module:
    """The clean protocol's fit: train on (x_fit, y_fit) for at least `min_steps` steps, keep the epoch with the
    best `score(outputs, targets)` on the held-out selection data (ties: the lower `loss_fn` there)."""
    best = BestEpoch()
    targets = torch.from_numpy(np.ascontiguousarray(y_select))
    select_inputs = distinct_rows(x_select)

    def select(epoch: int, model: nn.Module) -> None:
        outputs = predict(model, select_inputs)
        best.offer(model, score(outputs, y_select), float(loss_fn(torch.from_numpy(outputs), targets)))
        on_epoch()

    train(head, x_fit, y_fit, loss_fn, settings, seed, select, epochs=epochs, min_steps=int(settings["min_steps"]),
          device=device)
    return best.restore(head)
