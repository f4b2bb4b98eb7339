"""The user-encoder contract (docs/encoders.md): a third-party object with only the required parts runs through
run, embed and check-model; what the contract lacks is refused in one line; devices; shadowed entry points."""

import json
from importlib.metadata import EntryPoint

import numpy as np
import pytest
import torch
from torch import nn

import third_party_encoder
from cmg_eval.embedder import move_encoder
from cmg_eval.encoders.base import example_inputs
from cmg_eval.encoders.dcid import DcidEncoder
from cmg_eval.encoders.loading import load_model
from conftest import MICRO_COUNTS, cli

ENCODER = "third_party_encoder:load"


def test_third_party_encoder_passes_check_model(user_weights):
    result = cli("check-model", "--ckpt", user_weights, "--encoder", ENCODER)
    assert result.exit_code == 0, result.output
    # every readout of both modalities was encoded and checked
    for tag in ("video@proj", "video@half", "audio@proj", "audio@half"):
        assert tag in result.output


def test_third_party_encoder_embeds_under_its_readout_names(user_weights, tmp_path):
    audio = example_inputs("audio", batch=4).numpy()
    np.savez(tmp_path / "in.npz", audio=audio)
    weights = torch.load(user_weights, weights_only=True)["audio"].numpy()
    for readout, expected in ((None, audio @ weights), ("half", (audio @ weights)[..., :8])):
        out_file = tmp_path / f"{readout}.npz"
        args = ["--readout", readout] if readout else []
        result = cli("embed", "--ckpt", user_weights, "--encoder", ENCODER, "--modality", "audio",
                     "--in", tmp_path / "in.npz", "--out", out_file, *args)
        assert result.exit_code == 0, result.output
        out = np.load(out_file)
        key = readout or "proj"   # no default_readout declared: the first readout
        assert list(out.keys()) == [key]   # no codes, no pre_vq: nothing else is written
        np.testing.assert_allclose(out[key], expected, rtol=1e-5, atol=1e-4)


def test_third_party_encoder_runs_a_task(micro_data, user_weights, tmp_path):
    result = cli("run", "ave", "--ckpt", f"mine@half={user_weights}", "--encoder", ENCODER,
                 "--data-root", micro_data, "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache",
                 "--set", "epochs=2", "--seeds", "1", "--bootstrap", "0")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    model = document["meta"]["models"][0]
    assert model["encoder"] == ENCODER and model["readout"] == "half" and model["output_dim"] == 8
    assert {r["direction"] for r in document["results"]} == {"V->A", "A->V", "V->V", "A->A"}
    assert all(r["n_items"] == MICRO_COUNTS[2] and 0 <= r["value"] <= 100 for r in document["results"])


@pytest.mark.parametrize("factory, message", [
    ("no_encode", "lacks encode (required: modalities, readouts, output_dim(readout), "
                  "encode(modality, feats, readout))"),
    ("codes_without_lookup", "code_readout 'proj' needs to be one of its readouts and encode_indices and lookup_codes "
                             "methods (lacks lookup_codes)"),
])
def test_incomplete_encoders_are_refused_in_one_line(user_weights, factory, message):
    for command in (["check-model", "--ckpt", user_weights],
                    ["embed", "--ckpt", user_weights, "--modality", "audio", "--in", user_weights, "--out", "x.npz"]):
        result = cli(*command, "--encoder", f"third_party_encoder:{factory}")
        assert result.exit_code == 1
        assert f"--encoder third_party_encoder:{factory}: " in result.output and message in result.output
        assert "Traceback" not in result.output


def test_device_move_reaches_tensors_of_plain_objects(user_weights):
    """What `--device cuda` does, on the meta device: tensors and modules anywhere in plain attributes move."""
    encoder = load_model(str(user_weights), ENCODER).encoder
    encoder.inner.extra = [torch.zeros(2), {"layer": nn.Linear(2, 2)}]
    move_encoder(encoder, "meta")
    assert all(w.device.type == "meta" for w in encoder.inner.helper.by_modality.values())
    assert encoder.inner.extra[0].device.type == "meta" and encoder.inner.extra[1]["layer"].weight.is_meta


def test_device_move_calls_the_encoders_own_to():
    class Movable:
        def __init__(self):
            self.moved_to, self.tensor = None, torch.zeros(1)

        def to(self, device):
            self.moved_to = device

    encoder = Movable()
    move_encoder(encoder, "meta")
    assert encoder.moved_to == "meta" and encoder.tensor.device.type == "cpu"   # it moved itself, nothing else did


def test_entry_point_named_like_a_builtin_is_ignored_with_a_warning(monkeypatch, random_dcid):
    clash = EntryPoint(name="dcid", value=ENCODER, group="cmg_eval.encoders")
    other = EntryPoint(name="mine", value=ENCODER, group="cmg_eval.encoders")
    monkeypatch.setattr("cmg_eval.encoders.loading.entry_points", lambda group: [clash, other])
    listing = cli("ls", "encoders")
    assert listing.exit_code == 0
    warning = (f"entry point 'dcid' ({ENCODER}) of group cmg_eval.encoders is ignored: 'dcid' is a built-in "
               f"encoder; register yours under another name")
    assert warning in listing.stderr and "'mine'" not in listing.stderr
    assert isinstance(load_model(str(random_dcid)).encoder, DcidEncoder)   # the built-in still reads dcid files
