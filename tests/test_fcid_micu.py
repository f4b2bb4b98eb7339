"""The FCID and MICU adapters: public layouts, strict keys, TOC channel selection, MICU's zero code."""

import json

import numpy as np
import pytest
import torch

from cmg_eval.encoders.base import check_model, example_inputs
from cmg_eval.encoders.fcid import FcidEncoder, toc_criterion, toc_order
from cmg_eval.encoders.loading import load_checkpoint, load_model
from cmg_eval.encoders.micu import MicuEncoder
from cmg_eval.errors import CmgError, UnsupportedModality
from cmg_eval.io import save_checkpoint
from conftest import cli

SMALL = {"hidden": 16, "ff_dim": 16, "se_hidden": 4, "video_output_dim": 8, "audio_output_dim": 8,
         "text_output_dim": 8, "text_lstm_hidden": 4, "n_embeddings": 12}

# A sample of the public FCID encoder state_dict (116 entries), copied by hand from its published listing.
FCID_PUBLIC_KEYS = {
    "Cross_quantizer_coarse.embedding": (400, 256),
    "Cross_quantizer_coarse.unactivated_count": (400,),
    "v_spe_encoder.conv_stack.0.weight": (1024, 512, 3, 3),
    "v_spe_encoder.conv_stack.5.stack.0.res_block.1.weight": (2048, 2048, 3, 3),
    "v_spe_encoder.feed_forward.2.weight": (512, 1024),
    "a_spe_encoder.audio_linear.weight": (256, 128),
    "v_gen_encoder.se_layer.2.weight": (512, 64),
    "v_gen_encoder.ave_v_att.bias": (1,),
    "v_self_att.encoder_layer.self_attn.in_proj_weight": (768, 256),
    "v_self_att.encoder.layers.0.linear1.weight": (1024, 256),
    "v_self_att.affine_matrix.weight": (256, 512),
    "a_self_att.affine_matrix.weight": (256, 128),
    "va_gen_encoder.input_linear.weight": (256, 256),
    "va_spe_encoder.input_linear.bias": (256,),
    "va2vat.linear.weight": (256, 256),
    "t_self_att.affine_matrix.weight": (256, 768),
    "t2vat.linear.bias": (256,),
    "t_gen_encoder.input_linear.weight": (256, 256),
    "t_spe_encoder.input_linear.weight": (256, 256),
}
# The published listing's top-level modules, in state_dict order.
FCID_MODULE_ORDER = ["Cross_quantizer_coarse", "v_spe_encoder", "a_spe_encoder", "v_gen_encoder", "v_self_att",
                     "a_self_att", "va_gen_encoder", "va_spe_encoder", "va2vat", "t_self_att", "t2vat",
                     "t_gen_encoder", "t_spe_encoder"]

# A 4 x 3 codebook and its TOC numbers worked out by hand: per column, sim = (S^2 - Q) / 12 and
# var = (Q - S^2 / 4) / 3, with S the column sum and Q the sum of squares.
#   column 0 [1, 1, 1, 1]:   S=4, Q=4   -> sim =  1,    var = 0
#   column 1 [2, 0, -2, 0]:  S=0, Q=8   -> sim = -2/3,  var = 8/3
#   column 2 [3, 3, -1, -1]: S=4, Q=20  -> sim = -1/3,  var = 16/3
TOC_CODEBOOK = [[1.0, 2.0, 3.0], [1.0, 0.0, 3.0], [1.0, -2.0, -1.0], [1.0, 0.0, -1.0]]
SIM = [1.0, -2 / 3, -1 / 3]
VAR = [0.0, 8 / 3, 16 / 3]
CRITERION_SIM_VAR = [-0.7, 3.8 / 3, 5.5 / 3]     # -0.7 sim + 0.3 var: order 2, 1, 0
CRITERION_SIM = [-0.7, 1.4 / 3, 0.7 / 3]         # -0.7 sim:           order 1, 2, 0


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write(tmp_path, ckpt, name="model.pt"):
    path = tmp_path / name
    save_checkpoint(ckpt, path)
    return path


def without_method(ckpt):
    return {k: v for k, v in ckpt.items() if k != "method"}


def toc_checkpoint():
    """A 3-wide FCID whose codebook is TOC_CODEBOOK."""
    ckpt = FcidEncoder.init_checkpoint(0, {**SMALL, "hidden": 3, "n_heads": 1, "n_embeddings": 4})
    ckpt["Encoder_parameters"]["Cross_quantizer_coarse.embedding"] = torch.tensor(TOC_CODEBOOK, dtype=torch.float64)
    return ckpt


