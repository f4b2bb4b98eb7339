"""Pretraining settings: the `paper` preset (reference hyper-parameters) and the small `tiny` one.

Settings are one flat dict (widths and training settings), overridden by `--set KEY=VALUE` with
the same rules as task settings; a method adds its own keys and per-preset values.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from cmg_eval.errors import CmgError
from cmg_eval.models.dcid import DcidConfig
from cmg_eval.settings import resolve
from cmg_eval.train.layer import TERMS

PRESETS = ("tiny", "paper")
# DcidConfig fields a preset may change; the input widths are fixed by the features.
WIDTH_KEYS = ("hidden", "n_heads", "ff_dim", "n_layers", "se_hidden", "video_output_dim", "audio_output_dim",
              "text_output_dim", "text_lstm_hidden", "text_lstm_layers", "n_embeddings", "dropout")

# The reference pretraining: its launcher (Adam 4e-4, batch 80, 6 epochs, clip 0.5), its default config
# (MI lr 1e-3, 5 MI steps per batch), seed 43 and the quantizer's constants (beta 0.25, decay 0.99, eps 1e-5).
PAPER = {
    "seed": 43, "batch_size": 80, "lr": 4e-4, "clip_grad": 0.5, "epochs": 6, "steps": 0,
    "mi_lr": 1e-3, "mi_iters": 5, "beta": 0.25, "commit_cross": 1.0, "cmcm_temperature": 1.0, "decay": 0.99, "eps": 1e-5,
    "reset_after": 300, "reset_active_within": 100, "cpc_layers": 2,
    "recon_weight": 1.0, "commit_weight": 1.0, "cpc_weight": 1.0, "cmcm_weight": 1.0, "mi_weight": 1.0,
    "mi_clamp": False, "recon_steps": 0, "save_every": 500, "log_every": 10,
}
# Small widths and a fixed step count: each method trains in 2-3.5 minutes on 2 CPU cores.
# CMCM weighs 100: at weight 1 (and 5, 20) its gradient is too small against the commitment term,
# which collapses the general features within 100 steps; 50, 100 and 200 all learn (README).
TINY = {
    **PAPER, "cmcm_weight": 100.0,
    "hidden": 64, "ff_dim": 128, "se_hidden": 16, "video_output_dim": 64, "audio_output_dim": 64,
    "text_output_dim": 64, "text_lstm_hidden": 32,
    "batch_size": 32, "lr": 1e-3, "epochs": 0, "steps": 800, "mi_iters": 2, "mi_weight": 0.01,
    "reset_after": 20, "reset_active_within": 5, "mi_clamp": True, "recon_steps": 2,
    "save_every": 200,
}


def preset_settings(preset: str, method_defaults: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Widths and training settings of a preset, with a method's keys (`all` and per preset) on top."""
    if preset not in PRESETS:
        raise CmgError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    widths = {k: v for k, v in DcidConfig().to_dict().items() if k in WIDTH_KEYS}
    base = TINY if preset == "tiny" else PAPER
    return {**widths, **base, **method_defaults.get("all", {}), **method_defaults.get(preset, {})}


def resolve_settings(preset: str, method_defaults: Mapping[str, Mapping[str, Any]],
                     assignments: Iterable[str]) -> dict[str, Any]:
    """Preset values with `--set KEY=VALUE` applied (an unknown key or a wrongly typed value is an error)."""
    return resolve({"pretrain": preset_settings(preset, method_defaults)}, assignments)["pretrain"]


def widths(settings: Mapping[str, Any]) -> DcidConfig:
    return DcidConfig.from_dict({k: settings[k] for k in WIDTH_KEYS})


def loss_weights(settings: Mapping[str, Any]) -> dict[str, float]:
    return {term: float(settings[f"{term}_weight"]) for term in TERMS}
