"""FCID (one transformer layer per modality, codebook `Cross_quantizer_coarse`) as a unified encoder.

Per time step: temporal features -> `va2vat` -> `va_gen_encoder` (Linear + ReLU) -> nearest code.
Readouts: `vq` (the code vector, default), `toc:N` and `toc-sim:N` (training-free channel selection:
the N codebook dimensions with the largest criterion, in descending order), `pre_vq`.
Text is refused: the public FCID class has no working text path, and cmg-eval does not invent one.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from cmg_eval.encoders._dcid_family import encoder_state, load_subset
from cmg_eval.encoders.base import UnifiedEncoder
from cmg_eval.encoders.dcid import ENCODER_KEY, check_state_dict, nearest_codes
from cmg_eval.errors import CmgError, UnsupportedModality
from cmg_eval.models.dcid import DcidConfig, expected_shapes
from cmg_eval.models.fcid import CODEBOOK_KEY, FcidAudioVisualPath, FcidEncoderModule, fcid_config
from cmg_eval.registry import register_encoder

# Criterion weights (similarity, variance) of each channel-selection readout.
TOC_WEIGHTS = {"toc": (-0.7, 0.3), "toc-sim": (-0.7, 0.0)}
TOC_READOUT = re.compile(r"(toc|toc-sim):0*([1-9][0-9]*)")
PATH_PREFIXES = ("v_gen_encoder.", "v_self_att.", "a_self_att.", "va2vat.", "va_gen_encoder.")


def toc_criterion(codebook: torch.Tensor, sim_weight: float, var_weight: float) -> torch.Tensor:
    """Per dimension d: sim_weight * sim_d + var_weight * var_d, where sim_d is the mean of E[i,d]E[j,d] over
    ordered pairs i != j and var_d the unbiased variance of E[:,d] (float64)."""
    table = codebook.double()
    n = table.shape[0]
    column_sum = table.sum(0)
    pair_mean = (column_sum * column_sum - (table * table).sum(0)) / (n * (n - 1))
    return sim_weight * pair_mean + var_weight * table.var(0, unbiased=True)


def toc_order(codebook: torch.Tensor, sim_weight: float, var_weight: float) -> torch.Tensor:
    """Every dimension by descending criterion (ties: lower dimension first); `toc:N` keeps the first N."""
    return torch.sort(toc_criterion(codebook, sim_weight, var_weight), descending=True, stable=True).indices


@register_encoder("fcid")
class FcidEncoder(UnifiedEncoder):
    """Nearest code of FCID's per-step general features (video, audio)."""

    name = "fcid"
    modalities = ("video", "audio")
    readouts = ("vq", "toc:N", "toc-sim:N", "pre_vq")   # N: 1 .. codebook width
    default_readout = "vq"
    code_readout = "vq"

    def __init__(self, network: FcidAudioVisualPath, codebook64: torch.Tensor, cfg: DcidConfig):
        self.network = network.eval()
        self.cfg = cfg
        self._codebook64 = codebook64
        self._codebook32 = codebook64.float()
        self._toc_orders = {kind: toc_order(codebook64, *weights) for kind, weights in TOC_WEIGHTS.items()}
        half = max(1, cfg.hidden // 2)   # concrete selections check-model exercises
        self.readouts = ("vq", f"toc:{half}", f"toc-sim:{half}", "pre_vq")

    # ---------------------------------------------------------------- checkpoints
    @classmethod
    def layout_matches(cls, ckpt: Mapping[str, Any]) -> bool:
        state = ckpt.get(ENCODER_KEY)
        return isinstance(state, Mapping) and CODEBOOK_KEY in state

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any], source: str = "checkpoint") -> "FcidEncoder":
        state = encoder_state(ckpt, source)
        cfg = fcid_config(ckpt.get("config"))
        check_state_dict(state, expected_shapes(lambda: FcidEncoderModule(cfg)), f"{source} {ENCODER_KEY}")
        network = load_subset(FcidAudioVisualPath(cfg), state, PATH_PREFIXES, None)
        return cls(network, state[CODEBOOK_KEY].double().clone(), cfg)

    @classmethod
    def init_checkpoint(cls, seed: int, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A random-init checkpoint in the public layout (float64; FCID checkpoints hold no text LSTM)."""
        cfg = fcid_config(config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = FcidEncoderModule(cfg).double()
        return {ENCODER_KEY: encoder.state_dict(), "epoch": -1, "method": cls.name, "config": cfg.to_dict(),
                "seed": seed}

    # ---------------------------------------------------------------- readouts
    def resolve_readout(self, readout: str | None) -> str:
        """`vq`, `pre_vq`, or `toc:N` / `toc-sim:N` written canonically (no leading zeros)."""
        readout = readout or self.default_readout
        if readout in ("vq", "pre_vq"):
            return readout
        match = TOC_READOUT.fullmatch(readout)
        if match is None or int(match[2]) > self.cfg.hidden:
            raise CmgError(f"encoder {self.name!r} has no readout {readout!r} (known: vq, pre_vq, toc:N, toc-sim:N "
                           f"with 1 <= N <= {self.cfg.hidden})")
        return f"{match[1]}:{int(match[2])}"

    def channels(self, readout: str) -> torch.Tensor:
        """The codebook dimensions a `toc:N` / `toc-sim:N` readout keeps, in its order."""
        kind, _, count = self.resolve_readout(readout).partition(":")
        if kind not in self._toc_orders:
            raise CmgError(f"encoder {self.name!r}: readout {readout!r} selects no channels")
        return self._toc_orders[kind][:int(count)]

    def output_dim(self, readout: str | None = None) -> int:
        readout = self.resolve_readout(readout)
        return self.cfg.hidden if readout in ("vq", "pre_vq") else int(readout.partition(":")[2])

    # ---------------------------------------------------------------- contract
    @torch.no_grad()
    def pre_quantization(self, modality: str, feats: Any) -> torch.Tensor:
        """The per-step general features entering the lookup, (B, T, hidden) float32."""
        if modality == "text":
            raise UnsupportedModality(f"encoder {self.name!r} does not encode text: the public FCID class has no "
                                      f"working text path (supports: video, audio)")
        return self.network(modality, self.check_input(modality, feats).float())

    def encode_indices(self, modality: str, feats: Any) -> torch.Tensor:
        return nearest_codes(self.pre_quantization(modality, feats), self._codebook64).unsqueeze(-1)

    def encode(self, modality: str, feats: Any, readout: str | None = None) -> torch.Tensor:
        readout = self.resolve_readout(readout)
        if readout == "pre_vq":
            return self.pre_quantization(modality, feats).contiguous()
        codes = self.lookup_codes(self.encode_indices(modality, feats))
        return codes if readout == "vq" else codes[..., self.channels(readout)].contiguous()

    def codebook(self) -> torch.Tensor:
        return self._codebook32

    def lookup_codes(self, indices: torch.Tensor) -> torch.Tensor:
        return self._codebook32[indices[..., 0]]