@pytest.fixture(scope="module")
def full_size(tmp_path_factory):
    """`ckpt init fcid` and `ckpt init micu` outputs (the full public layouts, float64)."""
    folder = tmp_path_factory.mktemp("fcid-micu")
    paths = {}
    for name in ("fcid", "micu"):
        paths[name] = folder / f"random-{name}.pt"
        result = cli("ckpt", "init", name, "--out", paths[name], "--seed", "3")
        assert result.exit_code == 0, result.output
    return paths


# ------------------------------------------------------------------ layouts


def test_fcid_public_layout(full_size):
    ckpt = load_checkpoint(full_size["fcid"])
    state = ckpt["Encoder_parameters"]
    assert ckpt["method"] == "fcid" and "Text_ar_lstm_parameters" not in ckpt
    assert len(state) == 116
    assert sum(v.numel() for k, v in state.items() if "Cross_quantizer" not in k) == 78_214_401
    assert list(dict.fromkeys(key.split(".")[0] for key in state)) == FCID_MODULE_ORDER
    for key, shape in FCID_PUBLIC_KEYS.items():
        assert tuple(state[key].shape) == shape, key
        assert state[key].dtype == torch.float64
    assert ckpt["config"]["n_layers"] == 1 and "v_self_att.encoder.layers.1.linear1.weight" not in state


def test_micu_public_layout_is_dcids(full_size, random_dcid):
    micu = load_checkpoint(full_size["micu"])
    dcid = load_checkpoint(random_dcid)["Encoder_parameters"]
    assert micu["method"] == "micu" and "Text_ar_lstm_parameters" in micu
    assert {k: tuple(v.shape) for k, v in micu["Encoder_parameters"].items()} == \
        {k: tuple(v.shape) for k, v in dcid.items()}


def test_check_model_passes_on_both(full_size):
    for name, path in full_size.items():
        result = cli("check-model", "--ckpt", path)
        assert result.exit_code == 0, result.output
        assert f"({name})" in result.output and "FAIL" not in result.output


def test_method_detection(tmp_path, public_dcid):
    fcid = write(tmp_path, without_method(FcidEncoder.init_checkpoint(0, SMALL)))
    assert load_model(str(fcid)).method == "fcid"   # its own key layout
    micu = write(tmp_path, MicuEncoder.init_checkpoint(0, SMALL), "micu.pt")
    assert load_model(str(micu)).method == "micu"   # the method field
    assert load_model(str(public_dcid)).method == "dcid"   # DCID's layout without a name stays dcid
    assert load_model(str(public_dcid), "micu").method == "micu"


@pytest.mark.parametrize("family, key", [(FcidEncoder, "va2vat.linear.weight"),
                                         (MicuEncoder, "audio_self_att.affine_matrix.weight")])
@pytest.mark.parametrize("damage, named", [
    (lambda s, k: s.pop(k), "missing keys: {key}"),
    (lambda s, k: s.__setitem__("extra_head.weight", torch.zeros(3)), "unexpected keys: extra_head.weight"),
    (lambda s, k: s.__setitem__(k, torch.zeros(5, 7, dtype=torch.float64)), "wrong shape keys: {key} (5, 7) != (16, "),
])
def test_strict_key_errors(tmp_path, family, key, damage, named):
    ckpt = family.init_checkpoint(0, SMALL)
    state = dict(ckpt["Encoder_parameters"])
    damage(state, key)
    path = write(tmp_path, {**ckpt, "Encoder_parameters": state})
    with pytest.raises(CmgError) as error:
        load_model(str(path))
    message = str(error.value)
    assert named.format(key=key) in message and str(path) in message and "\n" not in message
    result = cli("check-model", "--ckpt", path)
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1


def test_fcid_refuses_the_other_layout(tmp_path):
    """A DCID-layout file named fcid is a key error naming what is missing, not a crash."""
    path = write(tmp_path, {**MicuEncoder.init_checkpoint(0, SMALL), "method": "fcid"})
    with pytest.raises(CmgError, match="missing keys: Cross_quantizer_coarse.embedding"):
        load_model(str(path))


# ------------------------------------------------------------------ FCID


