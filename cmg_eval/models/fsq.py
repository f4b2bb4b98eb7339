"""Finite scalar quantization (Mentzer et al. 2023) as a drop-in for DCID's `Cross_quantizer`.

`project_in` maps the modal-general feature to len(levels) scalars, each is bounded and rounded
to its level grid; `project_out` maps the grid point back to the feature width. The implicit
codebook is every grid point (prod(levels) codes, mixed-radix indices, first level fastest).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cmg_eval.models.dcid import AVTVQVAEEncoder, DcidConfig

DEFAULT_LEVELS = (5, 5, 4, 4)  # 400 codes, the size of the VQ codebook
EPS = 1e-3


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient."""
    return x + (torch.round(x) - x).detach()


class FsqQuantizer(nn.Module):
    """Bound, round and rescale; codes lie on a grid in [-1, 1]^d."""

    def __init__(self, levels: tuple[int, ...], dim: int):
        super().__init__()
        self.levels = tuple(int(level) for level in levels)
        self.project_in = nn.Linear(dim, len(self.levels))
        self.project_out = nn.Linear(len(self.levels), dim)

    @property
    def n_codes(self) -> int:
        return math.prod(self.levels)

    def level_tensors(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        levels = torch.tensor(self.levels, dtype=like.dtype, device=like.device)
        return levels, torch.div(levels, 2, rounding_mode="floor")

    def bound(self, scalars: torch.Tensor) -> torch.Tensor:
        """Squash to (-L/2, L/2) on the integer grid; even L get a half-step offset (grid -L/2..L/2-1)."""
        levels, _ = self.level_tensors(scalars)
        half = (levels - 1) * (1 + EPS) / 2
        offset = torch.where(levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half)
        return torch.tanh(scalars + shift) * half - offset

    def quantize_scalars(self, scalars: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., d) projected features -> (grid codes in [-1, 1] with straight-through grads, (...) indices)."""
        _, half_width = self.level_tensors(scalars)
        rounded = round_ste(self.bound(scalars))
        return rounded / half_width, self.codes_to_indices(rounded.detach() / half_width)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        levels, half_width = self.level_tensors(codes)
        digits = torch.round(codes * half_width + half_width).long()
        basis = torch.cumprod(torch.tensor((1,) + self.levels[:-1], device=codes.device), 0)
        return (digits * basis).sum(-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        levels = torch.tensor(self.levels, device=indices.device)
        basis = torch.cumprod(torch.tensor((1,) + self.levels[:-1], device=indices.device), 0)
        digits = torch.remainder(torch.div(indices[..., None], basis, rounding_mode="floor"), levels)
        half_width = torch.div(levels, 2, rounding_mode="floor")
        return (digits - half_width).float() / half_width

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., dim) -> (project_out(code) (..., dim), indices (...))."""
        codes, indices = self.quantize_scalars(self.project_in(features))
        return self.project_out(codes), indices

    def grid(self) -> torch.Tensor:
        """Every grid point in level units (integers, before the rescale to [-1, 1]): (prod(levels), d)."""
        weight = self.project_in.weight
        codes = self.indices_to_codes(torch.arange(self.n_codes, device=weight.device)).to(weight.dtype)
        return codes * self.level_tensors(codes)[1]

    def codebook(self) -> torch.Tensor:
        """Every grid point through `project_out`: (prod(levels), dim), row i = index i."""
        weight = self.project_out.weight
        return self.project_out(self.indices_to_codes(torch.arange(self.n_codes, device=weight.device)).to(weight.dtype))


class AVTFSQVAEEncoder(AVTVQVAEEncoder):
    """DCID whose `Cross_quantizer` is an FSQ (keys `Cross_quantizer.project_{in,out}.*`)."""

    def __init__(self, cfg: DcidConfig = DcidConfig(), levels: tuple[int, ...] = DEFAULT_LEVELS):
        super().__init__(cfg)
        self.Cross_quantizer = FsqQuantizer(levels, cfg.hidden)
