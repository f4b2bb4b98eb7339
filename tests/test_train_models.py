"""Training-time modules keep the public parameter names and shapes (docs/checkpoints.md)."""

import torch

from cmg_eval.models.dcid import AVTVQVAEEncoder, DcidConfig, expected_shapes
from cmg_eval.models.decoder import AVTVQVAEDecoder
from cmg_eval.models.fsq import AVTFSQVAEEncoder
from cmg_eval.models.rvq import AVTRQVAEEncoder
from cmg_eval.models.srcid import AVTMLVQVAEEncoder
from cmg_eval.train.club import CLUBSampleGroup
from cmg_eval.train.cpc import CrossCPC

# Samples of Appendix B (`CPC_parameters`, `Decoder_parameters`, `Video_mi_net_parameters`).
DECODER_KEYS = {
    "Video_decoder.inverse_conv_block.0.weight": (2304, 1024, 3, 3),
    "Video_decoder.inverse_conv_block.1.stack.0.res_block.1.weight": (1024, 1024, 3, 3),
    "Video_decoder.inverse_conv_block.1.stack.0.res_block.3.weight": (1024, 1024, 1, 1),
    "Video_decoder.inverse_conv_block.2.weight": (1024, 512, 3, 3),
    "Video_decoder.inverse_conv_block.4.weight": (512, 512, 1, 1),
    "Video_decoder.video_linear.weight": (256, 256),
    "Audio_decoder.audio_rec.weight": (128, 512),
    "Audio_decoder.audio_linear.weight": (256, 256),
    "Text_decoder.text_rec.weight": (256, 512),
    "audio_semantic_decoder.event_classifier.weight": (141, 256),
}
# Samples of Appendix C (the 120 layer-2 keys of `AVT_MLVQVAE_Encoder`).
LAYER2_KEYS = {
    "Video_encoder_2.input_linear.weight": (512, 512),
    "Audio_encoder_2.input_linear.weight": (256, 256),
    "Text_encoder_2.input_linear.bias": (256,),
    "video_self_att_2.encoder_layer.self_attn.in_proj_weight": (768, 256),
    "video_self_att_2.encoder.layers.1.norm2.bias": (256,),
    "video_self_att_2.affine_matrix.weight": (256, 512),
    "text_self_att_2.affine_matrix.weight": (256, 256),
    "audio_self_att_2.encoder.layers.0.linear1.weight": (1024, 256),
}


def test_decoder_matches_public_layout():
    shapes = expected_shapes(lambda: AVTVQVAEDecoder(DcidConfig()))
    assert len(shapes) == 30
    with torch.device("meta"):
        assert sum(p.numel() for p in AVTVQVAEDecoder(DcidConfig()).parameters()) == 37_402_663
    for key, shape in DECODER_KEYS.items():
        assert shapes[key] == shape, key


def test_cpc_and_club_match_public_layout():
    cpc = expected_shapes(lambda: CrossCPC(("video", "audio", "text"), 256, 256, 2))
    assert len(cpc) == 30 and cpc["text_ar_lstm.weight_ih_l1"] == (1024, 256)
    assert cpc["video_predictors.0.weight"] == (256, 256)
    club = expected_shapes(lambda: CLUBSampleGroup(256, 512, 256))
    assert len(club) == 16
    assert club["p_mu.0.weight"] == (128, 256) and club["p_logvar.6.weight"] == (512, 128)


def test_two_layer_encoder_matches_appendix_c():
    base = expected_shapes(lambda: AVTVQVAEEncoder(DcidConfig()))
    per_layer = expected_shapes(lambda: AVTMLVQVAEEncoder(DcidConfig(), shared_codebook=False))
    shared = expected_shapes(lambda: AVTMLVQVAEEncoder(DcidConfig(), shared_codebook=True))
    assert len(per_layer) == 262 and set(base) <= set(per_layer)
    assert len(set(per_layer) - set(base)) == 120
    for key, shape in LAYER2_KEYS.items():
        assert per_layer[key] == shape, key
    assert per_layer["Cross_quantizer.embedding"] == (2, 400, 256)
    assert per_layer["Cross_quantizer.unactivated_count"] == (2, 400)
    assert shared["Cross_quantizer.embedding"] == (400, 256)
    with torch.device("meta"):
        assert sum(p.numel() for p in AVTMLVQVAEEncoder(DcidConfig(), False).parameters()) == 87_888_641


def test_rvq_and_fsq_layouts():
    rvq = expected_shapes(lambda: AVTRQVAEEncoder(DcidConfig(), 3))
    assert set(rvq) == set(expected_shapes(lambda: AVTVQVAEEncoder(DcidConfig())))
    assert rvq["Cross_quantizer.embedding"] == (3, 400, 256) and rvq["Cross_quantizer.ema_count"] == (3, 400)
    assert torch.all(AVTRQVAEEncoder(DcidConfig(hidden=8, ff_dim=8, video_output_dim=8), 2)
                     .Cross_quantizer.embedding[:, 0] == 0)
    fsq = expected_shapes(lambda: AVTFSQVAEEncoder(DcidConfig(), (5, 5, 4, 4)))
    assert fsq["Cross_quantizer.project_in.weight"] == (4, 256)
    assert fsq["Cross_quantizer.project_out.weight"] == (256, 4)
    assert "Cross_quantizer.embedding" not in fsq


def test_general_and_specific_paths():
    cfg = DcidConfig(hidden=16, ff_dim=16, se_hidden=4, video_output_dim=8, audio_output_dim=8, text_output_dim=8,
                     text_lstm_hidden=4)
    encoder = AVTMLVQVAEEncoder(cfg).eval()
    video, audio = torch.rand(2, 3, 7, 7, 512), torch.rand(2, 3, 128)
    with torch.no_grad():
        maps, club = encoder.specific("video", video)
        assert maps.shape == (2, 3, 3, 3, 8) and club.shape == (2, 3, 512)
        assert encoder.general("video", video).shape == (2, 3, 16)
        assert encoder.general2("video", club).shape == (2, 3, 16)
        audio_specific = encoder.specific("audio", audio)[0]
        assert encoder.specific2("audio", audio_specific).shape == (2, 3, 8)
        decoded = AVTVQVAEDecoder(cfg).decode("video", maps, torch.zeros(2, 3, 16))
        assert decoded.shape == video.shape