def test_toc_criterion_hand_computed():
    codebook = torch.tensor(TOC_CODEBOOK, dtype=torch.float64)
    torch.testing.assert_close(toc_criterion(codebook, 1.0, 0.0), torch.tensor(SIM, dtype=torch.float64))
    torch.testing.assert_close(toc_criterion(codebook, 0.0, 1.0), torch.tensor(VAR, dtype=torch.float64))
    torch.testing.assert_close(toc_criterion(codebook, -0.7, 0.3), torch.tensor(CRITERION_SIM_VAR, dtype=torch.float64))
    torch.testing.assert_close(toc_criterion(codebook, -0.7, 0.0), torch.tensor(CRITERION_SIM, dtype=torch.float64))
    assert toc_order(codebook, -0.7, 0.3).tolist() == [2, 1, 0]
    assert toc_order(codebook, -0.7, 0.0).tolist() == [1, 2, 0]


def test_toc_readouts_select_hand_computed_channels(tmp_path):
    encoder = load_model(str(write(tmp_path, toc_checkpoint()))).encoder
    assert encoder.channels("toc:2").tolist() == [2, 1] and encoder.channels("toc-sim:2").tolist() == [1, 2]
    assert encoder.channels("toc:1").tolist() == [2] and encoder.channels("toc-sim:3").tolist() == [1, 2, 0]
    audio = example_inputs("audio", batch=3, steps=4)
    full = encoder.encode("audio", audio)
    assert torch.equal(encoder.encode("audio", audio, "toc:2"), full[..., [2, 1]])
    assert torch.equal(encoder.encode("audio", audio, "toc-sim:2"), full[..., [1, 2]])
    assert encoder.output_dim("toc:2") == 2 and encoder.output_dim() == 3
    assert encoder.resolve_readout("toc:02") == "toc:2"
    for bad in ("toc:0", "toc:4", "toc:", "toc-var:2"):
        with pytest.raises(CmgError, match="toc:N, toc-sim:N with 1 <= N <= 3"):
            encoder.resolve_readout(bad)


def test_fcid_codes_are_nearest_rows_of_the_general_features(tmp_path):
    ckpt = FcidEncoder.init_checkpoint(0, SMALL)
    # codewords where features lie: the general features of 12 other clips' first steps
    other = FcidEncoder.from_checkpoint(ckpt).pre_quantization("video", example_inputs("video", 12, 1, seed=5))
    table = other[:, 0].double()
    ckpt["Encoder_parameters"]["Cross_quantizer_coarse.embedding"] = table
    encoder = load_model(str(write(tmp_path, ckpt))).encoder
    video = example_inputs("video", batch=2, steps=5)
    # the path written out: SE-gated frame sum, one transformer layer, va2vat's Linear, va_gen_encoder's Linear+ReLU
    net = encoder.network
    steps = net.v_self_att(net.v_gen_encoder(video))
    general = torch.relu(net.va_gen_encoder.input_linear(net.va2vat.linear(steps)))
    torch.testing.assert_close(encoder.encode("video", video, "pre_vq"), general)
    distances = ((general.double()[..., None, :] - table) ** 2).sum(-1)
    indices = encoder.encode_indices("video", video)
    assert torch.equal(indices[..., 0], distances.argmin(-1))
    assert torch.equal(encoder.encode("video", video), table.float()[indices[..., 0]])
    assert len(set(indices.flatten().tolist())) > 1


def test_fcid_refuses_text():
    encoder = FcidEncoder.from_checkpoint(FcidEncoder.init_checkpoint(0, SMALL))
    assert encoder.modalities == ("video", "audio")
    with pytest.raises(UnsupportedModality, match="does not encode text: the public FCID class has no working"):
        encoder.encode("text", example_inputs("text"))


def test_embed_fcid_toc_and_indices(tmp_path):
    path = write(tmp_path, toc_checkpoint())
    audio = example_inputs("audio", batch=4).numpy()
    np.savez(tmp_path / "in.npz", audio=audio)
    result = cli("embed", "--ckpt", path, "--modality", "audio", "--in", tmp_path / "in.npz",
                 "--out", tmp_path / "out.npz", "--readout", "toc:2")
    assert result.exit_code == 0, result.output
    out = np.load(tmp_path / "out.npz")
    codebook = np.array(TOC_CODEBOOK)
    assert "vq" not in out and out["indices"].shape == (4, 10, 1) and out["toc:2"].shape == (4, 10, 2)
    np.testing.assert_array_equal(out["toc:2"], codebook[out["indices"][..., 0]][..., [2, 1]].astype(np.float32))
    distances = ((out["pre_vq"].astype(np.float64)[..., None, :] - codebook) ** 2).sum(-1)
    np.testing.assert_array_equal(out["indices"][..., 0], distances.argmin(-1))


