"""Adapters of the DCID-backbone families cmg-eval pretrains: SRCID (two layers), RVQ, FSQ."""

import pytest
import torch

from cmg_eval.encoders.base import check_model, example_inputs
from cmg_eval.models.dcid import nearest_codes
from cmg_eval.encoders.fsq import DcidFsqEncoder
from cmg_eval.encoders.loading import load_checkpoint, load_model, parse_ckpt_spec
from cmg_eval.encoders.rvq import DcidRvqEncoder
from cmg_eval.encoders.srcid import SrcidEncoder
from cmg_eval.errors import CmgError
from cmg_eval.io import save_checkpoint
from cmg_eval.registry import encoders

SMALL = {"hidden": 16, "ff_dim": 16, "se_hidden": 4, "video_output_dim": 8, "audio_output_dim": 8,
         "text_output_dim": 8, "text_lstm_hidden": 4, "n_embeddings": 12}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write(tmp_path, ckpt, name="model.pt", keep_method=True):
    if not keep_method:
        ckpt = {k: v for k, v in ckpt.items() if k != "method"}
    path = tmp_path / name
    save_checkpoint(ckpt, path)
    return path


def spread_codebook(ckpt, scale=3.0):
    """Random-init codebooks sit near 0, where every feature picks one code: spread them out."""
    embedding = ckpt["Encoder_parameters"]["Cross_quantizer.embedding"]
    generator = torch.Generator().manual_seed(0)
    ckpt["Encoder_parameters"]["Cross_quantizer.embedding"] = scale * torch.randn(embedding.shape, generator=generator,
                                                                                 dtype=embedding.dtype)
    return ckpt


@pytest.mark.parametrize("shared", [True, False, None])
def test_srcid_layouts_load_and_pass_check_model(tmp_path, shared):
    """Per-layer codebooks (2, n, D) by default; one codebook for both layers (n, D) on request."""
    config = SMALL if shared is None else {**SMALL, "shared_codebook": shared}
    ckpt = spread_codebook(SrcidEncoder.init_checkpoint(0, config))
    shared = bool(shared)
    expected = (12, 16) if shared else (2, 12, 16)
    assert tuple(ckpt["Encoder_parameters"]["Cross_quantizer.embedding"].shape) == expected
    model = load_model(str(write(tmp_path, ckpt, keep_method=False)))   # found by its key layout
    assert model.method == "srcid" and model.readout == "concat"
    encoder = model.encoder
    assert encoder.shared_codebook is shared
    assert all(result.ok for result in check_model(encoder)), [r for r in check_model(encoder) if not r.ok]
    assert encoder.output_dim("concat") == 32 and encoder.output_dim("layer1") == 16


def test_srcid_readouts(tmp_path):
    ckpt = spread_codebook(SrcidEncoder.init_checkpoint(0, {**SMALL, "shared_codebook": False}))
    encoder = load_model(str(write(tmp_path, ckpt))).encoder
    audio = example_inputs("audio", batch=4, steps=5)
    out = {r: encoder.encode("audio", audio, r) for r in encoder.readouts}
    assert torch.equal(out["concat"], torch.cat([out["layer1"], out["layer2"]], -1))
    assert torch.equal(out["sum"], out["layer1"] + out["layer2"])
    indices = encoder.encode_indices("audio", audio)
    table = ckpt["Encoder_parameters"]["Cross_quantizer.embedding"]
    assert torch.equal(indices[..., 1], nearest_codes(encoder.layer_features("audio", audio)[1], table[1]))
    assert not torch.equal(out["layer1"], out["layer2"])


