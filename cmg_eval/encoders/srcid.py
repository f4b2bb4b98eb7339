"""SRCID (two-layer MLVQ, docs/checkpoints.md SRCID layout) as a unified encoder.

Layer 1 is DCID; layer 2 encodes layer 1's modal-specific features, so the full modal-specific
encoders (including the large `Video_encoder`) are on the inference path. Each layer has its own
codebook, shared by the modalities: `(2, n, hidden)` (the SRCID paper's K x L x D with K = 2, and the
public MLVQ code); checkpoints of the ablation with one codebook for both layers `(n, hidden)` load too.
Readouts: `concat` (both layers' codes, the default), `layer1` (the paper's "SRCID (only1)"),
`layer2`, `sum`.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from cmg_eval.encoders._dcid_family import checked_states, encoder_state, load_subset, random_checkpoint
from cmg_eval.encoders.base import UnifiedEncoder
from cmg_eval.errors import CmgError, UnsupportedModality
from cmg_eval.models.checkpoint import ENCODER_KEY, TEXT_KEY
from cmg_eval.models.dcid import DcidConfig, nearest_codes, text_features, text_lstm
from cmg_eval.models.srcid import LAYER2_KEY, AVTMLVQVAEEncoder
from cmg_eval.registry import register_encoder


class SrcidNetwork(nn.Module):
    """The whole two-layer encoder (its specific encoders feed layer 2) and the text LSTM."""

    def __init__(self, cfg: DcidConfig, shared_codebook: bool, with_text: bool):
        super().__init__()
        self.encoder = AVTMLVQVAEEncoder(cfg, shared_codebook)
        self.text_lstm = text_lstm(cfg) if with_text else None


@register_encoder("srcid")
class SrcidEncoder(UnifiedEncoder):
    """Nearest codes of both layers' modal-general features."""

    name = "srcid"
    readouts = ("concat", "layer1", "layer2", "sum")
    default_readout = "concat"
    code_readout = "concat"

    def __init__(self, network: SrcidNetwork, cfg: DcidConfig):
        self.network = network.eval()
        self.cfg = cfg
        table = network.encoder.Cross_quantizer.embedding.detach().double().clone()
        self.shared_codebook = table.dim() == 2
        self._codebooks64 = torch.stack([table, table]) if self.shared_codebook else table
        self._codebooks32 = self._codebooks64.float()
        self.modalities = ("video", "audio", "text") if network.text_lstm is not None else ("video", "audio")

    @classmethod
    def layout_matches(cls, ckpt: Mapping[str, Any]) -> bool:
        state = ckpt.get(ENCODER_KEY)
        return isinstance(state, Mapping) and LAYER2_KEY in state

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any], source: str = "checkpoint") -> "SrcidEncoder":
        embedding = encoder_state(ckpt, source).get("Cross_quantizer.embedding")
        if embedding is None or embedding.dim() not in (2, 3) or (embedding.dim() == 3 and embedding.shape[0] != 2):
            shape = None if embedding is None else tuple(embedding.shape)
            raise CmgError(f"{source}: Cross_quantizer.embedding has shape {shape}, expected (codes, dim) shared "
                           f"or (2, codes, dim) per layer")
        shared = embedding.dim() == 2
        cfg, state, text_state = checked_states(ckpt, source, lambda c: AVTMLVQVAEEncoder(c, shared))
        network = SrcidNetwork(cfg, shared, text_state is not None)
        prefixed = {f"encoder.{k}": v for k, v in state.items()}
        return cls(load_subset(network, prefixed, ("encoder.",), text_state), cfg)

    @classmethod
    def init_checkpoint(cls, seed: int, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        cfg = DcidConfig.from_dict(config)
        shared = bool((config or {}).get("shared_codebook", False))
        return random_checkpoint(cls.name, seed, {**cfg.to_dict(), "shared_codebook": shared},
                                 lambda: AVTMLVQVAEEncoder(cfg, shared), cfg)

    def output_dim(self, readout: str | None = None) -> int:
        return self.cfg.hidden * (2 if self.resolve_readout(readout) == "concat" else 1)

    @torch.no_grad()
    def layer_features(self, modality: str, feats: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Both layers' modal-general features, each (B, T, hidden) float32."""
        feats = self.check_input(modality, feats).float()
        encoder = self.network.encoder
        if modality == "text":
            if self.network.text_lstm is None:
                raise UnsupportedModality(f"encoder {self.name!r}: checkpoint has no {TEXT_KEY}, text is unsupported")
            feats = text_features(self.network.text_lstm, feats)
        residual = encoder.specific(modality, feats)[1]
        return encoder.general(modality, feats), encoder.general2(modality, residual)

    def encode_indices(self, modality: str, feats: Any) -> torch.Tensor:
        first, second = self.layer_features(modality, feats)
        return torch.stack([nearest_codes(first, self._codebooks64[0]), nearest_codes(second, self._codebooks64[1])], -1)

    def lookup_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._codebooks32[0][indices[..., 0]], self._codebooks32[1][indices[..., 1]]], dim=-1)

    def encode(self, modality: str, feats: Any, readout: str | None = None) -> torch.Tensor:
        readout = self.resolve_readout(readout)
        both = self.lookup_codes(self.encode_indices(modality, feats))
        first, second = both[..., :self.cfg.hidden], both[..., self.cfg.hidden:]
        return {"concat": both, "layer1": first, "layer2": second, "sum": first + second}[readout].contiguous()

    def codebook(self) -> torch.Tensor:
        """The stored table: (n, hidden) shared, or (2, n, hidden) per layer."""
        return self._codebooks32[0] if self.shared_codebook else self._codebooks32
