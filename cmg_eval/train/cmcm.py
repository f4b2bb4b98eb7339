"""Cross-modal code matching (Liu et al., ACL 2022): paired inputs should share code distributions."""

from __future__ import annotations

import torch

PAIRS = (("audio", "video"), ("audio", "text"), ("text", "video"))
LOG_FLOOR = 1e-10


def safe_sqrt(squared: torch.Tensor) -> torch.Tensor:
    """sqrt of max(squared, 0) with gradient 0 wherever that is 0.

    The expanded form of a squared distance can dip below 0 (sqrt would give NaN) or, for a feature within
    float32 resolution of a code, come out exactly 0, where sqrt's derivative is infinite: the backward pass
    turns that into NaN gradients (an FSQ feature next to a grid point did, dcid-fsq seed 45 at step 774).
    Elsewhere value and gradient are those of squared.clamp_min(0).sqrt(), bit for bit."""
    positive = squared > 0
    return torch.where(positive, torch.where(positive, squared, torch.ones_like(squared)).sqrt(),
                       torch.zeros_like(squared))


def code_distribution(features: torch.Tensor, codebook: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(B, T, D) -> (B, K): softmax over codes of minus the Euclidean distance / temperature, averaged over time."""
    flat = features.reshape(-1, features.shape[-1])
    squared = (flat * flat).sum(1, keepdim=True) + (codebook * codebook).sum(1) - 2 * flat @ codebook.T
    distance = safe_sqrt(squared)
    return torch.softmax(-distance / temperature, dim=1).reshape(*features.shape[:-1], -1).mean(dim=1)


def pair_loss(p_first: torch.Tensor, p_second: torch.Tensor) -> torch.Tensor:
    """InfoNCE over the batch on S = P1 log P2^T + P2 log P1^T, row direction (as the reference)."""
    similarity = p_first @ (p_second + LOG_FLOOR).log().T + p_second @ (p_first + LOG_FLOOR).log().T
    return -(similarity.diagonal() - torch.logsumexp(similarity, dim=1)).mean()


def cmcm_loss(features: dict[str, torch.Tensor], codebook: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """0.5 * the sum of pair losses over the modality pairs present; the codebook is a constant.

    The reference's temperature is 1; a lower one sharpens the code distributions towards the nearest code."""
    codebook = codebook.detach()
    dists = {m: code_distribution(z, codebook, temperature) for m, z in features.items()}
    losses = [pair_loss(dists[a], dists[b]) for a, b in PAIRS if a in dists and b in dists]
    return 0.5 * sum(losses) if losses else torch.zeros((), device=codebook.device)
