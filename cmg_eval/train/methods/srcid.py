"""SRCID: DCID (layer 1) plus the same structure again on layer 1's modal-specific features (layer 2).

Layer 2 extracts the modal-general information left in layer 1's residual. Its losses join after
the warm start (`cmg_eval.train.warmstart`); the checkpoint records the step as `layer2_start_step`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cmg_eval.models.srcid import AVTMLVQVAEEncoder, Layer2Decoder, layer2_widths
from cmg_eval.registry import register_method
from cmg_eval.train.cpc import CrossCPC
from cmg_eval.train.layer import Layer, run_layer
from cmg_eval.train.method import MODALITIES, DcidMethod, StepResult, mi_net_key
from cmg_eval.train.quantizer import Quantized, vq_quantize
from cmg_eval.train.warmstart import Layer2Switch


@register_method("srcid")
class SrcidMethod(DcidMethod):
    """Two DCID layers, each with its own codebook shared by the three modalities (the paper's
    e in R^{K x L x D}, K = 2 layers); `shared_codebook=true` gives both layers one codebook (an ablation)."""

    name = "srcid"
    defaults = {
        "all": {"shared_codebook": False, "layer2_mi_threshold": 0.05, "layer2_patience": 20},
        "tiny": {"layer2_min_step": 100, "layer2_max_step": 200},
        "paper": {"layer2_min_step": 500, "layer2_max_step": 1500, "layer2_patience": 100},
    }

    def __init__(self, cfg, settings: dict[str, Any]):
        super().__init__(cfg, settings)
        self.decoder2 = Layer2Decoder(cfg)
        self.cpc2 = CrossCPC(MODALITIES, cfg.hidden, cfg.hidden, int(settings["cpc_layers"]))
        self.clubs2 = {m: self.make_club(width) for m, width in layer2_widths(cfg).items()}
        self.layer2 = Layer(self.encoder.general2, self.specific2, self.decoder2.decode, self.quantize2,
                            lambda features: (features, self.codebook2()), self.cpc2, self.clubs2)
        self.switch = Layer2Switch(float(settings["layer2_mi_threshold"]), int(settings["layer2_patience"]),
                                   int(settings["layer2_min_step"]), int(settings["layer2_max_step"]))

    def make_encoder(self) -> nn.Module:
        return AVTMLVQVAEEncoder(self.cfg, bool(self.settings["shared_codebook"]))

    def quantize(self, features: dict[str, torch.Tensor]) -> Quantized:
        return vq_quantize(self.codebooks()[0], features, float(self.settings["beta"]), self.reset,
                           cross=float(self.settings["commit_cross"]))

    def quantize2(self, features: dict[str, torch.Tensor]) -> Quantized:
        return vq_quantize(self.codebooks()[-1], features, float(self.settings["beta"]), self.reset,
                           cross=float(self.settings["commit_cross"]))

    def codebook(self) -> torch.Tensor:
        return self.codebooks()[0].embedding

    def codebook2(self) -> torch.Tensor:
        return self.codebooks()[-1].embedding

    def specific2(self, modality: str, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.encoder.specific2(modality, residual)
        return out, out

    def config(self) -> dict[str, Any]:
        return {**self.cfg.to_dict(), "shared_codebook": bool(self.settings["shared_codebook"])}

    def parts(self) -> dict[str, nn.Module]:
        return {**super().parts(), "Decoder_2_parameters": self.decoder2, "CPC_2_parameters": self.cpc2}

    def mi_nets(self) -> dict[str, Any]:
        return {**super().mi_nets(), **{mi_net_key(m, 2): club for m, club in self.clubs2.items()}}

    def step(self, batch: dict[str, torch.Tensor], step: int) -> StepResult:
        first = self.layer1_step(batch)
        result = StepResult(dict(first.losses), list(first.quantized.updates), {"mi1": first.mi})
        if self.switch.on:
            residuals = {m: first.specific[m][1] for m in MODALITIES}
            # Layer 2 rebuilds layer 1's specific features: they are its targets, not something to move.
            second = run_layer(self.layer2, residuals, {m: r.detach() for m, r in residuals.items()}, self.weights,
                               **self.layer_options())
            result.losses.update({f"{k}2": v for k, v in second.losses.items()})
            result.updates += second.quantized.updates
            result.logs["mi2"] = second.mi
        self.switch.observe(step, first.mi)
        return result

    def state(self) -> dict[str, Any]:
        return {"layer2_start_step": self.switch.start_step, "layer2_switch": self.switch.to_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        saved = state.get("layer2_switch") or {}
        for key in ("smoothed", "below", "start_step", "reason"):
            if key in saved:
                setattr(self.switch, key, saved[key])
