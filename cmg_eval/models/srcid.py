"""The two-layer encoder (`AVT_MLVQVAE_Encoder`, docs/checkpoints.md SRCID layout).

Layer 1 is DCID under DCID's names. Layer 2's encoders read layer 1's modal-specific features
(video: the pooled 'club feature'), so layer 2 sees what layer 1 left in its residual.
"""

from __future__ import annotations

import torch
from torch import nn

from cmg_eval.models.dcid import AVTVQVAEEncoder, CrossQuantizer, DcidConfig, InternalTemporalRelationModule
from cmg_eval.models.decoder import VectorDecoder

LAYER2_KEY = "video_self_att_2.affine_matrix.weight"


class SimpleEncoder(nn.Module):
    """Layer-2 modal-specific encoder: Linear + ReLU."""

    def __init__(self, dim: int):
        super().__init__()
        self.input_linear = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.input_linear(x))


def layer2_widths(cfg: DcidConfig) -> dict[str, int]:
    """Width of each modality's layer-2 input: layer 1's modal-specific feature."""
    return {"video": cfg.video_dim, "audio": cfg.audio_output_dim, "text": cfg.text_output_dim}


class AVTMLVQVAEEncoder(AVTVQVAEEncoder):
    """DCID plus layer-2 encoders; one codebook per layer `(2, n, hidden)` (the paper and the public MLVQ
    code) or, as an ablation, one for both layers `(n, hidden)`."""

    def __init__(self, cfg: DcidConfig = DcidConfig(), shared_codebook: bool = False):
        super().__init__(cfg)
        if not shared_codebook:
            self.Cross_quantizer = CrossQuantizer(cfg.n_embeddings, cfg.hidden, stack=2)
        widths = layer2_widths(cfg)
        self.Video_encoder_2 = SimpleEncoder(widths["video"])
        self.Audio_encoder_2 = SimpleEncoder(widths["audio"])
        self.Text_encoder_2 = SimpleEncoder(widths["text"])
        self.video_self_att_2 = InternalTemporalRelationModule(widths["video"], cfg)
        self.text_self_att_2 = InternalTemporalRelationModule(widths["text"], cfg)
        self.audio_self_att_2 = InternalTemporalRelationModule(widths["audio"], cfg)

    def general2(self, modality: str, residual: torch.Tensor) -> torch.Tensor:
        """Layer-2 modal-general features of layer 1's specific feature `residual`."""
        return getattr(self, f"{modality}_self_att_2")(residual)

    def specific2(self, modality: str, residual: torch.Tensor) -> torch.Tensor:
        return getattr(self, f"{modality.capitalize()}_encoder_2")(residual)


class Layer2Decoder(nn.Module):
    """Rebuilds layer 1's specific features from layer 2's code and specific features."""

    def __init__(self, cfg: DcidConfig):
        super().__init__()
        widths = layer2_widths(cfg)
        self.Video_decoder_2 = VectorDecoder("video", widths["video"], widths["video"], cfg.hidden)
        self.Audio_decoder_2 = VectorDecoder("audio", widths["audio"], widths["audio"], cfg.hidden)
        self.Text_decoder_2 = VectorDecoder("text", widths["text"], widths["text"], cfg.hidden)

    def decode(self, modality: str, specific: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return getattr(self, f"{modality.capitalize()}_decoder_2")(specific, code)
