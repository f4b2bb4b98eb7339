"""The pretraining loop: seeded, float32, resumable from its own checkpoint, written atomically.

One Adam over the method's parts (gradient norm clipped per part, as the reference), CLUB nets with
their own Adams inside the step, codebook EMA after the optimizer step. The batch order of each
epoch derives from (seed, epoch), so a resumed run continues exactly where it stopped.

Under `torchrun` (WORLD_SIZE > 1) every rank trains on its slice of the same global batch with
gradients averaged across ranks (`cmg_eval.train.distributed`); only rank 0 reports and writes.

`device="cuda"` puts every module, buffer (codebook EMA state, unused-step counters) and per-step mask
on the GPU; batches are read ahead by DataLoader workers into pinned memory. Explicit random draws
(CPC step, reconstruction steps, CLUB shuffles, reset sources and noise) come from the CPU generator on
every device; checkpoints are written with CPU tensors, so they load and resume anywhere.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from cmg_eval import __version__, registry
from cmg_eval.models.checkpoint import load_checkpoint
from cmg_eval.errors import CmgError
from cmg_eval.io import save_checkpoint
from cmg_eval.train.data import PretrainSet, StepBatches, load_pretrain_set, step_loader
from cmg_eval.train.distributed import Ranks
from cmg_eval.train.method import DcidMethod
from cmg_eval.train.presets import resolve_settings, widths

# Settings that may change between a checkpoint and its resumption (more steps, other logging).
RESUMABLE_CHANGES = {"steps", "epochs", "save_every", "log_every"}


@dataclass
class Progress:
    """What the trainer reports after each logged step."""

    step: int
    total: int
    losses: dict[str, float]
    logs: dict[str, float]


def total_steps(settings: dict[str, Any], n_clips: int) -> int:
    per_epoch = max(n_clips // int(settings["batch_size"]), 1)
    steps = int(settings["steps"]) or int(settings["epochs"]) * per_epoch
    if steps < 1:
        raise CmgError("pretrain: steps and epochs are both 0, expected a positive number of steps")
    return steps


def default_workers(device: str) -> int:
    """Read-ahead processes: none on the CPU (a worker would take cores from the training threads and the
    batches are copies from memory), a few beside a GPU."""
    import os

    return 0 if device == "cpu" else max(1, min(4, (os.cpu_count() or 2) - 1))


def to_cpu(value: Any) -> Any:
    """Tensors (in dicts, lists and tuples) moved to the CPU, for a device-independent checkpoint."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return value


