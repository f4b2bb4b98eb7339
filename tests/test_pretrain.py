"""`cmg-eval pretrain`: every method trains a few steps, writes a loadable checkpoint, and resumes."""

import json
import re

import numpy as np
import pytest
import torch

from cmg_eval.data.synth import vggsound40k
from cmg_eval.data.synth.world import World
from cmg_eval.encoders.base import example_inputs
from cmg_eval.encoders.loading import load_checkpoint, load_model
from cmg_eval.registry import methods
from cmg_eval.train.data import load_pretrain_set
from conftest import cli

SMALL = ["hidden=16", "ff_dim=16", "n_heads=2", "se_hidden=4", "video_output_dim=8", "audio_output_dim=8",
         "text_output_dim=8", "text_lstm_hidden=4", "n_embeddings=24", "batch_size=4", "mi_iters=1", "log_every=1"]
METHODS = ["dcid", "cmcm", "srcid", "dcid-fsq", "dcid-rvq2", "dcid-rvq3", "dcid-rvq4"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")



def pretrain(root, out, method="dcid", *settings):
    args = ["pretrain", method, "--data-root", root, "--out", out]
    for setting in [*SMALL, *settings]:
        args += ["--set", setting]
    return cli(*args)


def test_release_layout(pretrain_root):
    base = pretrain_root / "vggsound40k"
    names = (base / "data" / "VggsoundAVEL40kCategories.txt").read_text().splitlines()
    assert len(names) == 141 and names[:2] == ["Church bell", "Male speech"]
    rows = (base / "data" / "vggsound-avel40k.csv").read_text().splitlines()
    assert rows[0] == "category,video_id,split" and len(rows) == 25
    assert (base / "data" / "vggsoundCategories2Prompts.csv").read_text().startswith("label,prompt\n")
    dataset = load_pretrain_set(pretrain_root)
    batch = dataset.batch(np.arange(3))
    assert batch["video"].shape == (3, 10, 7, 7, 512) and batch["audio"].shape == (3, 10, 128)
    assert batch["text"].shape == (3, 10, 768) and batch["text"].dtype == torch.float32
    assert all(len(i) == 11 for i in dataset.ids)


def test_full_size_is_written_only_on_request(tmp_path, monkeypatch):
    monkeypatch.delenv(vggsound40k.FULL_ENV, raising=False)
    written = vggsound40k.write(tmp_path, World(0), "full", np.random.default_rng(0))
    assert written["clips"] == 0 and "GB" in written["skipped"] and not (tmp_path / "vggsound40k").exists()


@pytest.mark.parametrize("method", METHODS)
def test_each_method_trains_and_evaluates(pretrain_root, tmp_path, method):
    out = tmp_path / f"{method}.pt"
    result = pretrain(pretrain_root, out, method, "steps=2")
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(out)
    assert ckpt["method"] == method and ckpt["preset"] == "tiny" and ckpt["total_step"] == 2 and ckpt["finished"]
    assert ckpt["config"]["hidden"] == 16 and ckpt["settings"]["batch_size"] == 4 and ckpt["seed"] == 43
    assert len(ckpt["data"]["manifest_hash"]) == 64 and ckpt["data"]["clips"] == 24
    assert ckpt["Encoder_parameters"]["video_self_att.affine_matrix.weight"].dtype == torch.float32
    model = load_model(str(out))
    assert model.method == method
    out_audio = model.encoder.encode("audio", example_inputs("audio", batch=2, steps=10))
    assert out_audio.shape == (2, 10, model.encoder.output_dim(model.readout))
    assert model.encoder.encode("text", example_inputs("text", batch=2)).shape[0] == 2


@pytest.mark.parametrize("preset", ["tiny", "paper"])
def test_quantizer_variants_share_dcids_objective(preset):
    """FSQ, RVQ and SRCID differ from DCID by their quantizer (or second layer), not by losses or steps."""
    from cmg_eval.train.layer import TERMS
    from cmg_eval.train.presets import resolve_settings

    keys = [f"{term}_weight" for term in TERMS] + ["steps", "epochs", "batch_size", "lr", "beta", "commit_cross",
                                                  "cmcm_temperature"]
    dcid = resolve_settings(preset, methods.get("dcid").defaults, ())
    for name in ["dcid-fsq", "dcid-rvq2", "dcid-rvq3", "dcid-rvq4", "srcid"]:
        settings = resolve_settings(preset, methods.get(name).defaults, ())
        assert {k: settings[k] for k in keys} == {k: dcid[k] for k in keys}, name


def test_srcid_switches_layer2_on(pretrain_root, tmp_path):
    early, late = tmp_path / "early.pt", tmp_path / "late.pt"
    switch = ["layer2_min_step=2", "layer2_max_step=3", "layer2_mi_threshold=1e9", "layer2_patience=1"]
    assert pretrain(pretrain_root, early, "srcid", "steps=2", *switch).exit_code == 0
    result = pretrain(pretrain_root, late, "srcid", "steps=5", *switch)
    assert result.exit_code == 0, result.output
    assert "layer 2 from step 2" in result.output
    before, after = load_checkpoint(early), load_checkpoint(late)
    assert before["layer2_start_step"] == 2 and before["settings"]["layer2_min_step"] == 2
    assert 0 < after["layer2_start_step"] < after["total_step"]
    assert "within" in after["layer2_switch"]["reason"]
    key = "audio_self_att_2.affine_matrix.weight"
    assert not torch.equal(before["Encoder_parameters"][key], after["Encoder_parameters"][key])
    assert "Decoder_2_parameters" in after and "Video_mi_net_2_parameters" in after
    layer1, concat = load_model(f"srcid@layer1={late}"), load_model(f"srcid={late}")
    assert layer1.label == "srcid@layer1" and layer1.readout == "layer1" and concat.readout == "concat"
    video = example_inputs("video", batch=2, steps=10)
    first, both = layer1.encoder.encode("video", video, "layer1"), concat.encoder.encode("video", video)
    assert both.shape[-1] == 2 * first.shape[-1] and torch.equal(both[..., :16], first)
    assert layer1.sha256 == concat.sha256 and layer1.identity != concat.identity


@pytest.mark.parametrize("settings, shared", [((), False), (("shared_codebook=true",), True)])
def test_srcid_codebook_layouts(pretrain_root, tmp_path, settings, shared):
    """Default: one codebook per layer, each updated by its own layer; the ablation: one for both."""
    out = tmp_path / "srcid.pt"
    switch = ["layer2_min_step=1", "layer2_max_step=1"]
    assert pretrain(pretrain_root, out, "srcid", "steps=3", *switch, *settings).exit_code == 0
    ckpt = load_checkpoint(out)
    state = ckpt["Encoder_parameters"]
    assert tuple(state["Cross_quantizer.embedding"].shape) == ((24, 16) if shared else (2, 24, 16))
    assert ckpt["config"]["shared_codebook"] is shared and ckpt["settings"]["shared_codebook"] is shared
    if not shared:  # layer 2 ran two steps, layer 1 three: their EMA counts are separate and both moved
        counts = state["Cross_quantizer.ema_count"]
        assert counts[0].sum() > 0 and counts[1].sum() > 0 and not torch.equal(counts[0], counts[1])
    model = load_model(str(out))
    assert model.encoder.shared_codebook is shared
    codes = model.encoder.encode_indices("audio", example_inputs("audio", batch=2, steps=10))
    assert codes.shape == (2, 10, 2) and int(codes.max()) < 24


def test_srcid_falls_back_to_max_step(pretrain_root, tmp_path):
    out = tmp_path / "srcid.pt"
    switch = ["layer2_min_step=1", "layer2_max_step=2", "layer2_mi_threshold=0", "layer2_patience=100"]
    assert pretrain(pretrain_root, out, "srcid", "steps=3", *switch).exit_code == 0
    ckpt = load_checkpoint(out)
    assert ckpt["layer2_start_step"] == 2 and "max_step" in ckpt["layer2_switch"]["reason"]


def test_resume_continues_exactly(pretrain_root, tmp_path):
    resumed, fresh = tmp_path / "resumed.pt", tmp_path / "fresh.pt"
    assert pretrain(pretrain_root, resumed, "srcid", "steps=2", "layer2_max_step=2").exit_code == 0
    assert pretrain(pretrain_root, resumed, "srcid", "steps=4", "layer2_max_step=2").exit_code == 0
    assert pretrain(pretrain_root, fresh, "srcid", "steps=4", "layer2_max_step=2").exit_code == 0
    a, b = load_checkpoint(resumed), load_checkpoint(fresh)
    assert a["total_step"] == b["total_step"] == 4
    for part in ("Encoder_parameters", "Decoder_2_parameters", "Video_mi_net_parameters"):
        for key, value in b[part].items():
            torch.testing.assert_close(a[part][key], value, rtol=1e-5, atol=1e-6, msg=f"{part} {key}")


def test_finished_checkpoint_is_left_alone(pretrain_root, tmp_path):
    out = tmp_path / "dcid.pt"
    assert pretrain(pretrain_root, out, "dcid", "steps=1").exit_code == 0
    stamp = out.stat().st_mtime_ns
    result = pretrain(pretrain_root, out, "dcid", "steps=1")
    assert result.exit_code == 0 and out.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("args, message", [
    (["dcid", "steps=1", "lr=0.5"], "was trained with other settings (lr)"),
    (["cmcm", "steps=1"], "holds a 'dcid' (tiny) checkpoint, not 'cmcm'"),
])
def test_resume_refuses_other_runs(pretrain_root, tmp_path, args, message):
    out = tmp_path / "dcid.pt"
    assert pretrain(pretrain_root, out, "dcid", "steps=1").exit_code == 0
    result = pretrain(pretrain_root, out, *args)
    assert result.exit_code == 1 and message in result.output and str(out) in result.output


@pytest.mark.parametrize("args, message", [
    (["pretrain", "vq-nothing", "--out", "x.pt"], "unknown method 'vq-nothing'"),
    (["pretrain", "dcid", "--out", "x.pt", "--set", "learning_rate=1"], "unknown setting 'learning_rate'"),
    (["pretrain", "dcid", "--out", "x.pt", "--set", "steps=many"], "'many' is not a valid value"),
])
def test_bad_requests_are_one_line_errors(pretrain_root, tmp_path, args, message):
    result = cli(*args, "--data-root", pretrain_root)
    assert result.exit_code == 1 and message in result.output and len(result.output.strip().splitlines()) == 1


def test_missing_pretraining_set_names_the_file(tmp_path):
    result = cli("pretrain", "dcid", "--data-root", tmp_path, "--out", tmp_path / "x.pt")
    assert result.exit_code == 1 and "vggsound-avel40k.csv: missing file" in result.output


def test_missing_clip_names_the_zip(pretrain_root, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(pretrain_root, root)
    victim = sorted((root / "vggsound40k" / "feature" / "video" / "zip").iterdir())[0]
    victim.unlink()
    result = cli("pretrain", "dcid", "--data-root", root, "--out", tmp_path / "x.pt")
    assert result.exit_code == 1 and f"{victim.name}: missing feature file" in result.output


def test_methods_are_listed():
    assert set(METHODS) <= set(methods.names())
    result = cli("ls", "methods")
    assert result.exit_code == 0 and "srcid" in result.output and "dcid-rvq3" in result.output


def test_codebook_command(pretrain_root, tmp_path):
    out = tmp_path / "srcid.pt"
    assert pretrain(pretrain_root, out, "srcid", "steps=2", "layer2_max_step=1").exit_code == 0
    result = cli("codebook", "--ckpt", out, "--data-root", pretrain_root, "--json", tmp_path / "cb.json")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "cb.json").read_text())
    assert document["n_items"] == 24 and [c["column"] for c in document["columns"]] == [1, 2]
    assert set(document["columns"][0]["modalities"]) == {"video", "audio", "text"}
    assert "video-audio" in document["columns"][0]["agreement"]


def test_plain_progress_lines_when_stderr_is_not_a_terminal(pretrain_root, tmp_path, monkeypatch):
    """In a batch job (stderr a file, as under CliRunner) pretraining prints step, loss terms, elapsed and ETA."""
    monkeypatch.setenv("CMG_EVAL_PROGRESS_SECONDS", "0")   # a line at every logged step
    result = pretrain(pretrain_root, tmp_path / "x.pt", "dcid", "steps=3", "log_every=1")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("pretrain dcid (tiny) step: ")]
    done = ["0/3 (0%)", "1/3 (33%)", "2/3 (67%)", "3/3 (100%)"]   # the start, then every logged step
    assert [line.split(": ", 1)[1].split(",")[0] for line in lines] == done
    assert all(re.search(r"elapsed \d+:\d\d:\d\d, ETA (\d+:\d\d:\d\d|\?), .*recon \S+", line) for line in lines[1:])
