"""The fault matrix: each bad input ends in one line naming it, a non-zero exit and no results.json;
untrusted files never run code."""

import json
import pickle
import re
import shutil
import zipfile

import h5py
import numpy as np
import pytest
import torch

from cmg_eval.data.zipfeat import read_feature_zip, write_feature_zip
from cmg_eval.errors import CmgError
from conftest import CreatesFile, cli

FAST = ["--set", "epochs=1", "--seeds", "1", "--bootstrap", "0"]


def run_ave(root, out, *ckpt_args, extra=()):
    return cli("run", "ave", *ckpt_args, "--data-root", root, "--out", out, "--cache-dir", out.parent / "cache",
               *FAST, *extra)


def assert_refused(result, out, expected):
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.output
    assert not (out / "results.json").exists()


@pytest.fixture
def data_copy(tmp_path, micro_data):
    root = tmp_path / "data"
    shutil.copytree(micro_data, root)
    return root


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    from cmg_eval.data.synth.oracle import write_oracle
    from cmg_eval.data.synth.world import World

    path = tmp_path_factory.mktemp("oracle") / "oracle.pt"
    write_oracle(World(0), path)
    return f"--ckpt=oracle={path}"


def test_checkpoint_that_would_create_a_file(tmp_path, micro_data):
    victim = tmp_path / "created-by-pickle"
    path = tmp_path / "evil.pt"
    torch.save({"method": "oracle", "payload": CreatesFile(victim)}, path)
    result = run_ave(micro_data, tmp_path / "out", f"--ckpt={path}")
    assert_refused(result, tmp_path / "out", f"{path}: not a loadable checkpoint")
    assert not victim.exists()


def test_feature_zip_that_would_create_a_file(tmp_path):
    victim = tmp_path / "created-by-pickle"
    path = tmp_path / "clip.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("clip.pkl", pickle.dumps(CreatesFile(victim)))
    with pytest.raises(CmgError, match="clip.zip:clip.pkl: not a pickled numpy array"):
        read_feature_zip(path)
    assert not victim.exists()


@pytest.mark.parametrize("member", ["../escape.pkl", "/abs/escape.pkl"])
def test_feature_zip_member_paths_are_refused(tmp_path, member):
    path = tmp_path / "clip.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, pickle.dumps(np.zeros(3)))
    with pytest.raises(CmgError, match="refused member path"):
        read_feature_zip(path)


def test_feature_zip_round_trip_and_non_array(tmp_path):
    array = np.random.default_rng(0).random((4, 128)).astype(np.float32)
    write_feature_zip(tmp_path / "a.zip", array)
    np.testing.assert_array_equal(read_feature_zip(tmp_path / "a.zip"), array)
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as archive:
        archive.writestr("b.pkl", pickle.dumps({"not": "an array"}))
    with pytest.raises(CmgError, match="b.zip:b.pkl: pickle holds dict, expected a numeric numpy array"):
        read_feature_zip(tmp_path / "b.zip")


def _string_labels(root):
    path = root / "AVE-ECCV18-master/data/labels.h5"
    with h5py.File(path, "r+") as f:
        shape = f["avadataset"].shape
        del f["avadataset"]
        f.create_dataset("avadataset", data=np.full(shape, b"x", dtype="S1"))
    return "labels.h5: dataset 'avadataset' has dtype |S1, expected numbers"


def _empty_split(root):
    with h5py.File(root / "AVE-ECCV18-master/data/test_order.h5", "w") as f:
        f.create_dataset("order", data=np.zeros(0, np.int64))
    return "test_order.h5: dataset 'order' is empty"


def _order_past_array(root):
    with h5py.File(root / "AVE-ECCV18-master/data/train_order.h5", "w") as f:
        f.create_dataset("order", data=np.array([0, 1, 5000]))
    return "train_order.h5: dataset 'order' has index 5000, expected 0..79"


def _fewer_clips(root):
    path = root / "AVE-ECCV18-master/data/audio_feature.h5"
    with h5py.File(path, "r+") as f:
        data = f["avadataset"][:70]
        del f["avadataset"]
        f.create_dataset("avadataset", data=data)
    return "audio_feature.h5: 70 clips, expected 80"


@pytest.mark.parametrize("damage", [_string_labels, _empty_split, _order_past_array, _fewer_clips])
def test_malformed_data(tmp_path, data_copy, oracle, damage):
    expected = damage(data_copy)
    assert_refused(run_ave(data_copy, tmp_path / "out", oracle), tmp_path / "out", expected)


def test_nonfinite_features_masked_on_request(tmp_path, data_copy, oracle):
    with h5py.File(data_copy / "AVE-ECCV18-master/data/audio_feature.h5", "r+") as f:
        f["avadataset"][3, 2, 5] = np.inf
    refused = run_ave(data_copy, tmp_path / "refused", oracle)
    assert_refused(refused, tmp_path / "refused", "non-finite audio features")
    masked = run_ave(data_copy, tmp_path / "masked", oracle, extra=["--allow-nonfinite"])
    assert masked.exit_code == 0, masked.output
    meta = json.loads((tmp_path / "masked" / "results.json").read_text())["meta"]
    assert meta["allow_nonfinite"] and sum(meta["nonfinite_masked_items"].values()) == 1


# Which modality is encoded first is the task's business: the line names it and both shapes.
@pytest.mark.parametrize("factory, expected", [("wrong_shape", "output shape ("),
                                               ("non_finite", "non-finite")])
def test_encoder_with_bad_output(tmp_path, micro_data, user_weights, factory, expected):
    result = run_ave(micro_data, tmp_path / "out", f"--ckpt=mine={user_weights}",
                     extra=["--encoder", f"user_models:{factory}"])
    assert_refused(result, tmp_path / "out", expected)
    if factory == "wrong_shape":
        assert re.search(r"'mine': (audio|video) output shape \((\d+), 1, 16\), expected \(\2, 10, 16\)", result.output)


def test_unknown_direction(tmp_path, micro_data, oracle):
    result = run_ave(micro_data, tmp_path / "out", oracle, extra=["--directions", "V->T"])
    assert_refused(result, tmp_path / "out", "unknown direction 'V->T'")


def test_directions_filter(tmp_path, micro_data, oracle):
    result = run_ave(micro_data, tmp_path / "out", oracle, extra=["--directions", "A->V"])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    assert {r["direction"] for r in rows} == {"A->V"}


def test_unknown_metric_in_compare(tmp_path, micro_data, oracle):
    assert run_ave(micro_data, tmp_path / "out", oracle).exit_code == 0
    results = tmp_path / "out" / "results.json"
    result = cli("compare", results, results, "--metric", "nope")
    assert result.exit_code != 0 and "--metric 'nope': no such metric" in result.output
    assert cli("compare", results, results, "--metric", "macro_f1").exit_code == 0


def test_validate_lists_every_problem(tmp_path, data_copy):
    (data_copy / "AVE-ECCV18-master/data/labels.h5").unlink()
    result = cli("validate", "--data-root", data_copy, "ave")
    assert result.exit_code == 1 and "labels.h5: missing file" in result.output