# ------------------------------------------------------------------ MICU


def test_micu_row_zero_is_the_zero_vector(tmp_path):
    """Stored row 0 lies far away; the other rows are spread wide, so the origin is the nearest entry of the
    lookup table for every feature: MICU returns index 0 and the zero vector, DCID the stored rows."""
    ckpt = MicuEncoder.init_checkpoint(0, SMALL)
    generator = torch.Generator().manual_seed(0)
    table = 3.0 * torch.randn(12, 16, generator=generator, dtype=torch.float64)
    table[0] = 5.0
    ckpt["Encoder_parameters"]["Cross_quantizer.embedding"] = table
    stored = table.clone()
    micu = load_model(str(write(tmp_path, ckpt))).encoder
    dcid = load_model(str(write(tmp_path, {**ckpt, "method": "dcid"}, "dcid.pt"))).encoder
    audio = example_inputs("audio", batch=3, steps=6)
    features = micu.pre_quantization("audio", audio).double()
    lookup = stored.clone()
    lookup[0] = 0.0
    expected = ((features[..., None, :] - lookup) ** 2).sum(-1).argmin(-1)
    indices = micu.encode_indices("audio", audio)[..., 0]
    assert torch.equal(indices, expected) and (indices == 0).any()
    out = micu.encode("audio", audio)
    assert torch.equal(out[indices == 0], torch.zeros(int((indices == 0).sum()), 16))
    assert not (dcid.encode_indices("audio", audio) == 0).any()   # DCID never picks the far stored row 0
    # the loaded weights are untouched: the checkpoint's tensor, and what the encoder holds
    assert torch.equal(ckpt["Encoder_parameters"]["Cross_quantizer.embedding"], stored)
    assert torch.equal(load_checkpoint(tmp_path / "model.pt")["Encoder_parameters"]["Cross_quantizer.embedding"], stored)
    assert torch.equal(micu.codebook()[1:], stored[1:].float()) and not micu.codebook()[0].any()
    assert all(result.ok for result in check_model(micu))


def test_micu_loaded_state_unchanged_by_encoding(tmp_path):
    ckpt = MicuEncoder.init_checkpoint(0, SMALL)
    state = ckpt["Encoder_parameters"]
    before = {k: v.clone() for k, v in state.items()}
    encoder = MicuEncoder.from_checkpoint(ckpt)
    for modality in encoder.modalities:
        encoder.encode(modality, example_inputs(modality))
        encoder.encode_indices(modality, example_inputs(modality))
    assert all(torch.equal(state[k], before[k]) for k in before)
    assert state["Cross_quantizer.embedding"][0].abs().sum() > 0


# ------------------------------------------------------------------ CLI


def test_ls_lists_both():
    result = cli("ls", "encoders")
    assert result.exit_code == 0
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") >= 3}
    assert "toc:N" in rows["fcid"] and "toc-sim:N" in rows["fcid"] and "vq" in rows["micu"]


@pytest.mark.parametrize("name, readout", [("fcid", "toc:128"), ("micu", None)])
def test_run_ave_with_random_init(full_size, micro_data, tmp_path, name, readout):
    spec = f"{name}@{readout}={full_size[name]}" if readout else f"{name}={full_size[name]}"
    result = cli("run", "ave", "--ckpt", spec, "--data-root", micro_data, "--out", tmp_path / "run",
                 "--cache-dir", tmp_path / "cache", "--set", "epochs=2", "--seeds", "1", "--bootstrap", "0")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "run" / "results.json").read_text())
    model = document["meta"]["models"][0]
    assert model["encoder"] == name and model["readout"] == (readout or "vq")
    assert model["output_dim"] == (128 if readout else 256)
    assert {r["direction"] for r in document["results"]} >= {"V->A", "A->V"}


def test_text_directions_skipped_with_reason(tiny_data, tmp_path):
    path = write(tmp_path, FcidEncoder.init_checkpoint(0, SMALL))
    result = cli("plan", "clotho_at,ave", "--ckpt", f"fcid={path}", "--data-root", tiny_data, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "skipped fcid clotho_at A->T: encoder 'fcid' does not support text" in result.output
    assert "fcid/ave/audio/seed43" in result.output
