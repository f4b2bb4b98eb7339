"""The DCID encoder (`AVT_VQVAE_Encoder`) with the public parameter names and shapes.

Attribute names are what public checkpoints store (docs/checkpoints.md, DCID layout), so
`load_state_dict(strict=True)` works on `Encoder_parameters`.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import torch
from torch import nn

from cmg_eval.constants import MAX_TEXT_TOKENS, TOKEN_DIM


@dataclass(frozen=True)
class DcidConfig:
    """Widths; the defaults are the ones every public checkpoint was built with."""

    audio_dim: int = 128
    video_dim: int = 512
    text_token_dim: int = TOKEN_DIM
    text_lstm_hidden: int = 128
    text_lstm_layers: int = 2
    hidden: int = 256
    n_heads: int = 4
    ff_dim: int = 1024
    n_layers: int = 2
    se_hidden: int = 64
    video_output_dim: int = 2048
    audio_output_dim: int = 256
    text_output_dim: int = 256
    n_embeddings: int = 400
    dropout: float = 0.1

    @property
    def text_dim(self) -> int:
        return 2 * self.text_lstm_hidden

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> "DcidConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EncoderLayer(nn.Module):
    """Post-norm transformer layer: attention, add & norm, feed-forward, add & norm."""

    def __init__(self, d_model: int, n_heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout)
        self.linear1 = nn.Linear(d_model, ff_dim)
        self.linear2 = nn.Linear(ff_dim, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attended = self.self_attn(x, x, x, need_weights=False)[0]
        x = self.norm1(x + self.dropout1(attended))
        fed = self.linear2(self.dropout(torch.relu(self.linear1(x))))
        return self.norm2(x + self.dropout2(fed))


class LayerStack(nn.Module):
    def __init__(self, layer: EncoderLayer, n_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(n_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class InternalTemporalRelationModule(nn.Module):
    """Linear in->hidden, then a layer stack over time; no positional encoding anywhere."""

    def __init__(self, input_dim: int, cfg: DcidConfig):
        super().__init__()
        # The public module registers its layer template too: unused, but its keys are in every checkpoint.
        self.encoder_layer = EncoderLayer(cfg.hidden, cfg.n_heads, cfg.ff_dim, cfg.dropout)
        self.encoder = LayerStack(self.encoder_layer, cfg.n_layers)
        self.affine_matrix = nn.Linear(input_dim, cfg.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, in) -> (B, T, hidden); the stack runs time-major as the reference does."""
        return self.encoder(self.affine_matrix(x).transpose(0, 1)).transpose(0, 1)


