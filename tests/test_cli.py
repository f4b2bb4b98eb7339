"""check-model, ckpt init, embed, ls, validate, and the one-line errors of bad input."""

import json
import re
import shutil

import h5py
import numpy as np
import pytest
import torch

from cmg_eval.encoders.base import example_inputs
from cmg_eval.encoders.loading import load_checkpoint
from conftest import cli, write_micro_ave


def test_ckpt_init_writes_public_layout_float64(random_dcid):
    ckpt = load_checkpoint(random_dcid)
    assert ckpt["method"] == "dcid" and ckpt["epoch"] == -1
    for key in ("Encoder_parameters", "Text_ar_lstm_parameters"):
        assert all(v.dtype == torch.float64 for v in ckpt[key].values())


def test_check_model_passes_on_random_init(random_dcid):
    result = cli("check-model", "--ckpt", random_dcid)
    assert result.exit_code == 0, result.output
    assert "all" in result.output and "FAIL" not in result.output


@pytest.mark.parametrize("factory, check", [("buffer_mutating", "parameters and buffers unchanged"),
                                            ("wrong_shape", "shape (B,T,D)")])
def test_check_model_names_the_failed_check(user_weights, factory, check):
    result = cli("check-model", "--ckpt", user_weights, "--encoder", f"user_models:{factory}")
    assert result.exit_code == 1
    assert f"FAILED {check}" in result.output


def test_check_model_passes_on_good_user_encoder(user_weights):
    assert cli("check-model", "--ckpt", user_weights, "--encoder", "user_models:projection").exit_code == 0


def test_embed_returns_codebook_rows_and_indices(public_dcid, tmp_path):
    audio = example_inputs("audio", batch=4).numpy()
    np.savez(tmp_path / "in.npz", audio=audio)
    result = cli("embed", "--ckpt", public_dcid, "--modality", "audio", "--in", tmp_path / "in.npz",
                 "--out", tmp_path / "out.npz")
    assert result.exit_code == 0, result.output
    out = np.load(tmp_path / "out.npz")
    codebook = load_checkpoint(public_dcid)["Encoder_parameters"]["Cross_quantizer.embedding"].numpy()
    assert out["vq"].shape == out["pre_vq"].shape == (4, 10, 256) and out["indices"].shape == (4, 10, 1)
    np.testing.assert_array_equal(out["vq"], codebook[out["indices"][..., 0]].astype(np.float32))
    # each index is the nearest codeword of the pre-quantization feature (float64 distances)
    distances = ((out["pre_vq"].astype(np.float64)[..., None, :] - codebook) ** 2).sum(-1)
    np.testing.assert_array_equal(out["indices"][..., 0], distances.argmin(-1))


def first_column(output: str) -> list[str]:
    """The names in the first column of a printed table (continuation lines of wrapped rows left out)."""
    return [m.group(1) for m in re.finditer(r"^[│|] (\S+)\s+[│|]", output, re.MULTILINE) if m.group(1) != "name"]


def test_ls_lists_exactly_the_registered_names():
    tasks = cli("ls", "tasks")
    assert tasks.exit_code == 0
    assert first_column(tasks.output) == sorted(["ave", "avvp", "ave_avvp", "ucf_vgg", "msrvtt_vt", "mscoco_vt",
                                                 "clotho_at", "ave_os", "ucf51_os", "ucf_vgg_os"])
    encoders = cli("ls", "encoders")
    assert first_column(encoders.output) == sorted(["cmcm", "dcid", "dcid-fsq", "dcid-rvq", "dcid-rvq2", "dcid-rvq3",
                                                    "dcid-rvq4", "fcid", "micu", "oracle", "srcid"])


