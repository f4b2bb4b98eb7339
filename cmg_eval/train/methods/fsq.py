"""DCID-FSQ: DCID's objective with finite scalar quantization instead of the EMA codebook."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cmg_eval.models.fsq import DEFAULT_LEVELS, AVTFSQVAEEncoder
from cmg_eval.registry import register_method
from cmg_eval.train.method import DcidMethod
from cmg_eval.train.quantizer import Quantized, fsq_quantize


@register_method("dcid-fsq")
class FsqMethod(DcidMethod):
    """Commitment acts on the FSQ grid; CMCM's soft assignment is over the grid points (the implicit codebook)
    of the bounded projections, where FSQ rounds."""

    name = "dcid-fsq"
    defaults = {"all": {"fsq_levels": list(DEFAULT_LEVELS)}}

    def make_encoder(self) -> nn.Module:
        return AVTFSQVAEEncoder(self.cfg, tuple(self.settings["fsq_levels"]))

    def quantize(self, features: dict[str, torch.Tensor]) -> Quantized:
        return fsq_quantize(self.encoder.Cross_quantizer, features, float(self.settings["beta"]),
                            float(self.settings["commit_cross"]))

    def codebook(self) -> torch.Tensor:
        return self.encoder.Cross_quantizer.codebook()

    def code_space(self, features: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """FSQ compares its bounded projections with the grid points, in level units (neighbours 1 apart)."""
        fsq = self.encoder.Cross_quantizer
        return {m: fsq.bound(fsq.project_in(z)) for m, z in features.items()}, fsq.grid()

    def config(self) -> dict[str, Any]:
        return {**self.cfg.to_dict(), "fsq_levels": list(self.settings["fsq_levels"])}