class VideoSemanticEncoder(nn.Module):
    """SE channel gate over 7x7 maps, then a sum over the 49 positions.

    The public module's spatial attention takes a softmax over a size-1 axis, so every
    weight is 1 and the output is exactly sum(x * gate + x) = sum(x) * (1 + gate); its three
    linear layers are kept for the checkpoint keys but have no effect.
    """

    def __init__(self, video_dim: int, se_hidden: int, hidden: int):
        super().__init__()
        self.se_layer = nn.Sequential(
            nn.Linear(video_dim, se_hidden, bias=False), nn.ReLU(),
            nn.Linear(se_hidden, video_dim, bias=False), nn.Sigmoid(),
        )
        self.affine_video_ave = nn.Linear(video_dim, hidden)
        self.affine_video_self = nn.Linear(video_dim, hidden)
        self.ave_v_att = nn.Linear(hidden, 1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W, C) -> (B, T, C)."""
        total = video.sum(dim=(2, 3))
        gate = self.se_layer(total / (video.shape[2] * video.shape[3]))
        return total * (1.0 + gate)

    def explicit_forward(self, video: torch.Tensor) -> torch.Tensor:
        """The public module's computation step by step (what the reference pays for): SE gate,
        x*gate + x, spatial scores, softmax over the size-1 axis, weighted sum by bmm."""
        b, t, h, w, c = video.shape
        x = video.reshape(b * t, h * w, c)
        gate = self.se_layer(x.mean(dim=1))
        attended = x * gate[:, None, :] + x
        scores = self.ave_v_att(torch.tanh(self.affine_video_ave(x.mean(1))[:, None, :]
                                           + self.affine_video_self(attended)))
        weights = torch.softmax(scores, dim=-1)
        return torch.bmm(weights.transpose(1, 2), attended).reshape(b, t, c)


class ResidualLayer(nn.Module):
    def __init__(self, channels: int, hidden: int, res_hidden: int):
        super().__init__()
        self.res_block = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, res_hidden, 3, padding=1, bias=False),
            nn.ReLU(), nn.Conv2d(res_hidden, hidden, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_block(x)


class ResidualStack(nn.Module):
    def __init__(self, channels: int, hidden: int, res_hidden: int, n_layers: int = 1):
        super().__init__()
        self.stack = nn.ModuleList(ResidualLayer(channels, hidden, res_hidden) for _ in range(n_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.stack:
            x = layer(x)
        return torch.relu(x)


class VideoEncoder(nn.Module):
    """Video modal-specific encoder: convs to (B,T,3,3,out) and a pooled 'club feature' (B,T,video_dim)."""

    def __init__(self, video_dim: int, out_dim: int):
        super().__init__()
        self.conv_stack = nn.Sequential(
            nn.Conv2d(video_dim, out_dim // 2, 3), nn.ReLU(),
            nn.Conv2d(out_dim // 2, out_dim, 3), nn.ReLU(),
            nn.Conv2d(out_dim, out_dim, 1),
            ResidualStack(out_dim, out_dim, out_dim, 1),
        )
        self.feed_forward = nn.Sequential(nn.Linear(out_dim, out_dim // 2), nn.ReLU(), nn.Linear(out_dim // 2, video_dim))

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, steps, height, width, channels = video.shape
        maps = self.conv_stack(video.reshape(batch * steps, height, width, channels).permute(0, 3, 1, 2))
        result = maps.permute(0, 2, 3, 1).reshape(batch, steps, *maps.shape[2:], maps.shape[1])
        pooled = maps.mean(dim=(2, 3)).reshape(batch, steps, -1)
        return result, self.feed_forward(pooled)


class AudioEncoder(nn.Module):
    def __init__(self, audio_dim: int, out_dim: int):
        super().__init__()
        self.audio_linear = nn.Linear(audio_dim, out_dim)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.audio_linear(audio))


class TextEncoder(nn.Module):
    def __init__(self, text_dim: int, out_dim: int):
        super().__init__()
        self.text_linear = nn.Linear(text_dim, out_dim)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.text_linear(text))


class CrossQuantizer(nn.Module):
    """The shared codebook: buffers only (EMA statistics are updated by pretraining, never here).

    `stack` adds a leading axis (RVQ levels, per-layer MLVQ codebooks): `embedding (stack, n, dim)`.
    """

    def __init__(self, n_embeddings: int, dim: int, stack: int | None = None):
        super().__init__()
        lead = () if stack is None else (stack,)
        embedding = torch.empty(*lead, n_embeddings, dim).uniform_(-1 / n_embeddings, 1 / n_embeddings)
        self.register_buffer("embedding", embedding)
        self.register_buffer("ema_count", torch.zeros(*lead, n_embeddings))
        self.register_buffer("ema_weight", embedding.clone())
        self.register_buffer("unactivated_count", -torch.ones(*lead, n_embeddings))


class AVTVQVAEEncoder(nn.Module):
    """The full public encoder, in public state_dict order (pretraining and `ckpt init` use it)."""

    def __init__(self, cfg: DcidConfig = DcidConfig()):
        super().__init__()
        self.Video_encoder = VideoEncoder(cfg.video_dim, cfg.video_output_dim)
        self.Audio_encoder = AudioEncoder(cfg.audio_dim, cfg.audio_output_dim)
        self.Text_encoder = TextEncoder(cfg.text_dim, cfg.text_output_dim)
        self.Cross_quantizer = CrossQuantizer(cfg.n_embeddings, cfg.hidden)
        self.video_semantic_encoder = VideoSemanticEncoder(cfg.video_dim, cfg.se_hidden, cfg.hidden)
        self.video_self_att = InternalTemporalRelationModule(cfg.video_dim, cfg)
        self.text_self_att = InternalTemporalRelationModule(cfg.text_dim, cfg)
        self.audio_self_att = InternalTemporalRelationModule(cfg.audio_dim, cfg)

    def general(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        return general_features(self, modality, x)

    def specific(self, modality: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Modal-specific features: (decoder input, CLUB target); only video's differ (maps, pooled)."""
        if modality == "video":
            return self.Video_encoder(x)
        out = (self.Audio_encoder if modality == "audio" else self.Text_encoder)(x)
        return out, out


def general_features(modules: nn.Module, modality: str, x: torch.Tensor) -> torch.Tensor:
    """Modal-general features entering the quantizer, (B, T, hidden), of any module holding DCID's
    `video_semantic_encoder` and `{video,audio,text}_self_att`; text `x` is the text LSTM's output."""
    if modality == "video":
        return modules.video_self_att(modules.video_semantic_encoder(x))
    return (modules.audio_self_att if modality == "audio" else modules.text_self_att)(x)


def text_features(lstm: nn.LSTM, tokens: torch.Tensor) -> torch.Tensor:
    """BERT tokens (B, L <= 10, 768) -> the LSTM's (B, 10, 2 x hidden): every caption zero-padded to 10 tokens
    first, as the reference pads them."""
    if tokens.shape[1] < MAX_TEXT_TOKENS:
        tokens = nn.functional.pad(tokens, (0, 0, 0, MAX_TEXT_TOKENS - tokens.shape[1]))
    return lstm(tokens)[0]


def nearest_codes(features: torch.Tensor, codebook64: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codeword per row, distances in float64, ties to the lowest index."""
    flat = features.reshape(-1, features.shape[-1]).double()
    distances = (codebook64 * codebook64).sum(1) + (flat * flat).sum(1, keepdim=True) - 2.0 * flat @ codebook64.T
    return torch.argmin(distances, dim=1).reshape(features.shape[:-1])


def text_lstm(cfg: DcidConfig) -> nn.LSTM:
    """The checkpoint's `Text_ar_lstm`: BERT tokens (B,L,768) -> (B,L,2*hidden)."""
    return nn.LSTM(cfg.text_token_dim, cfg.text_lstm_hidden, num_layers=cfg.text_lstm_layers,
                   batch_first=True, bidirectional=True)


def expected_shapes(module_factory) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a module's state_dict, built on the meta device (no memory is used)."""
    with torch.device("meta"):
        module = module_factory()
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}
