"""DCID (and CMCM, the same architecture trained with another loss) as a unified encoder.

Only the inference path is built: the modal-specific encoders (72 M parameters of
`Video_encoder`) are checked by name and shape but never materialised, and the quantizer's
training forward (EMA, dead-code reset) does not exist here.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from cmg_eval.constants import MAX_TEXT_TOKENS
from cmg_eval.encoders.base import UnifiedEncoder
from cmg_eval.errors import CmgError, UnsupportedModality
from cmg_eval.models.dcid import (AVTVQVAEEncoder, DcidConfig, InternalTemporalRelationModule,
                                  VideoSemanticEncoder, expected_shapes, text_lstm)
from cmg_eval.registry import register_encoder

ENCODER_KEY = "Encoder_parameters"
TEXT_KEY = "Text_ar_lstm_parameters"
INFERENCE_PREFIXES = ("video_semantic_encoder.", "video_self_att.", "audio_self_att.", "text_self_att.")


def check_state_dict(state: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]], where: str) -> None:
    """One-line error naming missing, extra and mis-shaped keys."""
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    misshaped = [f"{k} {tuple(state[k].shape)} != {expected[k]}" for k in expected
                 if k in state and tuple(getattr(state[k], "shape", ())) != expected[k]]
    problems = []
    for label, items in (("missing", missing), ("unexpected", extra), ("wrong shape", misshaped)):
        if items:
            shown = ", ".join(items[:4]) + (f" (+{len(items) - 4} more)" if len(items) > 4 else "")
            problems.append(f"{label} keys: {shown}")
    if problems:
        raise CmgError(f"{where}: {'; '.join(problems)}")


def nearest_codes(features: torch.Tensor, codebook64: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codeword per row, distances in float64, ties to the lowest index."""
    flat = features.reshape(-1, features.shape[-1]).double()
    distances = (codebook64 * codebook64).sum(1) + (flat * flat).sum(1, keepdim=True) - 2.0 * flat @ codebook64.T
    return torch.argmin(distances, dim=1).reshape(features.shape[:-1])


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
        state = ckpt.get(ENCODER_KEY)
        if not isinstance(state, Mapping):
            raise CmgError(f"{source}: no {ENCODER_KEY!r} dict (found keys: {', '.join(map(str, ckpt))})")
        cfg = DcidConfig.from_dict(ckpt.get("config"))
        check_state_dict(state, expected_shapes(lambda: AVTVQVAEEncoder(cfg)), f"{source} {ENCODER_KEY}")
        text_state = ckpt.get(TEXT_KEY)
        if text_state is not None:
            check_state_dict(text_state, expected_shapes(lambda: text_lstm(cfg)), f"{source} {TEXT_KEY}")
        network = DcidNetwork(cfg, with_text=text_state is not None)
        used = {k: v for k, v in state.items() if k.startswith(INFERENCE_PREFIXES)}
        used.update({f"text_lstm.{k}": v for k, v in (text_state or {}).items()})
        network.load_state_dict({k: v.float() for k, v in used.items()}, strict=True)
        return cls(network, state["Cross_quantizer.embedding"].double().clone(), cfg)

    @classmethod
    def init_checkpoint(cls, seed: int, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A random-init checkpoint in the public layout (float64), the floor of every comparison."""
        cfg = DcidConfig.from_dict(config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = AVTVQVAEEncoder(cfg).double()
            lstm = text_lstm(cfg).double()
        return {ENCODER_KEY: encoder.state_dict(), TEXT_KEY: lstm.state_dict(), "epoch": -1,
                "method": cls.name, "config": cfg.to_dict(), "seed": seed}

    # ---------------------------------------------------------------- contract
    def output_dim(self, readout: str | None = None) -> int:
        self.resolve_readout(readout)
        return self.cfg.hidden

    @torch.no_grad()
    def pre_quantization(self, modality: str, feats: Any) -> torch.Tensor:
        """The modal-general features entering the quantizer, (B, T, hidden) float32."""
        feats = self.check_input(modality, feats).float()
        net = self.network
        if modality == "video":
            return net.video_self_att(net.video_semantic_encoder(feats))
        if modality == "audio":
            return net.audio_self_att(feats)
        if net.text_lstm is None:
            raise UnsupportedModality(f"encoder {self.name!r}: checkpoint has no {TEXT_KEY}, text is unsupported")
        if feats.shape[1] < MAX_TEXT_TOKENS:  # the reference zero-pads every caption to 10 tokens
            feats = torch.nn.functional.pad(feats, (0, 0, 0, MAX_TEXT_TOKENS - feats.shape[1]))
        return net.text_self_att(net.text_lstm(feats)[0])

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
