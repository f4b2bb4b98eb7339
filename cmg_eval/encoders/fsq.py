"""DCID with finite scalar quantization (`dcid-fsq`): a checkpoint format of cmg-eval's own.

`Cross_quantizer.project_{in,out}.*` replace the codebook buffers; the levels travel in
`config["fsq_levels"]` (default [5, 5, 4, 4] = 400 codes). The implicit codebook row i is
`project_out` of grid point i, so `vq` outputs are exact rows of `codebook()`.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from cmg_eval.encoders._dcid_family import checked_states, load_subset, random_checkpoint
from cmg_eval.encoders.dcid import INFERENCE_PREFIXES, DcidEncoder, DcidNetwork
from cmg_eval.errors import CmgError
from cmg_eval.models.checkpoint import ENCODER_KEY
from cmg_eval.models.dcid import DcidConfig
from cmg_eval.models.fsq import DEFAULT_LEVELS, AVTFSQVAEEncoder, FsqQuantizer
from cmg_eval.registry import register_encoder

FSQ_KEY = "Cross_quantizer.project_in.weight"


def fsq_levels(config: Mapping[str, Any] | None, source: str) -> tuple[int, ...]:
    levels = (config or {}).get("fsq_levels", DEFAULT_LEVELS)
    if not isinstance(levels, (list, tuple)) or not levels or not all(isinstance(v, int) and v >= 2 for v in levels):
        raise CmgError(f"{source}: config fsq_levels is {levels!r}, expected a list of integers >= 2")
    return tuple(levels)


class FsqNetwork(DcidNetwork):
    def __init__(self, cfg: DcidConfig, with_text: bool, levels: tuple[int, ...]):
        super().__init__(cfg, with_text)
        self.Cross_quantizer = FsqQuantizer(levels, cfg.hidden)


@register_encoder("dcid-fsq")
class DcidFsqEncoder(DcidEncoder):
    """FSQ codes of the DCID modal-general features."""

    name = "dcid-fsq"

    def __init__(self, network: FsqNetwork, cfg: DcidConfig):
        with torch.no_grad():
            codebook = network.Cross_quantizer.codebook().double()
        super().__init__(network, codebook, cfg)

    @classmethod
    def layout_matches(cls, ckpt: Mapping[str, Any]) -> bool:
        state = ckpt.get(ENCODER_KEY)
        return isinstance(state, Mapping) and FSQ_KEY in state

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any], source: str = "checkpoint") -> "DcidFsqEncoder":
        levels = fsq_levels(ckpt.get("config"), source)
        cfg, state, text_state = checked_states(ckpt, source, lambda c: AVTFSQVAEEncoder(c, levels))
        network = FsqNetwork(cfg, text_state is not None, levels)
        return cls(load_subset(network, state, INFERENCE_PREFIXES + ("Cross_quantizer.",), text_state), cfg)

    @classmethod
    def init_checkpoint(cls, seed: int, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        cfg = DcidConfig.from_dict(config)
        levels = fsq_levels(config, "config")
        return random_checkpoint(cls.name, seed, {**cfg.to_dict(), "fsq_levels": list(levels)},
                                 lambda: AVTFSQVAEEncoder(cfg, levels), cfg)

    @torch.no_grad()
    def encode_indices(self, modality: str, feats: Any) -> torch.Tensor:
        return self.network.Cross_quantizer(self.pre_quantization(modality, feats))[1].unsqueeze(-1)

    def encode(self, modality: str, feats: Any, readout: str | None = None) -> torch.Tensor:
        readout = self.resolve_readout(readout)
        if readout == "pre_vq":
            return self.pre_quantization(modality, feats).contiguous()
        return self.lookup_codes(self.encode_indices(modality, feats))
