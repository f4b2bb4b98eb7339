"""DCID and CMCM: the same backbone and codebook, different objectives."""

from __future__ import annotations

from cmg_eval.registry import register_method
from cmg_eval.train.method import DcidMethod

register_method("dcid")(DcidMethod)


@register_method("cmcm")
class CmcmMethod(DcidMethod):
    """CMCM as the DCID authors re-implemented it as a baseline on their own backbone (no public CMCM code
    exists): DCID's objective with the mutual-information and CPC terms off, so recon + commitment + CMCM."""

    name = "cmcm"
    defaults = {"all": {"cpc_weight": 0.0, "mi_weight": 0.0}}
