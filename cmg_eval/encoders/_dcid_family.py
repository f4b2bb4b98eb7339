"""Checkpoint reading shared by the adapters of DCID-backbone families (DCID, CMCM, MICU, RVQ, FSQ, SRCID).

Not an adapter itself (the leading underscore keeps the registry from importing it as one).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch import nn

from cmg_eval.models.checkpoint import ENCODER_KEY, TEXT_KEY, check_state_dict
from cmg_eval.errors import CmgError
from cmg_eval.models.dcid import DcidConfig, expected_shapes, text_lstm


def encoder_state(ckpt: Mapping[str, Any], source: str) -> Mapping[str, torch.Tensor]:
    state = ckpt.get(ENCODER_KEY)
    if not isinstance(state, Mapping):
        raise CmgError(f"{source}: no {ENCODER_KEY!r} dict (found keys: {', '.join(map(str, ckpt))})")
    return state


def checked_states(ckpt: Mapping[str, Any], source: str, full_module: Callable[[DcidConfig], nn.Module]
                   ) -> tuple[DcidConfig, Mapping[str, torch.Tensor], Mapping[str, torch.Tensor] | None]:
    """(widths, encoder state, text LSTM state or None), both checked key by key and shape by shape."""
    state = encoder_state(ckpt, source)
    cfg = DcidConfig.from_dict(ckpt.get("config"))
    check_state_dict(state, expected_shapes(lambda: full_module(cfg)), f"{source} {ENCODER_KEY}")
    text_state = ckpt.get(TEXT_KEY)
    if text_state is not None:
        check_state_dict(text_state, expected_shapes(lambda: text_lstm(cfg)), f"{source} {TEXT_KEY}")
    return cfg, state, text_state


def load_subset(network: nn.Module, state: Mapping[str, torch.Tensor], prefixes: tuple[str, ...],
                text_state: Mapping[str, torch.Tensor] | None) -> nn.Module:
    """Load the keys under `prefixes` (and the text LSTM as `text_lstm.*`) strictly, in float32."""
    used = {k: v for k, v in state.items() if k.startswith(prefixes)}
    used.update({f"text_lstm.{k}": v for k, v in (text_state or {}).items()})
    network.load_state_dict({k: v.float() for k, v in used.items()}, strict=True)
    return network.eval()


def random_checkpoint(method: str, seed: int, config: Mapping[str, Any], module: nn.Module | Callable[[], nn.Module],
                      cfg: DcidConfig) -> dict[str, Any]:
    """A random-init checkpoint (float64, public layout) of `module()` built under `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = module().double()
        lstm = text_lstm(cfg).double()
    return {ENCODER_KEY: encoder.state_dict(), TEXT_KEY: lstm.state_dict(), "epoch": -1, "method": method,
            "config": dict(config), "seed": seed}