def test_srcid_layer1_is_the_dcid_path(tmp_path):
    ckpt = spread_codebook(SrcidEncoder.init_checkpoint(0, SMALL))
    srcid = load_model(str(write(tmp_path, ckpt))).encoder
    # layer 1's codebook is the first of the per-layer stack
    dcid_state = {k: v[0] if k.startswith("Cross_quantizer.") else v
                  for k, v in ckpt["Encoder_parameters"].items() if "_2." not in k}
    dcid = load_model(str(write(tmp_path, {**ckpt, "Encoder_parameters": dcid_state, "method": "dcid"}, "d.pt"))).encoder
    video = example_inputs("video", batch=2, steps=3)
    assert torch.equal(srcid.encode("video", video, "layer1"), dcid.encode("video", video))


def test_srcid_rejects_other_codebook_shapes(tmp_path):
    ckpt = SrcidEncoder.init_checkpoint(0, SMALL)
    ckpt["Encoder_parameters"]["Cross_quantizer.embedding"] = torch.zeros(3, 12, 16, dtype=torch.float64)
    path = write(tmp_path, ckpt)
    with pytest.raises(CmgError, match=r"expected \(codes, dim\) shared or \(2, codes, dim\)"):
        load_model(str(path))


@pytest.mark.parametrize("levels", [2, 3, 4])
def test_rvq_infers_levels_and_passes_check_model(tmp_path, levels):
    ckpt = spread_codebook(encoders.get(f"dcid-rvq{levels}").init_checkpoint(0, SMALL))
    ckpt["Encoder_parameters"]["Cross_quantizer.embedding"][:, 0] = 0
    generic = load_model(str(write(tmp_path, ckpt, keep_method=False)))
    assert generic.method == "dcid-rvq" and generic.encoder.n_levels == levels
    assert generic.encoder.readouts == ("sum", *(f"level:{k}" for k in range(1, levels + 1)), "pre_vq")
    assert all(result.ok for result in check_model(generic.encoder))
    audio = example_inputs("audio", batch=2, steps=4)
    full = generic.encoder.encode("audio", audio, f"level:{levels}")
    assert torch.equal(full, generic.encoder.encode("audio", audio, "sum"))
    assert generic.encoder.encode_indices("audio", audio).shape == (2, 4, levels)


def test_rvq_named_levels_must_match(tmp_path):
    ckpt = encoders.get("dcid-rvq2").init_checkpoint(0, SMALL)
    path = write(tmp_path, {**ckpt, "method": "dcid-rvq3"})
    with pytest.raises(CmgError, match="has 2 levels, expected 3 for dcid-rvq3"):
        load_model(str(path))


def test_fsq_adapter(tmp_path):
    ckpt = DcidFsqEncoder.init_checkpoint(0, SMALL)
    assert ckpt["config"]["fsq_levels"] == [5, 5, 4, 4]
    model = load_model(str(write(tmp_path, ckpt, keep_method=False)))
    assert model.method == "dcid-fsq" and model.encoder.codebook().shape == (400, 16)
    assert all(result.ok for result in check_model(model.encoder))
    bad = write(tmp_path, {**ckpt, "config": {**ckpt["config"], "fsq_levels": [5, 5, 4]}}, "bad.pt")
    with pytest.raises(CmgError, match="wrong shape keys: Cross_quantizer.project_in.weight"):
        load_model(str(bad))


def test_public_dcid_is_not_taken_for_srcid(public_dcid):
    assert load_model(str(public_dcid)).method == "dcid"
    ckpt = load_checkpoint(public_dcid)
    assert not SrcidEncoder.layout_matches(ckpt) and not DcidRvqEncoder.layout_matches(ckpt)


@pytest.mark.parametrize("spec, parsed", [
    ("srcid@layer1=a/srcid.pt", ("srcid@layer1", "layer1", "a/srcid.pt")),
    ("srcid=a/srcid.pt", ("srcid", None, "a/srcid.pt")),
    ("a/srcid.pt", ("srcid", None, "a/srcid.pt")),
    ("@pre_vq=a/model.pt", ("model", "pre_vq", "a/model.pt")),
])
def test_ckpt_spec_labels_keep_the_readout(spec, parsed):
    assert parse_ckpt_spec(spec) == parsed
