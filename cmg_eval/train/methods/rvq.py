"""DCID-RVQ-k: DCID with k residual codebooks (MM-EMA and reset per level).

The losses and weights are DCID's, CMCM included (its soft assignment is over the first level's
codebook, the coarse codes). The reference's RVQ class zeroes CMCM; `--set cmcm_weight=0` gives that.
"""

from __future__ import annotations

import torch
from torch import nn

from cmg_eval.models.rvq import LEVELS
from cmg_eval.models.rvq import AVTRQVAEEncoder
from cmg_eval.registry import register_method
from cmg_eval.train.method import DcidMethod
from cmg_eval.train.quantizer import EmaCodebook, Quantized, rvq_quantize


class RvqMethod(DcidMethod):
    levels = 4

    def make_encoder(self) -> nn.Module:
        return AVTRQVAEEncoder(self.cfg, self.levels)

    def codebooks(self) -> list[EmaCodebook]:
        return EmaCodebook.views(self.encoder.Cross_quantizer, decay=float(self.settings["decay"]),
                                 eps=float(self.settings["eps"]), zero_row=True)

    def quantize(self, features: dict[str, torch.Tensor]) -> Quantized:
        return rvq_quantize(self.codebooks(), features, float(self.settings["beta"]), self.reset,
                           cross=float(self.settings["commit_cross"]))

    def codebook(self) -> torch.Tensor:
        return self.encoder.Cross_quantizer.embedding[0]  # CMCM's soft assignment: the first level


for _levels in LEVELS:
    register_method(f"dcid-rvq{_levels}")(type(f"Rvq{_levels}Method", (RvqMethod,), {
        "name": f"dcid-rvq{_levels}", "levels": _levels,
        "__doc__": f"DCID with {_levels} residual VQ levels."}))
