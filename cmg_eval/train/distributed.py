"""Data-parallel pretraining under `torchrun`: one process per rank, each on a slice of every step's batch.

The step's global batch is the one a single process would train on (`batch_items`); rank r takes the
r-th of `world` contiguous, disjoint slices. Gradients of the main optimizer's parameters and of the
CLUB nets are averaged across ranks, weighted by slice size (so they are the gradients of the
global-batch mean loss for the per-sample terms), before clipping and before each optimizer step.
The methods call several modules outside `forward`, so the averaging is done by hand rather than
through `DistributedDataParallel`'s forward hooks; the result is the same.

What the optimizers do not touch is made rank-0-authoritative after every step: module buffers (the
codebook EMA weights, counts, embeddings and unused-step counters, changed in place by the MM-EMA
update and the dead-code reset, which draws random numbers), the method's extra state (SRCID's
layer-2 switch, which watches the layer-1 MI estimate) and the torch random state, so the next step
draws the same random numbers (CPC context step, reconstruction steps) on every rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from cmg_eval.errors import CmgError


def env_world() -> tuple[int, int]:
    """(rank, world size) as torchrun sets them; (0, 1) outside torchrun."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


@dataclass
class Ranks:
    """This process's place in the process group; `world == 1` is the plain single-process run."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"
    owned: bool = False  # this object started the process group (and ends it in `close`)

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str = "cpu") -> "Ranks":
        """Join the process group torchrun describes (gloo on CPU, nccl on CUDA); single process otherwise."""
        rank, world = env_world()
        if world <= 1:
            return cls(device=device)
        import torch.distributed as dist

        if not dist.is_available():
            raise CmgError("pretrain: WORLD_SIZE > 1 but this torch build has no torch.distributed")
        owned = not dist.is_initialized()
        if owned:
            if device == "cuda":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl" if device == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), device, owned)

    # ---------------------------------------------------------------- data
    def share(self, items: np.ndarray) -> np.ndarray:
        """This rank's disjoint, contiguous slice of the global batch `items`."""
        if not self.active:
            return items
        if len(items) < self.world:
            raise CmgError(f"pretrain: batch of {len(items)} clips cannot be split over {self.world} processes; "
                           f"raise batch_size to at least {self.world}")
        return np.array_split(items, self.world)[self.rank]

    # ---------------------------------------------------------------- collectives
    def average_grads(self, parameters: Iterable[nn.Parameter], weight: float) -> None:
        """Sum over ranks of `weight` x each gradient, in one flat all-reduce.

        A parameter without a gradient on this rank counts as zero; it keeps `None` only where no rank
        has a gradient for it (as a single process would leave it)."""
        if not self.active:
            return
        import torch.distributed as dist

        params = [p for p in parameters if p.requires_grad]
        if not params:
            return
        present = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=self.device)
        dist.all_reduce(present)
        params = [p for p, seen in zip(params, present.tolist()) if seen > 0]
        if not params:
            return
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) * weight
                          for p in params])
        dist.all_reduce(flat)
        offset = 0
        for p in params:
            chunk = flat[offset:offset + p.numel()].view_as(p)
            if p.grad is None:
                p.grad = chunk.clone()
            else:
                p.grad.copy_(chunk)
            offset += p.numel()

    def broadcast_buffers(self, modules: Iterable[nn.Module]) -> None:
        """Rank 0's buffers (codebook EMA state and counters) everywhere, in place."""
        if not self.active:
            return
        import torch.distributed as dist

        buffers = [b for module in modules for b in module.buffers()]
        if buffers:
            flat = torch.cat([b.detach().reshape(-1).to(torch.float64) for b in buffers])
            dist.broadcast(flat, 0)
            offset = 0
            for b in buffers:
                b.copy_(flat[offset:offset + b.numel()].view_as(b).to(b.dtype))
                offset += b.numel()

    def broadcast_parameters(self, modules: Iterable[nn.Module]) -> None:
        """Rank 0's parameters everywhere (once, before training, as DistributedDataParallel does)."""
        if not self.active:
            return
        import torch.distributed as dist

        with torch.no_grad():
            for module in modules:
                for parameter in module.parameters():
                    dist.broadcast(parameter.data, 0)

    def broadcast_object(self, value: Any) -> Any:
        """Rank 0's `value` (any picklable object) on every rank."""
        if not self.active:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, 0)
        return box[0]

    def check_same(self, what: str, value: Any) -> None:
        """Raise on every rank when the ranks disagree on `value` (e.g. a checkpoint only some of them see)."""
        if not self.active:
            return
        import torch.distributed as dist

        values: list[Any] = [None] * self.world
        dist.all_gather_object(values, value)
        differing = [rank for rank, other in enumerate(values) if other != values[0]]
        if differing:
            raise CmgError(f"pretrain: rank {differing[0]} starts from another {what} than rank 0 "
                           f"({values[differing[0]]!r} vs {values[0]!r}); every process must see the same "
                           f"--out and --data-root (a shared filesystem)")

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Elementwise sum of `values` over ranks (a new tensor)."""
        total = values.detach().clone()
        if self.active:
            import torch.distributed as dist

            dist.all_reduce(total)
        return total

    def close(self) -> None:
        if self.owned:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()
