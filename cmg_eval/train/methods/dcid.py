"""DCID and CMCM: the same backbone and codebook, different objectives."""

from __future__ import annotations

from cmg_eval.registry import register_method
from cmg_eval.train.method import DcidMethod

register_method("dcid")(DcidMethod)


@register_method("cmcm")
class CmcmMethod(DcidMethod):
    """CMCM as the CMG authors re-implemented it on the DCID backbone (reference-model.md 5): recon +
    commitment + CMCM."""

    name = "cmcm"
    defaults = {"all": {"cpc_weight": 0.0, "mi_weight": 0.0}}
