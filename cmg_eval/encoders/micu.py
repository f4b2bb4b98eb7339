"""MICU: DCID's module tree and checkpoint layout, with a lookup in which codebook row 0 is the zero vector.

The public MICU code overwrites row 0 of the stored codebook with zeros before every lookup. Here the
lookup table is a copy with row 0 zeroed, so the loaded weights never change. A MICU checkpoint is keyed
exactly like DCID's: only its `method` field or `--encoder micu` selects this adapter.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from cmg_eval.encoders.dcid import DcidEncoder, DcidNetwork
from cmg_eval.models.dcid import DcidConfig
from cmg_eval.registry import register_encoder


def zero_first_code(codebook64: torch.Tensor) -> torch.Tensor:
    """A copy of the code table whose row 0 is the zero vector."""
    table = codebook64.clone()
    table[0] = 0
    return table


@register_encoder("micu")
class MicuEncoder(DcidEncoder):
    """DCID's path; codes are looked up in the table with row 0 zeroed (`codebook()` is that table)."""

    name = "micu"

    def __init__(self, network: DcidNetwork, codebook64: torch.Tensor, cfg: DcidConfig):
        super().__init__(network, zero_first_code(codebook64), cfg)

    @classmethod
    def layout_matches(cls, ckpt: Mapping[str, Any]) -> bool:
        return False  # DCID's key layout: a file without `method` loads as dcid unless --encoder micu
