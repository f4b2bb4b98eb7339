"""FCID: the one-layer unified encoder whose public class reuses DCID's class name with other modules.

One transformer layer per modality, a codebook under `Cross_quantizer_coarse`, and small projections
(`va2vat`, `va_gen_encoder`) between the temporal encoders and the codebook. Attribute names and
registration order are the public checkpoints' (116 state_dict entries at the default widths).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from cmg_eval.models.dcid import (AudioEncoder, CrossQuantizer, DcidConfig, InternalTemporalRelationModule,
                                  VideoEncoder, VideoSemanticEncoder)
from cmg_eval.models.srcid import SimpleEncoder

CODEBOOK_KEY = "Cross_quantizer_coarse.embedding"


def fcid_config(values: Mapping[str, Any] | None) -> DcidConfig:
    """DCID's widths with one transformer layer per modality, unless the checkpoint says otherwise."""
    return DcidConfig.from_dict({"n_layers": 1, **(values or {})})


class SharedSpaceProjection(nn.Module):
    """`va2vat` / `t2vat`: a Linear into the space shared with text.

    The public module averages over time before its Linear; the per-step path (each step a window of
    one) makes the average a no-op, so `forward` is the Linear applied per step.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class FcidEncoderModule(nn.Module):
    """The full public FCID encoder, in public state_dict order (`ckpt init fcid` and key checks use it)."""

    def __init__(self, cfg: DcidConfig):
        super().__init__()
        self.Cross_quantizer_coarse = CrossQuantizer(cfg.n_embeddings, cfg.hidden)
        self.v_spe_encoder = VideoEncoder(cfg.video_dim, cfg.video_output_dim)
        self.a_spe_encoder = AudioEncoder(cfg.audio_dim, cfg.audio_output_dim)
        self.v_gen_encoder = VideoSemanticEncoder(cfg.video_dim, cfg.se_hidden, cfg.hidden)
        self.v_self_att = InternalTemporalRelationModule(cfg.video_dim, cfg)
        self.a_self_att = InternalTemporalRelationModule(cfg.audio_dim, cfg)
        self.va_gen_encoder = SimpleEncoder(cfg.hidden)
        self.va_spe_encoder = SimpleEncoder(cfg.hidden)
        self.va2vat = SharedSpaceProjection(cfg.hidden)
        self.t_self_att = InternalTemporalRelationModule(cfg.text_token_dim, cfg)
        self.t2vat = SharedSpaceProjection(cfg.hidden)
        self.t_gen_encoder = SimpleEncoder(cfg.hidden)
        self.t_spe_encoder = SimpleEncoder(cfg.hidden)


class FcidAudioVisualPath(nn.Module):
    """The modules between audio / video inputs and the codebook lookup, under their public names."""

    def __init__(self, cfg: DcidConfig):
        super().__init__()
        self.v_gen_encoder = VideoSemanticEncoder(cfg.video_dim, cfg.se_hidden, cfg.hidden)
        self.v_self_att = InternalTemporalRelationModule(cfg.video_dim, cfg)
        self.a_self_att = InternalTemporalRelationModule(cfg.audio_dim, cfg)
        self.va2vat = SharedSpaceProjection(cfg.hidden)
        self.va_gen_encoder = SimpleEncoder(cfg.hidden)

    def forward(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """(B, T, *input) -> per-step general features (B, T, hidden) entering the nearest-code lookup."""
        steps = self.v_self_att(self.v_gen_encoder(x)) if modality == "video" else self.a_self_att(x)
        return self.va_gen_encoder(self.va2vat(steps))
