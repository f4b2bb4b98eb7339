"""DCID with residual VQ (`AVT_RQVAE_Encoder`): L codebooks, greedy residual codes, summed codewords.

`dcid-rvq` infers L from `Cross_quantizer.embedding (L, n, hidden)`; `dcid-rvq2/3/4` (the methods
cmg-eval pretrains) require their L. Readouts: `sum` (all levels, the reference's output),
`level:k` (cumulative sum of the first k levels), `pre_vq`.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from cmg_eval.encoders._dcid_family import checked_states, encoder_state, load_subset, random_checkpoint
from cmg_eval.encoders.dcid import INFERENCE_PREFIXES, DcidEncoder, DcidNetwork
from cmg_eval.errors import CmgError
from cmg_eval.models.dcid import DcidConfig
from cmg_eval.models.checkpoint import ENCODER_KEY
from cmg_eval.models.rvq import LEVELS, AVTRQVAEEncoder, residual_codes
from cmg_eval.models.srcid import LAYER2_KEY
from cmg_eval.registry import register_encoder

@register_encoder("dcid-rvq")
class DcidRvqEncoder(DcidEncoder):
    """Residual-VQ codes of the DCID modal-general features."""

    name = "dcid-rvq"
    readouts = ("sum", "pre_vq")
    default_readout = "sum"
    code_readout = "sum"
    levels: int | None = None

    def __init__(self, network: DcidNetwork, codebooks64: torch.Tensor, cfg: DcidConfig):
        super().__init__(network, codebooks64, cfg)
        self.n_levels = codebooks64.shape[0]
        self.readouts = ("sum", *(f"level:{k}" for k in range(1, self.n_levels + 1)), "pre_vq")

    @classmethod
    def layout_matches(cls, ckpt: Mapping[str, Any]) -> bool:
        state = ckpt.get(ENCODER_KEY)
        return cls.levels is None and isinstance(state, Mapping) and LAYER2_KEY not in state \
            and getattr(state.get("Cross_quantizer.embedding"), "dim", lambda: 0)() == 3

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any], source: str = "checkpoint") -> "DcidRvqEncoder":
        embedding = encoder_state(ckpt, source).get("Cross_quantizer.embedding")
        if embedding is None or embedding.dim() != 3:
            shape = None if embedding is None else tuple(embedding.shape)
            raise CmgError(f"{source}: Cross_quantizer.embedding has shape {shape}, expected (levels, codes, dim)")
        n_levels = embedding.shape[0]
        if cls.levels is not None and n_levels != cls.levels:
            raise CmgError(f"{source}: Cross_quantizer.embedding has {n_levels} levels, expected {cls.levels} "
                           f"for {cls.name}")
        cfg, state, text_state = checked_states(ckpt, source, lambda c: AVTRQVAEEncoder(c, n_levels))
        network = load_subset(DcidNetwork(cfg, with_text=text_state is not None), state, INFERENCE_PREFIXES,
                              text_state)
        return cls(network, state["Cross_quantizer.embedding"].double().clone(), cfg)

    @classmethod
    def init_checkpoint(cls, seed: int, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        cfg = DcidConfig.from_dict(config)
        n_levels = cls.levels or LEVELS[-1]
        return random_checkpoint(cls.name, seed, cfg.to_dict(), lambda: AVTRQVAEEncoder(cfg, n_levels), cfg)

    def encode_indices(self, modality: str, feats: Any) -> torch.Tensor:
        return residual_codes(self.pre_quantization(modality, feats), self._codebook64)[0]

    def lookup_codes(self, indices: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        levels = range(upto or self.n_levels)
        return sum(self._codebook32[k][indices[..., k]] for k in levels)

    def encode(self, modality: str, feats: Any, readout: str | None = None) -> torch.Tensor:
        readout = self.resolve_readout(readout)
        if readout == "pre_vq":
            return self.pre_quantization(modality, feats).contiguous()
        upto = None if readout == "sum" else int(readout.partition(":")[2])
        return self.lookup_codes(self.encode_indices(modality, feats), upto)


for _levels in LEVELS:
    register_encoder(f"dcid-rvq{_levels}")(type(f"DcidRvq{_levels}Encoder", (DcidRvqEncoder,), {
        "name": f"dcid-rvq{_levels}", "levels": _levels,
        "__doc__": f"Residual VQ with {_levels} levels (the `dcid-rvq{_levels}` pretraining method)."}))
