"""Residual VQ (`AVT_RQVAE_Encoder`, docs/checkpoints.md RVQ layout): DCID with one codebook per level.

`Cross_quantizer.*` gains a leading level axis `(L, n, hidden)`; row 0 of every level is held at
zero so that a level can add nothing.
"""

from __future__ import annotations

import torch

from cmg_eval.models.dcid import AVTVQVAEEncoder, CrossQuantizer, DcidConfig, nearest_codes

LEVELS = (2, 3, 4)   # the level counts cmg-eval pretrains (`dcid-rvq2/3/4`)


def residual_codes(features: torch.Tensor, codebooks64: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Greedy residual assignment: ((..., L) indices, the float64 residual entering each level)."""
    residual = features.double()
    indices, residuals = [], []
    for codebook in codebooks64:
        residuals.append(residual)
        index = nearest_codes(residual, codebook)
        indices.append(index)
        residual = residual - codebook[index]
    return torch.stack(indices, dim=-1), residuals


class AVTRQVAEEncoder(AVTVQVAEEncoder):
    def __init__(self, cfg: DcidConfig = DcidConfig(), levels: int = 4):
        super().__init__(cfg)
        self.Cross_quantizer = CrossQuantizer(cfg.n_embeddings, cfg.hidden, stack=levels)
        with torch.no_grad():
            self.Cross_quantizer.embedding[:, 0] = 0
            self.Cross_quantizer.ema_weight[:, 0] = 0

