"""A pretraining method: its modules (by checkpoint key), its per-step losses and its extra state.

DCID is the base: one layer of `run_layer` over the public DCID modules. CMCM, FSQ, RVQ and SRCID
change the loss weights, the quantizer or add a second layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from cmg_eval.models.checkpoint import ENCODER_KEY, TEXT_KEY
from cmg_eval.models.dcid import AVTVQVAEEncoder, DcidConfig, text_features, text_lstm
from cmg_eval.models.decoder import AVTVQVAEDecoder
from cmg_eval.train.club import Club, CLUBSampleGroup
from cmg_eval.train.cpc import CrossCPC
from cmg_eval.train.layer import Layer, LayerResult, run_layer
from cmg_eval.train.presets import loss_weights
from cmg_eval.train.quantizer import EmaCodebook, Quantized, ResetRule, vq_quantize

MODALITIES = ("video", "audio", "text")


@dataclass
class StepResult:
    losses: dict[str, torch.Tensor]                  # weighted terms; the total is their sum
    updates: list[Callable[[], None]]                # run after the optimizer step (codebook EMA, reset)
    logs: dict[str, float] = field(default_factory=dict)


def mi_net_key(modality: str, layer: int = 1) -> str:
    return f"{modality.capitalize()}_mi_net{'' if layer == 1 else f'_{layer}'}_parameters"


class DcidMethod:
    """DCID: recon + commitment + CPC + CMCM + CLUB MI, all of weight 1 (reference pretrain.py)."""

    name: ClassVar[str] = "dcid"
    defaults: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, cfg: DcidConfig, settings: dict[str, Any]):
        self.cfg, self.settings = cfg, settings
        self.weights = loss_weights(settings)
        self.reset = ResetRule(int(settings["reset_after"]), int(settings["reset_active_within"]))
        self.encoder = self.make_encoder()
        self.text_lstm = text_lstm(cfg)
        self.decoder = AVTVQVAEDecoder(cfg)
        self.cpc = CrossCPC(MODALITIES, cfg.hidden, cfg.hidden, int(settings["cpc_layers"]))
        y_dims = {"video": cfg.video_dim, "audio": cfg.audio_output_dim, "text": cfg.text_output_dim}
        self.clubs = {m: self.make_club(y_dims[m]) for m in MODALITIES}
        self.layer1 = Layer(self.encoder.general, self.encoder.specific, self.decoder.decode, self.quantize,
                            self.code_space, self.cpc, self.clubs)

    # ---------------------------------------------------------------- what subclasses change
    def make_encoder(self) -> nn.Module:
        return AVTVQVAEEncoder(self.cfg)

    def codebooks(self) -> list[EmaCodebook]:
        return EmaCodebook.views(self.encoder.Cross_quantizer, decay=float(self.settings["decay"]),
                                 eps=float(self.settings["eps"]))

    def quantize(self, features: dict[str, torch.Tensor]) -> Quantized:
        return vq_quantize(self.codebooks()[0], features, float(self.settings["beta"]), self.reset,
                           cross=float(self.settings["commit_cross"]))

    def codebook(self) -> torch.Tensor:
        return self.encoder.Cross_quantizer.embedding

    def code_space(self, features: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """VQ compares the modal-general features themselves with its codewords."""
        return features, self.codebook()

    def config(self) -> dict[str, Any]:
        """The checkpoint's `config`: widths, plus what the adapter needs to rebuild the layout."""
        return self.cfg.to_dict()

    # ---------------------------------------------------------------- shared
    def make_club(self, y_dim: int) -> Club:
        return Club(CLUBSampleGroup(self.cfg.hidden, y_dim, self.cfg.hidden), float(self.settings["mi_lr"]))

    def parts(self) -> dict[str, nn.Module]:
        """Modules trained by the main optimizer, under their checkpoint keys."""
        return {ENCODER_KEY: self.encoder, TEXT_KEY: self.text_lstm,
                "CPC_parameters": self.cpc, "Decoder_parameters": self.decoder}

    def mi_nets(self) -> dict[str, Club]:
        return {mi_net_key(m): club for m, club in self.clubs.items()}

    def layer1_step(self, batch: dict[str, torch.Tensor]) -> LayerResult:
        text = text_features(self.text_lstm, batch["text"])
        inputs = {"video": batch["video"], "audio": batch["audio"], "text": text}
        return run_layer(self.layer1, inputs, inputs, self.weights, **self.layer_options())

    def layer_options(self) -> dict[str, Any]:
        return {"mi_iters": int(self.settings["mi_iters"]), "clamp_mi": bool(self.settings["mi_clamp"]),
                "recon_steps": int(self.settings["recon_steps"]),
                "cmcm_temperature": float(self.settings["cmcm_temperature"])}

    def step(self, batch: dict[str, torch.Tensor], step: int) -> StepResult:
        result = self.layer1_step(batch)
        return StepResult(result.losses, result.quantized.updates, {"mi1": result.mi})

    def state(self) -> dict[str, Any]:
        """Extra checkpoint fields (SRCID's switch-on record)."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        pass

    def train(self, mode: bool = True) -> None:
        for module in self.parts().values():
            module.train(mode)