@pytest.mark.parametrize("names", [["ave", "avvp"], ["ave,avvp"], ["ave,", "avvp"]])
def test_validate_takes_comma_and_space_lists(micro_data, names):
    """The micro folder holds AVE only: ave passes, avvp is refused, whichever way the two are listed."""
    result = cli("validate", "--data-root", micro_data, *names)
    assert result.exit_code == 1
    verdicts = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in result.output.splitlines() if ": " in line}
    assert verdicts["ave"].startswith("ok") and "AVVP_Categories.txt: missing file" in verdicts["avvp"]
    assert "1 of 2 tasks" in result.output
    assert cli("validate", "--data-root", micro_data, "ave").exit_code == 0


# ------------------------------------------------------------------ bad input


def _visual(root):
    return root / "AVE-ECCV18-master" / "data" / "visual_feature.h5"


def _missing_file(root):
    _visual(root).unlink()
    return "visual_feature.h5: missing file"


def _wrong_key(root):
    with h5py.File(_visual(root), "r+") as f:
        f.move("avadataset", "features")
    return "visual_feature.h5: no dataset 'avadataset' (found: features)"


def _wrong_shape(root):
    with h5py.File(root / "AVE-ECCV18-master" / "data" / "audio_feature.h5", "r+") as f:
        data = f["avadataset"][()]
        del f["avadataset"]
        f.create_dataset("avadataset", data=data[:, :, :64])
    return "audio_feature.h5: dataset 'avadataset' has shape (80, 10, 64), expected (N, 10, 128)"


def _truncated(root):
    with open(_visual(root), "r+b") as handle:
        handle.truncate(4096)
    return "visual_feature.h5: not a readable HDF5 file"


def _nan_features(root):
    with h5py.File(root / "AVE-ECCV18-master" / "data" / "audio_feature.h5", "r+") as f:
        f["avadataset"][3, 2, 5] = np.nan
    return "audio_feature.h5: non-finite audio features"


@pytest.mark.parametrize("damage", [_missing_file, _wrong_key, _wrong_shape, _truncated, _nan_features])
def test_bad_data_is_one_line_error_and_no_report(tmp_path, micro_data, damage):
    root = tmp_path / "data"
    shutil.copytree(micro_data, root)
    expected = damage(root)
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("{}")  # a stale report from an earlier run
    result = cli("run", "ave", "--ckpt", f"oracle={write_oracle(tmp_path)}", "--data-root", root, "--out", out,
                 "--cache-dir", tmp_path / "cache", "--set", "epochs=1", "--seeds", "1")
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.output
    assert not (out / "results.json").exists()


def write_oracle(tmp_path):
    from cmg_eval.data.synth.oracle import write_oracle as write
    from cmg_eval.data.synth.world import World

    path = tmp_path / "oracle.pt"
    if not path.exists():
        write(World(0), path)
    return path


def test_unknown_task(tmp_path, micro_data):
    result = cli("run", "ave,nosuchtask", "--ckpt", f"x={write_oracle(tmp_path)}", "--data-root", micro_data,
                 "--out", tmp_path / "out")
    assert result.exit_code != 0
    assert "unknown task 'nosuchtask' (known: ave" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.parametrize("content, expected", [(b"not a checkpoint", "not a loadable checkpoint"),
                                               (None, "checkpoint file not found")])
def test_bad_checkpoint(tmp_path, micro_data, content, expected):
    path = tmp_path / "bad.pt"
    if content is not None:
        path.write_bytes(content)
    result = cli("run", "ave", "--ckpt", path, "--data-root", micro_data, "--out", tmp_path / "out")
    assert result.exit_code != 0 and expected in result.output and str(path) in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_pickle_checkpoint_is_refused(tmp_path, micro_data):
    class Payload:
        def __reduce__(self):
            return (print, ("executed",))

    path = tmp_path / "evil.pt"
    torch.save({"method": "oracle", "x": Payload()}, path)
    result = cli("check-model", "--ckpt", path)
    assert result.exit_code != 0 and "executed" not in result.output
    assert "weights_only=True" in result.output


