"""Codebook diagnostics on an encoder whose codes are known in advance."""

import math

import numpy as np
import pytest
import torch

from cmg_eval.codebook import agreement, codebook_report, diagnostics, paired_inputs, usage
from cmg_eval.encoders.base import LoadedModel, UnifiedEncoder
from cmg_eval.errors import CmgError


class KnownCodes(UnifiedEncoder):
    """Audio (B, T, 128) and video (B, T, 7, 7, 512): the code of a step is its first input value."""

    name = "known"
    modalities = ("video", "audio")
    readouts = ("vq",)
    default_readout = "vq"
    code_readout = "vq"

    def __init__(self, n_codes: int = 6, levels: int = 1):
        self.table = torch.zeros(n_codes, 2) if levels == 1 else torch.zeros(levels, n_codes, 2)
        self.levels = levels

    def output_dim(self, readout=None):
        return 2

    def encode(self, modality, feats, readout=None):
        raise NotImplementedError

    def encode_indices(self, modality, feats):
        first = feats.reshape(*feats.shape[:2], -1)[..., 0].long()
        return torch.stack([first + k for k in range(self.levels)], dim=-1)

    def codebook(self):
        return self.table


def inputs(codes: list[list[int]], modality: str) -> np.ndarray:
    tail = (7, 7, 512) if modality == "video" else (128,)
    array = np.zeros((len(codes), len(codes[0]), *tail), np.float32)
    array.reshape(len(codes), len(codes[0]), -1)[..., 0] = codes
    return array


def test_usage_perplexity_dead_codes_and_agreement():
    video = [[0, 0, 1], [2, 2, 2]]
    audio = [[0, 1, 1], [3, 3, 2]]
    result = diagnostics(KnownCodes(), {"video": inputs(video, "video"), "audio": inputs(audio, "audio")})
    column = result["columns"][0]
    assert result["n_items"] == 2 and column["n_codes"] == 6
    v = column["modalities"]["video"]
    assert v["used"] == 3 and v["usage"] == pytest.approx(0.5)
    # histogram 2/6, 1/6, 3/6 -> exp(entropy)
    entropy = -sum(p * math.log(p) for p in (2 / 6, 1 / 6, 3 / 6))
    assert v["perplexity"] == pytest.approx(math.exp(entropy))
    assert column["dead_codes"] == 6 - 4       # codes 0..3 are used by some modality
    pair = column["agreement"]["video-audio"]
    assert pair["segment"] == pytest.approx(3 / 6)   # (0,0) (1,1) (2,2) agree
    assert pair["clip_mode"] == pytest.approx(0.0)   # modes 0 vs 1, 2 vs 3


def test_one_column_per_level():
    result = diagnostics(KnownCodes(n_codes=8, levels=2), {"audio": inputs([[1, 2]], "audio"),
                                                          "video": inputs([[1, 5]], "video")})
    assert [c["column"] for c in result["columns"]] == [1, 2]
    assert result["columns"][1]["modalities"]["audio"]["used"] == 2
    assert result["columns"][1]["agreement"]["audio-video"]["segment"] == 0.5


def test_helpers_by_hand():
    assert usage(np.array([[4, 4, 4, 4]]), 10) == {"used": 1, "perplexity": 1.0, "usage": 0.1}
    assert agreement(np.array([[1, 1, 2]]), np.array([[1, 3, 3, 3]])) == {"clip_mode": 0.0}  # lengths differ


def test_mismatched_items_are_refused():
    with pytest.raises(CmgError, match="differ in item counts"):
        diagnostics(KnownCodes(), {"video": inputs([[0]], "video"), "audio": inputs([[0], [1]], "audio")})


def test_report_skips_encoders_without_codes(tmp_path):
    assert paired_inputs(tmp_path) is None and codebook_report([], tmp_path) == {}


def test_report_over_models(tiny_data, random_dcid):
    from cmg_eval.encoders.loading import load_model

    oracle = load_model(f"oracle={tiny_data / 'oracle.pt'}")
    dcid = load_model(f"random={random_dcid}")
    report = codebook_report([oracle, dcid], tiny_data, max_items=8)
    assert list(report) == ["random"]       # the oracle has no codes
    first = report["random"]["columns"][0]
    assert report["random"]["n_items"] == 8 and first["n_codes"] == 400
    assert set(first["modalities"]) == {"video", "audio", "text"}
    assert isinstance(dcid, LoadedModel)
