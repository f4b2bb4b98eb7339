"""The synthetic benchmark's oracle: per-modality linear maps back to the planted latent."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from cmg_eval.constants import FEATURE_TAILS
from cmg_eval.encoders.base import UnifiedEncoder
from cmg_eval.errors import CmgError
from cmg_eval.registry import register_encoder


@register_encoder("oracle")
class OracleEncoder(UnifiedEncoder):
    """Video is mean-pooled over its 7x7 grid, then every modality goes through its own linear map."""

    name = "oracle"
    readouts = ("latent",)
    default_readout = "latent"

    def __init__(self, maps: Mapping[str, Mapping[str, torch.Tensor]]):
        self.maps = {m: {"weight": p["weight"].float(), "bias": p["bias"].float()} for m, p in maps.items()}
        self.modalities = tuple(m for m in ("video", "audio", "text") if m in self.maps)
        self.latent_dim = next(iter(self.maps.values()))["weight"].shape[1]

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any], source: str = "checkpoint") -> "OracleEncoder":
        maps = ckpt.get("maps")
        if not isinstance(maps, Mapping) or not maps:
            raise CmgError(f"{source}: oracle checkpoint has no 'maps' dict")
        latent_dim = int(ckpt.get("config", {}).get("latent_dim", 0)) or None
        for modality, params in maps.items():
            if modality not in FEATURE_TAILS:
                raise CmgError(f"{source}: oracle map for unknown modality {modality!r}")
            weight, bias = params.get("weight"), params.get("bias")
            width = FEATURE_TAILS[modality][-1]
            latent_dim = latent_dim or (weight.shape[1] if weight is not None else None)
            if weight is None or tuple(weight.shape) != (width, latent_dim) or bias is None \
                    or tuple(bias.shape) != (latent_dim,):
                raise CmgError(f"{source}: oracle map {modality!r} expected weight ({width}, {latent_dim}) "
                               f"and bias ({latent_dim},)")
        return cls(maps)

    def output_dim(self, readout: str | None = None) -> int:
        self.resolve_readout(readout)
        return self.latent_dim

    @torch.no_grad()
    def encode(self, modality: str, feats: Any, readout: str | None = None) -> torch.Tensor:
        self.resolve_readout(readout)
        feats = self.check_input(modality, feats).float()
        if modality == "video":
            feats = feats.mean(dim=(2, 3))
        params = self.maps[modality]
        return (feats @ params["weight"] + params["bias"]).contiguous()
