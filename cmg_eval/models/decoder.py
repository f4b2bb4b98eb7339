"""The pretraining decoders (`AVT_VQVAE_Decoder`, the public parameter names).

Each decoder rebuilds one modality from its quantized modal-general code plus its modal-specific
features. Parameter names follow the public `Decoder_parameters`.
"""

from __future__ import annotations

import torch
from torch import nn

from cmg_eval.models.dcid import DcidConfig, ResidualStack

N_PRETRAIN_CLASSES = 141  # VGGSound-AVEL40k; the heads are saved but never enter the loss


class VideoDecoder(nn.Module):
    """Code tiled over the 3x3 specific map, then transposed convs back to (B, T, 7, 7, video_dim)."""

    def __init__(self, video_dim: int, specific_dim: int, hidden: int):
        super().__init__()
        self.video_linear = nn.Linear(hidden, hidden)
        self.inverse_conv_block = nn.Sequential(
            nn.ConvTranspose2d(specific_dim + hidden, specific_dim // 2, 3),
            ResidualStack(specific_dim // 2, specific_dim // 2, specific_dim // 2, 1),
            nn.ConvTranspose2d(specific_dim // 2, video_dim, 3), nn.ReLU(),
            nn.ConvTranspose2d(video_dim, video_dim, 1),
        )

    def forward(self, specific: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        batch, steps, height, width, _ = specific.shape
        tiled = self.video_linear(code)[:, :, None, None, :].expand(-1, -1, height, width, -1)
        maps = torch.cat([specific, tiled], dim=-1).reshape(batch * steps, height, width, -1).permute(0, 3, 1, 2)
        out = self.inverse_conv_block(maps).permute(0, 2, 3, 1)
        return out.reshape(batch, steps, *out.shape[1:])


class VectorDecoder(nn.Module):
    """Linear on the code, concatenated with the specific features, linear to the target width."""

    def __init__(self, prefix: str, out_dim: int, specific_dim: int, hidden: int):
        super().__init__()
        self.prefix = prefix
        self.add_module(f"{prefix}_linear", nn.Linear(hidden, hidden))
        self.add_module(f"{prefix}_rec", nn.Linear(specific_dim + hidden, out_dim))

    def forward(self, specific: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        code = getattr(self, f"{self.prefix}_linear")(code)
        return getattr(self, f"{self.prefix}_rec")(torch.cat([specific, code], dim=-1))


class SemanticHead(nn.Module):
    """`Semantic_Decoder`: kept for the public key layout only."""

    def __init__(self, dim: int, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        self.event_classifier = nn.Linear(dim, n_classes)


class AVTVQVAEDecoder(nn.Module):
    """The three reconstruction decoders and three unused heads, in public `Decoder_parameters` order."""

    def __init__(self, cfg: DcidConfig):
        super().__init__()
        self.Video_decoder = VideoDecoder(cfg.video_dim, cfg.video_output_dim, cfg.hidden)
        self.Audio_decoder = VectorDecoder("audio", cfg.audio_dim, cfg.audio_output_dim, cfg.hidden)
        self.Text_decoder = VectorDecoder("text", cfg.text_dim, cfg.text_output_dim, cfg.hidden)
        self.video_semantic_decoder = SemanticHead(cfg.hidden, N_PRETRAIN_CLASSES)
        self.text_semantic_decoder = SemanticHead(cfg.hidden, N_PRETRAIN_CLASSES)
        self.audio_semantic_decoder = SemanticHead(cfg.hidden, N_PRETRAIN_CLASSES)

    def decode(self, modality: str, specific: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        module = {"video": self.Video_decoder, "audio": self.Audio_decoder, "text": self.Text_decoder}[modality]
        return module(specific, code)