# ------------------------------------------------------------------------------------------ --device


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
@pytest.mark.parametrize("command", ["run", "embed"])
def test_device_cuda_without_gpu_is_one_line_error(tmp_path, micro_data, command):
    out = tmp_path / "out"
    if command == "run":
        args = ["run", "ave", "--ckpt", f"oracle={write_oracle(tmp_path)}", "--data-root", micro_data, "--out", out,
                "--cache-dir", tmp_path / "cache"]
    else:
        args = ["embed", "--ckpt", tmp_path / "x.pt", "--modality", "audio", "--in", tmp_path / "in.npz", "--out", out]
    result = cli(*args, "--device", "cuda")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: --device cuda: torch sees no GPU (torch.cuda.is_available() is False); use --device cpu"]
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_device_cpu_is_the_default_path(tmp_path, micro_data):
    """`--device cpu` is what runs without the option: same numbers, job fingerprints and cache entries."""
    from cmg_eval.runner import job_fingerprints

    oracle = write_oracle(tmp_path)
    documents = []
    for name, extra in (("default", []), ("cpu", ["--device", "cpu"])):
        result = cli("run", "ave", "--ckpt", f"oracle={oracle}", "--data-root", micro_data, "--out", tmp_path / name,
                     "--cache-dir", tmp_path / "cache", "--set", "epochs=2", "--seeds", "1", "--bootstrap", "0", *extra)
        assert result.exit_code == 0, result.output
        documents.append(json.loads((tmp_path / name / "results.json").read_text()))
    default, cpu = documents
    assert default["meta"]["device"] == cpu["meta"]["device"] == "cpu"
    assert [r["value"] for r in default["results"]] == [r["value"] for r in cpu["results"]]
    assert cpu["meta"]["cache"]["misses"] == 0  # the second run reused the first one's embeddings

    class Job:
        id, model, task, source, targets, seed = "j", "m", "t", "audio", ["video"], 43

    class Task:
        version = 1

    parts = {"models": [{"label": "m", "identity": "x"}], "tasks": {"t": Task()}, "settings": {"t": {}},
             "protocol": "clean", "data_hash": "h", "allow_nonfinite": False}
    before = job_fingerprints(parts, [Job()])  # as before --device existed
    assert job_fingerprints({**parts, "device": "cpu"}, [Job()]) == before
    assert job_fingerprints({**parts, "device": "cuda"}, [Job()]) != before


def test_device_moves_keep_numbers(random_dcid, tmp_path):
    """The code that moves encoders, heads and batches to another device, run with a device object that is
    not `cpu` but lives on it (`cpu:0`): the numbers are the CPU ones, the cache entry is its own."""
    from rich.progress import Progress

    from cmg_eval.cache import EmbeddingCache
    from cmg_eval.embedder import Embedder
    from cmg_eval.encoders.loading import load_model
    from cmg_eval.heads import SemanticDecoder, predict, seeded_head, train
    from cmg_eval.task import FeatureSource

    array = example_inputs("audio", batch=6).numpy()
    source = FeatureSource(key="k", modality="audio", n_items=6, part="test", where="memory",
                           batches=lambda size: (array[i:i + size] for i in range(0, 6, size)))
    outputs = []
    for device in ("cpu", "cpu:0"):
        cache = EmbeddingCache(tmp_path / "cache")
        embedder = Embedder(load_model(str(random_dcid)), cache, 4, Progress(disable=True), device=device)
        outputs.append(embedder(source))
        assert cache.misses == 1
    np.testing.assert_array_equal(*outputs)

    x = np.random.default_rng(0).normal(size=(20, 10, 8)).astype(np.float32)
    y = np.arange(20) % 3
    settings = {"lr": 1e-2, "milestones": [1], "gamma": 0.5, "batch_size": 8, "epochs": 2, "clip_grad": 1.0}
    heads = []
    for device in ("cpu", "cpu:0"):
        head = seeded_head(lambda: SemanticDecoder(8, 3), 0)
        train(head, x, y, torch.nn.functional.cross_entropy, settings, 0, lambda epoch, model: None, device=device)
        heads.append(predict(head, x))
    np.testing.assert_array_equal(*heads)
