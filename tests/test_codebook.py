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


def test_report_without_paired_data_is_empty(tmp_path, random_dcid):
    from cmg_eval.encoders.loading import load_model

    assert paired_inputs(tmp_path) is None
    assert codebook_report([load_model(f"random={random_dcid}")], tmp_path) == {}


def test_report_skips_encoders_without_codes(tiny_data, user_weights):
    """Of a model without codes (a plain user encoder) and one with codes, only the second is reported."""
    from cmg_eval.encoders.loading import load_model

    plain = load_model(f"plain={user_weights}", "third_party_encoder:load")
    assert plain.encoder.code_readout is None and plain.encoder.encode_indices("audio", torch.zeros(1, 10, 128)) is None
    class Bucketed(KnownCodes):
        def encode_indices(self, modality, feats):   # real features: any float, bucketed into the 4 codes
            return (feats.reshape(*feats.shape[:2], -1)[..., :1].abs() * 10).long() % 4

    coded = LoadedModel("coded", Bucketed(n_codes=4), "vq", "-", "0" * 64, "known")
    report = codebook_report([plain, coded], tiny_data, max_items=5)
    assert list(report) == ["coded"] and report["coded"]["n_items"] == 5


def test_report_over_models(tiny_data, random_dcid):
    from cmg_eval.encoders.loading import load_model

    oracle = load_model(f"oracle={tiny_data / 'oracle.pt'}")
    dcid = load_model(f"random={random_dcid}")
    report = codebook_report([oracle, dcid], tiny_data, max_items=8)
    assert list(report) == ["random"]       # the oracle has no codes
    first = report["random"]["columns"][0]
    assert report["random"]["n_items"] == 8 and first["n_codes"] == 400
    assert set(first["modalities"]) == {"video", "audio", "text"}
    # the counts are those of the codes the encoder gives the first 8 paired clips, counted here by hand
    inputs = paired_inputs(tiny_data, max_items=8)
    for modality, feats in inputs.items():
        codes = dcid.encoder.encode_indices(modality, torch.from_numpy(feats))[..., 0].numpy()
        assert first["modalities"][modality]["used"] == len(set(codes.ravel().tolist()))
    used_anywhere = set().union(*(set(dcid.encoder.encode_indices(m, torch.from_numpy(f))[..., 0].numpy().ravel())
                                  for m, f in inputs.items()))
    assert first["dead_codes"] == 400 - len(used_anywhere)
