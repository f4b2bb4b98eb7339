"""One DCID layer's losses: encode, quantize, reconstruct, and the three information terms.

SRCID runs this twice (layer 2 on layer 1's modal-specific features); every baseline runs it once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from cmg_eval.train.club import Club
from cmg_eval.train.cmcm import cmcm_loss
from cmg_eval.train.cpc import CrossCPC
from cmg_eval.train.quantizer import Quantized

TERMS = ("recon", "commit", "cpc", "cmcm", "mi")


@dataclass
class Layer:
    """How one layer encodes, quantizes and decodes, and its MI estimators."""

    general: Callable[[str, torch.Tensor], torch.Tensor]                          # -> (B, T, hidden)
    specific: Callable[[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]    # -> (decoder input, CLUB target)
    decode: Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor]
    quantize: Callable[[dict[str, torch.Tensor]], Quantized]
    # CMCM's soft assignment: the features as the quantizer compares them with its codes, and those codes
    code_space: Callable[[dict[str, torch.Tensor]], tuple[dict[str, torch.Tensor], torch.Tensor]]
    cpc: CrossCPC
    clubs: dict[str, Club]


@dataclass
class LayerResult:
    losses: dict[str, torch.Tensor]
    quantized: Quantized
    specific: dict[str, tuple[torch.Tensor, torch.Tensor]]
    mi: float                       # the CLUB estimate summed over modalities (nan when not computed)


def reconstruction(layer: Layer, modality: str, specific: torch.Tensor, code: torch.Tensor, target: torch.Tensor,
                   steps: int) -> torch.Tensor:
    """MSE of the decoded modality; with `steps` > 0 on that many random time steps (decoders are per
    step, so this is an unbiased, cheaper estimate of the same loss)."""
    if 0 < steps < target.shape[1]:
        keep = torch.randperm(target.shape[1], device="cpu")[:steps]
        specific, code, target = specific[:, keep], code[:, keep], target[:, keep]
    return F.mse_loss(layer.decode(modality, specific, code), target)


def run_layer(layer: Layer, inputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
              weights: dict[str, float], mi_iters: int, clamp_mi: bool = False, recon_steps: int = 0,
              cmcm_temperature: float = 1.0) -> LayerResult:
    """Loss terms of one layer, each already multiplied by its weight; zero-weight terms are skipped."""
    general = {m: layer.general(m, x) for m, x in inputs.items()}
    specific = {m: layer.specific(m, x) for m, x in inputs.items()}
    quantized = layer.quantize(general)
    losses = {"commit": sum(quantized.commitment.values())}
    if weights["recon"]:
        losses["recon"] = sum(reconstruction(layer, m, specific[m][0], quantized.vq[m], targets[m], recon_steps)
                              for m in inputs)
    mi = float("nan")
    if weights["mi"]:
        estimates = []
        for m in inputs:
            layer.clubs[m].fit(quantized.vq[m], specific[m][1], mi_iters)
            estimates.append(layer.clubs[m].estimate(quantized.vq[m], specific[m][1]))
        losses["mi"] = sum(estimates)
        mi = float(losses["mi"].detach())
        if clamp_mi:  # a negative estimate only means q is off; pushing it lower drives the features apart
            losses["mi"] = losses["mi"].clamp_min(0)
    if weights["cpc"]:
        losses["cpc"] = layer.cpc(general)
    if weights["cmcm"]:
        losses["cmcm"] = cmcm_loss(*layer.code_space(general), cmcm_temperature)
    return LayerResult({k: v * weights[k] for k, v in losses.items()}, quantized, specific, mi)
