"""Quantizers for pretraining: VQ with MM-EMA codebook updates, residual VQ, FSQ.

Each `*_quantize` returns straight-through outputs, indices and the cross-modal commitment terms
(the reference's `Cross_VQEmbeddingEMA_AVT`); codebook updates are returned as a callable that the trainer runs after
the backward pass, so the codebook the losses saw is never modified under autograd.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from cmg_eval.models.dcid import nearest_codes
from cmg_eval.models.fsq import FsqQuantizer
from cmg_eval.models.rvq import residual_codes

UPDATE_ORDER = ("audio", "video", "text")  # the reference updates the codebook modality by modality
RESET_NOISE = 1 / 1024


@dataclass
class Quantized:
    """One layer's quantization of every modality in a batch."""

    vq: dict[str, torch.Tensor]          # straight-through outputs (B, T, D)
    indices: dict[str, torch.Tensor]     # (B, T) or (B, T, L)
    commitment: dict[str, torch.Tensor]  # scalar per modality
    updates: list[Callable[[], None]] = field(default_factory=list)


def straight_through(features: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    return features + (codes - features).detach()


def commitment(features: dict[str, torch.Tensor], codes: dict[str, torch.Tensor], beta: float,
               cross: float = 1.0) -> dict[str, torch.Tensor]:
    """Per modality: 2*beta*|z_m - sg(e_m)|^2 plus cross*beta shared over |z_m - sg(e_o)|^2 of the other
    modalities (the reference: cross = 1)."""
    out = {}
    for modality, z in features.items():
        others = [o for o in features if o != modality]
        loss = 2 * beta * F.mse_loss(z, codes[modality].detach())
        for other in others:
            loss = loss + cross * beta / len(others) * F.mse_loss(z, codes[other].detach())
        out[modality] = loss
    return out


def mm_ema_target(features: dict[str, torch.Tensor], modality: str) -> torch.Tensor:
    """0.5 * own feature + the other half shared by the other modalities at the same (b, t)."""
    others = [o for o in features if o != modality]
    if not others:
        return features[modality]
    return 0.5 * features[modality] + sum(features[o] for o in others) * (0.5 / len(others))


class EmaCodebook:
    """Views on one codebook's buffers, updated in place by the MM-EMA rule and the dead-code reset."""

    def __init__(self, embedding: torch.Tensor, ema_count: torch.Tensor, ema_weight: torch.Tensor,
                 unactivated: torch.Tensor, decay: float = 0.99, eps: float = 1e-5, zero_row: bool = False):
        self.embedding, self.ema_count, self.ema_weight, self.unactivated = embedding, ema_count, ema_weight, unactivated
        self.decay, self.eps, self.zero_row = decay, eps, zero_row

    @classmethod
    def views(cls, quantizer: torch.nn.Module, **kwargs) -> list["EmaCodebook"]:
        """One codebook per leading index of a stacked `Cross_quantizer`, or the single one."""
        names = ("embedding", "ema_count", "ema_weight", "unactivated_count")
        buffers = [getattr(quantizer, name) for name in names]
        if buffers[0].dim() == 2:
            return [cls(*buffers, **kwargs)]
        return [cls(*(b[i] for b in buffers), **kwargs) for i in range(buffers[0].shape[0])]

    @property
    def size(self) -> int:
        return self.embedding.shape[0]

    def nearest(self, features: torch.Tensor) -> torch.Tensor:
        return nearest_codes(features.detach(), self.embedding.double())

    @torch.no_grad()
    def mm_ema_update(self, features: dict[str, torch.Tensor], indices: dict[str, torch.Tensor]) -> None:
        """Per modality in turn: smoothed counts, then weights pulled to the multimodal target."""
        flat = {m: f.detach().reshape(-1, f.shape[-1]).to(self.embedding.dtype) for m, f in features.items()}
        for modality in [m for m in UPDATE_ORDER if m in flat]:
            index = indices[modality].reshape(-1)
            counts = torch.bincount(index, minlength=self.size).to(self.ema_count.dtype)
            self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
            total = self.ema_count.sum()
            self.ema_count.copy_((self.ema_count + self.eps) / (total + self.size * self.eps) * total)
            summed = torch.zeros_like(self.ema_weight).index_add_(0, index, mm_ema_target(flat, modality))
            self.ema_weight.mul_(self.decay).add_(summed, alpha=1 - self.decay)
            self.embedding.copy_(self.ema_weight / self.ema_count[:, None])
        if self.zero_row:
            self.embedding[0] = 0
            self.ema_weight[0] = 0

    @torch.no_grad()
    def reset_dead(self, used: torch.Tensor, after: int, active_within: int) -> int:
        """Codes unused for more than `after` updates restart next to a recently used code; returns how many."""
        self.unactivated.add_(1)
        self.unactivated[used] = 0
        dead = self.unactivated > after
        active = self.unactivated < active_within
        if self.zero_row:
            dead[0] = active[0] = False
        if not dead.any() or not active.any():
            return 0
        # drawn from the CPU generator on every device, so a GPU run draws the same numbers as a CPU run
        picks = torch.randint(int(active.sum()), (int(dead.sum()),), device="cpu").to(self.embedding.device)
        sources = torch.nonzero(active).squeeze(1)[picks]
        noise = torch.empty(self.embedding[dead].shape, dtype=self.embedding.dtype, device="cpu")
        noise = noise.uniform_(-RESET_NOISE, RESET_NOISE)
        noise = noise.to(self.embedding.device)
        self.embedding[dead] = self.embedding[sources] + noise
        self.ema_weight[dead] = self.embedding[dead] * self.ema_count[dead, None]
        self.unactivated[dead] = 0
        return int(dead.sum())


@dataclass
class ResetRule:
    after: int
    active_within: int


def used_codes(indices: dict[str, torch.Tensor], size: int) -> torch.Tensor:
    """(size,) bool mask of the codes any modality used, on the indices' device."""
    used = torch.zeros(size, dtype=torch.bool, device=next(iter(indices.values())).device)
    for index in indices.values():
        used[index.reshape(-1)] = True
    return used


def vq_quantize(codebook: EmaCodebook, features: dict[str, torch.Tensor], beta: float, reset: ResetRule,
                train: bool = True, cross: float = 1.0) -> Quantized:
    """Nearest code per step, straight-through outputs, MM-EMA and reset deferred to `updates`."""
    indices = {m: codebook.nearest(z) for m, z in features.items()}
    codes = {m: codebook.embedding[i].clone() for m, i in indices.items()}
    out = Quantized({m: straight_through(z, codes[m]) for m, z in features.items()}, indices,
                    commitment(features, codes, beta, cross))
    if train:
        detached = {m: z.detach() for m, z in features.items()}
        out.updates.append(lambda: codebook.mm_ema_update(detached, indices))
        out.updates.append(lambda: codebook.reset_dead(used_codes(indices, codebook.size), reset.after,
                                                       reset.active_within))
    return out


def rvq_quantize(levels: list[EmaCodebook], features: dict[str, torch.Tensor], beta: float, reset: ResetRule,
                 train: bool = True, cross: float = 1.0) -> Quantized:
    """Greedy residual codes per modality; MM-EMA and reset per level on that level's residuals."""
    stacked = torch.stack([level.embedding for level in levels]).double()
    assigned = {m: residual_codes(z.detach(), stacked) for m, z in features.items()}
    indices = {m: found[0] for m, found in assigned.items()}
    codes = {m: sum(level.embedding[indices[m][..., k]] for k, level in enumerate(levels)).clone()
             for m in features}
    out = Quantized({m: straight_through(z, codes[m]) for m, z in features.items()}, indices,
                    commitment(features, codes, beta, cross))
    if train:
        for k, level in enumerate(levels):
            residuals = {m: found[1][k] for m, found in assigned.items()}
            level_indices = {m: i[..., k] for m, i in indices.items()}
            out.updates.append(lambda lv=level, r=residuals, i=level_indices: lv.mm_ema_update(r, i))
            out.updates.append(lambda lv=level, i=level_indices: lv.reset_dead(used_codes(i, lv.size), reset.after,
                                                                               reset.active_within))
    return out


def fsq_quantize(fsq: FsqQuantizer, features: dict[str, torch.Tensor], beta: float, cross: float = 1.0) -> Quantized:
    """Rounded grid codes; the commitment terms act on the grid (own code and the other modalities')."""
    scalars = {m: fsq.project_in(z) for m, z in features.items()}
    quantized = {m: fsq.quantize_scalars(s) for m, s in scalars.items()}
    _, half_width = fsq.level_tensors(next(iter(scalars.values())))
    bounded = {m: fsq.bound(s) / half_width for m, s in scalars.items()}
    return Quantized({m: fsq.project_out(q[0]) for m, q in quantized.items()},
                     {m: q[1] for m, q in quantized.items()},
                     commitment(bounded, {m: q[0] for m, q in quantized.items()}, beta, cross))