class Trainer:
    """Builds a method from settings, optionally resumes it, and runs its steps."""

    def __init__(self, method_name: str, data: PretrainSet, settings: dict[str, Any], preset: str, out: Path,
                 ranks: Ranks | None = None, device: str = "cpu", workers: int | None = None):
        self.method_name, self.data, self.settings, self.preset, self.out = method_name, data, settings, preset, out
        self.ranks = ranks or Ranks(device=device)
        self.device = torch.device(device)
        self.workers = default_workers(device) if workers is None else workers
        self.steps = total_steps(settings, len(data))
        torch.manual_seed(int(settings["seed"]))
        self.method: DcidMethod = registry.methods.get(method_name)(widths(settings), settings)
        self.parts = self.method.parts()
        for module in [*self.parts.values(), *(club.net for club in self.method.mi_nets().values())]:
            module.to(self.device)  # in place: the CLUB optimizers keep their parameters
        self.optimizer = torch.optim.Adam([p for m in self.parts.values() for p in m.parameters()],
                                          lr=float(settings["lr"]))
        self.step = 0
        self.data_hash = data.manifest_hash()
        self.last_losses: dict[str, float] = {}
        self.seconds = 0.0
        self.share = 1.0  # this rank's fraction of the step's global batch
        if self.ranks.active:
            for club in self.method.mi_nets().values():  # CLUB nets step inside the method's step
                club.optimizer.register_step_pre_hook(
                    lambda _opt, _args, _kwargs, net=club.net: self.ranks.average_grads(net.parameters(), self.share))

    # ---------------------------------------------------------------- checkpoints
    def checkpoint(self) -> dict[str, Any]:
        per_epoch = max(len(self.data) // int(self.settings["batch_size"]), 1)
        ckpt: dict[str, Any] = {name: module.state_dict() for name, module in self.parts.items()}
        ckpt.update({key: club.net.state_dict() for key, club in self.method.mi_nets().items()})
        ckpt.update({
            "method": self.method_name, "preset": self.preset, "config": self.method.config(),
            "settings": dict(self.settings), "seed": int(self.settings["seed"]),
            "data": {"root": str(self.data.root), "manifest_hash": self.data_hash, "clips": len(self.data)},
            "total_step": self.step, "steps": self.steps, "finished": self.step >= self.steps,
            # the reference's meaning: index of the last finished epoch (the paper protocol reads it)
            "epoch": self.step // per_epoch - 1, "losses": self.last_losses,
            "train_seconds": round(self.seconds, 1), "cmg_eval_version": __version__,
            "optimizer": self.optimizer.state_dict(), "rng_state": torch.get_rng_state(),
            "world_size": self.ranks.world, "device": self.device.type,
            "torch_threads": torch.get_num_threads(),  # CPU results depend on it (reduction order)
            **{f"optimizer_{key.replace('_parameters', '').lower()}": club.optimizer.state_dict()
               for key, club in self.method.mi_nets().items()},
            **self.method.state(),
        })
        if self.device.type == "cuda":
            ckpt["cuda_rng_state"] = torch.cuda.get_rng_state(self.device)
        return to_cpu(ckpt) if self.device.type != "cpu" else ckpt

    def resume(self, ckpt: dict[str, Any]) -> None:
        """Continue from `ckpt`, which must come from the same method, settings and data."""
        where = str(self.out)
        if ckpt.get("method") != self.method_name or ckpt.get("preset") != self.preset:
            raise CmgError(f"{where}: holds a {ckpt.get('method')!r} ({ckpt.get('preset')}) checkpoint, not "
                           f"{self.method_name!r} ({self.preset}); choose another --out or remove it")
        saved = ckpt.get("settings") or {}
        changed = sorted(k for k in set(saved) | set(self.settings)
                         if k not in RESUMABLE_CHANGES and saved.get(k) != self.settings.get(k))
        if changed:
            raise CmgError(f"{where}: was trained with other settings ({', '.join(changed[:4])}); "
                           f"choose another --out or remove it")
        if (ckpt.get("data") or {}).get("manifest_hash") != self.data_hash:
            raise CmgError(f"{where}: was trained on other data (manifest hash differs); choose another --out")
        for name, module in self.parts.items():
            module.load_state_dict(ckpt[name])
        for key, club in self.method.mi_nets().items():
            club.net.load_state_dict(ckpt[key])
            club.optimizer.load_state_dict(ckpt[f"optimizer_{key.replace('_parameters', '').lower()}"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.method.load_state(ckpt)
        torch.set_rng_state(ckpt["rng_state"])
        if self.device.type == "cuda" and ckpt.get("cuda_rng_state") is not None:
            torch.cuda.set_rng_state(ckpt["cuda_rng_state"], self.device)
        self.step = int(ckpt["total_step"])
        self.last_losses = dict(ckpt.get("losses") or {})
        self.seconds = float(ckpt.get("train_seconds", 0.0))

    def save(self) -> None:
        if self.ranks.main:
            save_checkpoint(self.checkpoint(), self.out)
        self.ranks.barrier()

    # ---------------------------------------------------------------- training
    def batches(self) -> StepBatches:
        """This process's batch of every step (its slice under torchrun)."""
        return StepBatches(self.data, int(self.settings["seed"]), int(self.settings["batch_size"]), self.ranks.share)

    def on_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.device.type == "cpu":
            return batch
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def train_step(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, float], dict[str, float]]:
        """One optimizer step on `batch`, the loaded batch of step `self.step`."""
        batch = self.on_device(batch)
        if self.ranks.active:
            return self.distributed_step(batch)
        result = self.method.step(batch, self.step)
        total = sum(result.losses.values())
        if not torch.isfinite(total):
            raise CmgError(f"pretrain {self.method_name}: loss is {float(total)} at step {self.step} "
                           f"({', '.join(f'{k} {float(v):.3g}' for k, v in result.losses.items())})")
        self.optimizer.zero_grad()
        total.backward()
        for module in self.parts.values():
            nn.utils.clip_grad_norm_(module.parameters(), float(self.settings["clip_grad"]))
        self.optimizer.step()
        for update in result.updates:
            update()
        return {k: float(v.detach()) for k, v in result.losses.items()}, result.logs

    def distributed_step(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, float], dict[str, float]]:
        """`train_step` on this rank's slice: losses and gradients averaged over ranks, rank 0's buffers,
        method state and random state afterwards, so every rank holds the same model after every step."""
        ranks = self.ranks
        self.share = len(batch["audio"]) / min(int(self.settings["batch_size"]), len(self.data))
        result = self.method.step(batch, self.step)
        names = sorted(result.losses)
        local = torch.stack([result.losses[k].detach().double().reshape(()) for k in names]) * self.share
        losses = dict(zip(names, ranks.sum(local).tolist()))
        total = sum(losses.values())
        if not math.isfinite(total):
            raise CmgError(f"pretrain {self.method_name}: loss is {total} at step {self.step} "
                           f"({', '.join(f'{k} {v:.3g}' for k, v in losses.items())})")
        self.optimizer.zero_grad()
        sum(result.losses.values()).backward()
        parameters = [p for m in self.parts.values() for p in m.parameters()]
        ranks.average_grads(parameters, self.share)
        for module in self.parts.values():
            nn.utils.clip_grad_norm_(module.parameters(), float(self.settings["clip_grad"]))
        self.optimizer.step()
        for update in result.updates:
            update()
        ranks.broadcast_buffers(self.parts.values())
        self.method.load_state(ranks.broadcast_object(self.method.state()))
        torch.set_rng_state(ranks.broadcast_object(torch.get_rng_state()))
        logs = ranks.broadcast_object(result.logs)
        return {k: losses[k] for k in result.losses}, logs

    def run(self, report: Callable[[Progress], None] = lambda _: None) -> dict[str, Any]:
        """Train up to the target step count, saving every `save_every` steps and at the end."""
        self.ranks.check_same("state (data hash, step)", (self.data_hash, self.step))
        if self.step >= self.steps:
            return self.checkpoint()  # already trained this far: leave the file as it is
        self.method.train(True)
        self.ranks.broadcast_parameters([*self.parts.values(), *(c.net for c in self.method.mi_nets().values())])
        log_every, save_every = int(self.settings["log_every"]), int(self.settings["save_every"])
        running: dict[str, list[float]] = {}
        loader = step_loader(self.batches(), self.step, self.steps, self.workers,
                             pin_memory=self.device.type == "cuda")
        while self.step < self.steps:
            started = time.perf_counter()
            batch = next(loader)
            losses, logs = self.train_step(batch)
            self.step += 1
            self.seconds += time.perf_counter() - started
            for key, value in losses.items():
                running.setdefault(key, []).append(value)
            if self.step % log_every == 0 or self.step == self.steps:
                self.last_losses = {k: float(np.mean(v)) for k, v in running.items()}
                running = {}
                if self.ranks.main:
                    report(Progress(self.step, self.steps, self.last_losses,
                                    {k: v for k, v in logs.items() if not math.isnan(v)}))
            if self.step % save_every == 0 and self.step < self.steps:
                self.save()
        self.save()
        return self.checkpoint()


def pretrain(method_name: str, data_root: str | Path, out: str | Path, preset: str = "tiny",
             assignments: tuple[str, ...] = (), report: Callable[[Progress], None] = lambda _: None,
             on_start: Callable[[Trainer], None] = lambda _: None, device: str = "cpu",
             workers: int | None = None) -> dict[str, Any]:
    """Train `method_name` on the pretraining set under `data_root` into the checkpoint `out` (resumable),
    on `device` (`cpu` or `cuda`) with `workers` read-ahead processes (None: 0 on the CPU, a few on a GPU)."""
    from cmg_eval.embedder import check_device

    check_device(device)
    method_cls = registry.methods.get(method_name)
    settings = resolve_settings(preset, method_cls.defaults, assignments)
    out = Path(out)
    ranks = Ranks.from_env(device)
    trainer = Trainer(method_name, load_pretrain_set(data_root), settings, preset, out, ranks, device, workers)
    if out.exists():
        trainer.resume(load_checkpoint(out))
    on_start(trainer)
    try:
        return trainer.run(report)
    finally:
        ranks.close()
