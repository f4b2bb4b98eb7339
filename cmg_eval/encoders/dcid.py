"""DCID (and CMCM, the same architecture trained with another loss) as a unified encoder.

Only the inference path is built: the modal-specific encoders (72 M parameters of
`Video_encoder`) are checked by name and shape but never materialised, and the quantizer's
training forward (EMA, dead-code reset) does not exist here.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from cmg_eval.encoders._dcid_family import checked_states, load_subset, random_checkpoint
from cmg_eval.encoders.base import UnifiedEncoder
from cmg_eval.errors import UnsupportedModality
from cmg_eval.models.checkpoint import ENCODER_KEY, TEXT_KEY
from cmg_eval.models.dcid import (AVTVQVAEEncoder, DcidConfig, InternalTemporalRelationModule,
                                  VideoSemanticEncoder, general_features, nearest_codes,
                                  text_features, text_lstm)
from cmg_eval.registry import register_encoder

INFERENCE_PREFIXES = ("video_semantic_encoder.", "video_self_att.", "audio_self_att.", "text_self_att.")


class DcidNetwork(nn.Module):
    """The modules on the inference path, under their public names."""

    def __init__(self, cfg: DcidConfig, with_text: bool):
        super().__init__()
        self.video_semantic_encoder = VideoSemanticEncoder(cfg.video_dim, cfg.se_hidden, cfg.hidden)
        self.video_self_att = InternalTemporalRelationModule(cfg.video_dim, cfg)
        self.text_self_att = InternalTemporalRelationModule(cfg.text_dim, cfg)
        self.audio_self_att = InternalTemporalRelationModule(cfg.audio_dim, cfg)
        self.text_lstm = text_lstm(cfg) if with_text else None


@register_encoder("dcid")
class DcidEncoder(UnifiedEncoder):
    """`AVT_VQVAE_Encoder.{Video,Audio,Text}_VQ_Encoder`: codeword per time step."""

    name = "dcid"
    readouts = ("vq", "pre_vq")
    default_readout = "vq"
    code_readout = "vq"

    def __init__(self, network: DcidNetwork, codebook64: torch.Tensor, cfg: DcidConfig):
        self.network = network.eval()
        self.cfg = cfg
        self._codebook64 = codebook64
        self._codebook32 = codebook64.float()
        self.modalities = ("video", "audio", "text") if network.text_lstm is not None else ("video", "audio")

    # ---------------------------------------------------------------- checkpoints
    @classmethod
    def layout_matches(cls, ckpt: Mapping[str, Any]) -> bool:
        state = ckpt.get(ENCODER_KEY)
        return isinstance(state, Mapping) and "Cross_quantizer.embedding" in state \
            and getattr(state["Cross_quantizer.embedding"], "dim", lambda: 0)() == 2 \
            and "video_self_att.affine_matrix.weight" in state and "video_self_att_2.affine_matrix.weight" not in state

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any], source: str = "checkpoint") -> "DcidEncoder":
        cfg, state, text_state = checked_states(ckpt, source, AVTVQVAEEncoder)
        network = load_subset(DcidNetwork(cfg, with_text=text_state is not None), state, INFERENCE_PREFIXES,
                              text_state)
        return cls(network, state["Cross_quantizer.embedding"].double().clone(), cfg)

    @classmethod
    def init_checkpoint(cls, seed: int, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A random-init checkpoint in the public layout (float64), the floor of every comparison."""
        cfg = DcidConfig.from_dict(config)
        return random_checkpoint(cls.name, seed, cfg.to_dict(), lambda: AVTVQVAEEncoder(cfg), cfg)

    # ---------------------------------------------------------------- contract
    def output_dim(self, readout: str | None = None) -> int:
        self.resolve_readout(readout)
        return self.cfg.hidden

    @torch.no_grad()
    def pre_quantization(self, modality: str, feats: Any) -> torch.Tensor:
        """The modal-general features entering the quantizer, (B, T, hidden) float32."""
        feats = self.check_input(modality, feats).float()
        if modality == "text":
            if self.network.text_lstm is None:
                raise UnsupportedModality(f"encoder {self.name!r}: checkpoint has no {TEXT_KEY}, text is unsupported")
            feats = text_features(self.network.text_lstm, feats)
        return general_features(self.network, modality, feats)

    def encode_indices(self, modality: str, feats: Any) -> torch.Tensor:
        return nearest_codes(self.pre_quantization(modality, feats), self._codebook64).unsqueeze(-1)

    def encode(self, modality: str, feats: Any, readout: str | None = None) -> torch.Tensor:
        readout = self.resolve_readout(readout)
        features = self.pre_quantization(modality, feats)
        if readout == "pre_vq":
            return features.contiguous()
        return self._codebook32[nearest_codes(features, self._codebook64)]

    def codebook(self) -> torch.Tensor:
        return self._codebook32

    def lookup_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return self._codebook32[indices[..., 0]]


@register_encoder("cmcm")
class CmcmEncoder(DcidEncoder):
    """CMCM is a pretraining loss on the DCID backbone: same layout, its own name in reports."""

    name = "cmcm"

    @classmethod
    def layout_matches(cls, ckpt: Mapping[str, Any]) -> bool:
        return False  # indistinguishable from DCID by keys: only `method` or --encoder selects it
