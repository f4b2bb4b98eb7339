"""The DCID adapter: public layout, strict keys, reference math, contract."""

import numpy as np
import pytest
import torch

from cmg_eval.encoders.base import check_model, example_inputs
from cmg_eval.encoders.dcid import DcidEncoder
from cmg_eval.models.dcid import nearest_codes
from cmg_eval.encoders.loading import load_checkpoint, load_model
from cmg_eval.errors import CmgError, UnsupportedModality
from cmg_eval.io import save_checkpoint

# A sample of the public AVT_VQVAE_Encoder state_dict (docs/checkpoints.md, DCID layout).
PUBLIC_KEYS = {
    "Video_encoder.conv_stack.0.weight": (1024, 512, 3, 3),
    "Video_encoder.conv_stack.5.stack.0.res_block.1.weight": (2048, 2048, 3, 3),
    "Audio_encoder.audio_linear.weight": (256, 128),
    "Text_encoder.text_linear.weight": (256, 256),
    "Cross_quantizer.embedding": (400, 256),
    "Cross_quantizer.unactivated_count": (400,),
    "video_semantic_encoder.se_layer.0.weight": (64, 512),
    "video_semantic_encoder.ave_v_att.weight": (1, 256),
    "video_self_att.encoder_layer.self_attn.in_proj_weight": (768, 256),
    "video_self_att.encoder.layers.1.linear1.weight": (1024, 256),
    "audio_self_att.affine_matrix.weight": (256, 128),
    "text_self_att.affine_matrix.weight": (256, 256),
}


def test_public_layout(random_dcid):
    state = load_checkpoint(random_dcid)["Encoder_parameters"]
    assert len(state) == 142
    assert sum(v.numel() for v in state.values()) == 80_123_649 + 400 * 256 * 2 + 800
    for key, shape in PUBLIC_KEYS.items():
        assert tuple(state[key].shape) == shape, key
        assert state[key].dtype == torch.float64


def test_public_checkpoint_loads_by_layout(public_dcid):
    model = load_model(str(public_dcid))
    assert model.method == "dcid" and model.label == "DCID-model-4" and model.checkpoint_epoch == 4
    assert model.encoder.modalities == ("video", "audio", "text")
    # the 72 M-parameter modal-specific video encoder is never materialised
    params = sum(p.numel() for p in model.encoder.network.parameters())
    assert params < 20_000_000  # inference modules, templates and the text LSTM: about 9 M


@pytest.mark.parametrize("damage, named", [
    (lambda s: s.pop("audio_self_att.affine_matrix.weight"), "missing keys: audio_self_att.affine_matrix.weight"),
    (lambda s: s.__setitem__("extra_head.weight", torch.zeros(3)), "unexpected keys: extra_head.weight"),
    (lambda s: s.__setitem__("Cross_quantizer.embedding", torch.zeros(300, 256, dtype=torch.float64)),
     "wrong shape keys: Cross_quantizer.embedding (300, 256) != (400, 256)"),
])
def test_strict_key_check(public_dcid, tmp_path, damage, named):
    ckpt = load_checkpoint(public_dcid)
    state = dict(ckpt["Encoder_parameters"])
    damage(state)
    path = tmp_path / "damaged.pt"
    save_checkpoint({**ckpt, "Encoder_parameters": state}, path)
    with pytest.raises(CmgError) as error:
        load_model(str(path), "dcid")
    message = str(error.value)
    assert named in message and str(path) in message and "\n" not in message


def test_video_semantic_encoder_matches_reference(public_dcid):
    """The closed form (a sum over the 49 positions) against the module's spatial attention step by step: float32
    within 1e-5, float64 within 1e-10 (the sums run in another order, so not bit for bit); the codes are the same
    (test_bench.py::test_reference_loop_encodes_the_same_codes)."""
    encoder = load_model(str(public_dcid)).encoder
    module = encoder.network.video_semantic_encoder
    video = example_inputs("video", batch=2, steps=3)
    with torch.no_grad():
        torch.testing.assert_close(module(video), module.explicit_forward(video), rtol=1e-5, atol=1e-5)
        module.double()
        torch.testing.assert_close(module(video.double()), module.explicit_forward(video.double()), rtol=1e-10,
                                   atol=1e-9)
    encoder.network.float()


def test_nearest_codes_against_brute_force():
    generator = torch.Generator().manual_seed(0)
    codebook = torch.randn(50, 8, generator=generator, dtype=torch.float64)
    codebook[7] = codebook[3]  # a tie: the lower index wins
    features = torch.randn(4, 5, 8, generator=generator)
    features[0, 0] = codebook[3].float()
    indices = nearest_codes(features, codebook)
    distances = ((features.double()[..., None, :] - codebook) ** 2).sum(-1)
    expected = torch.tensor([[min(range(50), key=lambda k: (distances[i, j, k].item(), k)) for j in range(5)]
                             for i in range(4)])
    assert torch.equal(indices, expected)
    assert indices[0, 0] == 3


def test_contract_checks_pass(random_dcid):
    model = load_model(str(random_dcid))
    results = check_model(model.encoder)
    failed = [r for r in results if not r.ok]
    assert not failed, failed
    checked = {r.check for r in results}
    assert {"deterministic", "parameters and buffers unchanged", "outputs are codebook rows"} <= checked


def test_text_unsupported_without_lstm(public_dcid, tmp_path):
    ckpt = load_checkpoint(public_dcid)
    path = tmp_path / "no-text.pt"
    save_checkpoint({"Encoder_parameters": ckpt["Encoder_parameters"], "epoch": 0}, path)
    encoder = load_model(str(path)).encoder
    assert "text" not in encoder.modalities
    with pytest.raises(UnsupportedModality):
        encoder.encode("text", example_inputs("text"))


def test_text_padded_to_ten_tokens(public_dcid):
    encoder = load_model(str(public_dcid)).encoder
    short = example_inputs("text", batch=2, steps=4)
    padded = torch.nn.functional.pad(short, (0, 0, 0, 6))
    assert torch.equal(encoder.encode("text", short), encoder.encode("text", padded))
    assert encoder.encode("text", short).shape == (2, 10, 256)


def test_cmcm_needs_its_name(public_dcid):
    assert load_model(f"cmcm={public_dcid}", "cmcm").method == "cmcm"
    assert load_model(str(public_dcid)).method == "dcid"
