"""Hostile and careless input, round 2: nothing written outside --out, no silently wrong numbers from malformed
data or broken models, reports that escape what they render, one-line errors for careless settings."""

import csv
import errno
import io
import json
import os
import re
import shutil

import h5py
import numpy as np
import pytest

from conftest import cli

FAST = ["--set", "epochs=1", "--seeds", "1", "--bootstrap", "0"]


def run_ave(root, out, *ckpt_args, extra=()):
    return cli("run", "ave", *ckpt_args, "--data-root", root, "--out", out, "--cache-dir", out.parent / "cache",
               *FAST, *extra)


def one_line_error(result, expected):
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.output


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    from cmg_eval.data.synth.oracle import write_oracle
    from cmg_eval.data.synth.world import World

    path = tmp_path_factory.mktemp("oracle") / "oracle.pt"
    write_oracle(World(0), path)
    return path


# ------------------------------------------------------------------------------------------ 3: nothing outside --out


@pytest.mark.parametrize("label", ["../../escaped", "ABSOLUTE", "a/b"])
def test_ckpt_label_never_names_a_path(tmp_path, micro_data, oracle, label):
    label = str(tmp_path / "escaped") if label == "ABSOLUTE" else label
    out = tmp_path / "deep" / "out"
    result = run_ave(micro_data, out, f"--ckpt={label}={oracle}")
    one_line_error(result, f"label {label.partition('@')[0]!r} is not a safe folder name")
    assert not (tmp_path / "escaped").exists() and not (out / "predictions").exists()


@pytest.mark.parametrize("first, second", [("Model", "model"), ("a@x:y", "a@x_y")])
def test_labels_sharing_a_folder_are_refused_up_front(tmp_path, micro_data, oracle, first, second):
    result = run_ave(micro_data, tmp_path / "out", f"--ckpt={first}={oracle}", f"--ckpt={second}={oracle}")
    one_line_error(result, f"labels {first!r} and {second!r} would share one folder under --out")
    assert not (tmp_path / "out" / "jobs").exists()


def test_label_from_a_file_name_is_made_safe(tmp_path, micro_data, oracle):
    odd = tmp_path / "...pt"          # stem '..'
    shutil.copy(oracle, odd)
    result = run_ave(micro_data, tmp_path / "out", f"--ckpt={odd}")
    assert result.exit_code == 0, result.output
    assert [m["label"] for m in json.loads((tmp_path / "out" / "results.json").read_text())["meta"]["models"]] == \
        ["model"]
    assert sorted(p.name for p in (tmp_path / "out" / "predictions").iterdir()) == ["model"]


# ------------------------------------------------------------------------------------------ 6: reports escape what they render

HOSTILE = '=cmd|"/C calc"!A0 \\textbf{\\input{/etc/passwd}} ^~ [/bold] $\\notacommand$ <script>x</script> | `y`'


@pytest.fixture(scope="module")
def ave_run(tmp_path_factory, micro_data, oracle):
    base = tmp_path_factory.mktemp("ave-run")
    result = run_ave(micro_data, base / "run", f"--ckpt=oracle={oracle}")
    assert result.exit_code == 0, result.output
    return base / "run"


def hostile_copy(run, folder):
    """The run's results.json with its label, task name and a class name replaced by strings that are markup in
    every output format (a document anyone could hand to `cmg-eval report` or `compare`)."""
    folder.mkdir()
    text = (run / "results.json").read_text().replace('"oracle"', json.dumps(HOSTILE)).replace(
        '"ave"', json.dumps("ave$_[/red]"))
    document = json.loads(text)
    document["meta"]["tasks"]["ave$_[/red]"]["about"] = {"class": HOSTILE}
    (folder / "results.json").write_text(json.dumps(document))
    return folder


def test_reports_escape_every_user_string(ave_run, tmp_path):
    run = hostile_copy(ave_run, tmp_path / "hostile")
    result = cli("report", run)
    assert result.exit_code == 0, result.output
    assert "[/bold]" in result.output   # rich printed the label as text
    latex = (run / "table.tex").read_text()
    assert "\\input{" not in latex and "\\textbf{\\input" not in latex and "$\\notacommand$" not in latex
    assert "\\textbackslash{}input\\{/etc/passwd\\}" in latex and "\\textasciicircum{}\\textasciitilde{}" in latex
    rows = list(csv.DictReader(io.StringIO((run / "table.csv").read_text())))
    assert {row["model"] for row in rows} == {"'" + HOSTILE}
    page = (run / "index.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    markdown = (run / "table.md").read_text()
    assert not re.search(r"(?<!\\)<script>", markdown) and "\\<script>" in markdown
    assert "\\[/bold\\]" in markdown and "\\|" in markdown
    assert cli("compare", run / "results.json", run / "results.json").exit_code == 0


def test_latex_escape_is_one_pass():
    from cmg_eval.report.text import latex_escape

    assert latex_escape("a\\b{c}") == "a\\textbackslash{}b\\{c\\}"
    assert latex_escape("V->A ± 1†_%&#") == "V$\\to$A $\\pm$ 1$^\\dagger$\\_\\%\\&\\#"


def test_a_failing_renderer_keeps_the_finished_run(tmp_path, micro_data, oracle, monkeypatch):
    def broken(document):
        raise RuntimeError("renderer bug")

    monkeypatch.setattr("cmg_eval.report.latex_report", broken)
    out = tmp_path / "out"
    result = run_ave(micro_data, out, f"--ckpt=oracle={oracle}")
    one_line_error(result, "results.json is complete, but 1 report file(s) could not be rendered: table.tex "
                           "(RuntimeError: renderer bug)")
    assert json.loads((out / "results.json").read_text())["results"]
    assert {p.name for p in out.iterdir()} >= {"results.json", "table.md", "table.csv", "index.html"}
    assert not (out / "table.tex").exists()


def test_validate_prints_a_class_name_holding_markup(tmp_path, micro_clip_data):
    lists = tmp_path / "data" / "AVVP" / "data"
    shutil.copytree(micro_clip_data / "AVVP" / "data", lists)
    names = (lists / "AVVP_Categories.txt").read_text().splitlines()
    (lists / "AVVP_Categories.txt").write_text("\n".join(["[/red]", "[/red]", *names[2:]]) + "\n")
    result = cli("validate", "--data-root", tmp_path / "data", "avvp")
    assert result.exit_code == 1
    assert "avvp: " in result.output and "class '[/red]' listed twice" in result.output


# ------------------------------------------------------------------------------------------ 4: malformed data refused

AVE = "AVE-ECCV18-master/data"


@pytest.fixture
def data_copy(tmp_path, micro_data):
    root = tmp_path / "data"
    shutil.copytree(micro_data, root)
    return root


def replace_dataset(path, key, data=None, **options):
    with h5py.File(path, "r+") as handle:
        del handle[key]
        if data is None:
            handle.create_dataset(key, **options)
        else:
            handle[key] = data


def _nan_label(root):
    with h5py.File(root / AVE / "labels.h5", "r+") as handle:
        handle["avadataset"][3, 4, 0] = np.nan
    return "labels.h5: clip 3 segment 4 holds nan, expected AVE segment labels of 0 and 1"


def _no_events(root):
    with h5py.File(root / AVE / "labels.h5", "r+") as handle:
        labels = handle["avadataset"][()]
        labels[:] = 0
        labels[:, :, -1] = 1       # every clip background only: argmax read them all as class 0
        handle["avadataset"][...] = labels
    return "labels.h5: clip 0 has no event segment (80 of 80 clips are background only)"


def _boolean_order(root):
    replace_dataset(root / AVE / "train_order.h5", "order", np.ones(48, bool))
    return "train_order.h5: dataset 'order' has dtype bool, expected integer clip indices"


def _float_order(root):
    replace_dataset(root / AVE / "val_order.h5", "order", np.arange(48, 64, dtype=np.float64))
    return "val_order.h5: dataset 'order' has dtype float64, expected integer clip indices"


def _virtual_features(root):
    path = root / AVE / "audio_feature.h5"
    layout = h5py.VirtualLayout(shape=(80, 10, 128), dtype="f4")
    layout[:] = h5py.VirtualSource(str(root / "gone.h5"), "avadataset", shape=(80, 10, 128))
    path.unlink()
    with h5py.File(path, "w") as handle:
        handle.create_virtual_dataset("avadataset", layout, fillvalue=0.5)   # the fill value would be read as data
    return "audio_feature.h5: dataset 'avadataset' is a virtual dataset, expected AVE audio features"


def _external_link(root):
    shutil.copy(root / AVE / "labels.h5", root / "elsewhere.h5")
    path = root / AVE / "labels.h5"
    path.unlink()
    with h5py.File(path, "w") as handle:
        handle["avadataset"] = h5py.ExternalLink(str(root / "elsewhere.h5"), "/avadataset")
    return "labels.h5: 'avadataset' is an external link to"


@pytest.mark.parametrize("damage", [_nan_label, _no_events, _boolean_order, _float_order, _virtual_features,
                                    _external_link])
def test_malformed_data_is_refused(tmp_path, data_copy, oracle, damage):
    expected = damage(data_copy)
    one_line_error(run_ave(data_copy, tmp_path / "out", f"--ckpt=oracle={oracle}"), expected)
    assert not (tmp_path / "out" / "results.json").exists()


def test_ave_avvp_labels_must_be_zero_or_one(tmp_path, micro_clip_data):
    root = tmp_path / "data"
    shutil.copytree(micro_clip_data, root, ignore=shutil.ignore_patterns("UCF101", "vggsound40k"))
    with h5py.File(root / "AVE_AVVP" / "ave_avvp_labels.h5", "r+") as handle:
        handle["avadataset"][:, 2, 1] = 0.5
    result = cli("validate", "--data-root", root, "ave_avvp")
    assert result.exit_code == 1 and "holds 0.5, expected segment labels of 0 and 1" in result.output


@pytest.mark.parametrize("clip_id", ["ABSOLUTE", "../outside/v_x", "sub\\v_x"])
def test_annotation_ids_cannot_leave_the_data_root(tmp_path, micro_clip_data, clip_id):
    root = tmp_path / "data"
    lists = root / "feature_extractor" / "feature_extractor"
    shutil.copytree(micro_clip_data / "feature_extractor", root / "feature_extractor")
    for folder in ("UCF101", "vggsound40k"):
        (root / folder).symlink_to(micro_clip_data / folder)
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(next((micro_clip_data / "UCF101/feature/video/zip").iterdir()), outside / "v_x.zip")
    clip_id = str(outside / "v_x") if clip_id == "ABSOLUTE" else clip_id
    csv_path = lists / "ucf2vggsound.csv"
    lines = csv_path.read_text().splitlines()
    lines[3] = f"{lines[3].split(',')[0]},{clip_id}"
    csv_path.write_text("\n".join(lines) + "\n")
    result = cli("validate", "--data-root", root, "ucf_vgg")
    assert result.exit_code == 1
    assert f"ucf2vggsound.csv: line 4 ({clip_id!r}): id {clip_id!r} is empty or holds a path separator" in \
        result.output.replace("\n", "")


def test_retrieval_item_ids_cannot_leave_the_data_root(tmp_path, tiny_data):
    from cmg_eval.errors import CmgError
    from cmg_eval.tasks.msrvtt_vt import MsrvttVideoText

    shutil.copytree(tiny_data / "MSRVTT", tmp_path / "MSRVTT")
    csv_path = tmp_path / "MSRVTT" / "msrvtt_1kA_test.csv"
    lines = csv_path.read_text().splitlines()
    lines[1] = "../../../escape," + lines[1].split(",", 1)[1]
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CmgError, match="item: id '../../../escape' is empty or holds a path separator"):
        MsrvttVideoText().load(tmp_path)


# ------------------------------------------------------------------------------------------ 7: careless settings and folders


@pytest.mark.parametrize("setting, expected", [
    ("lr=nan", "--set lr=nan: nan is not a finite number"),
    ("batch_size=0", "--set batch_size=0: batch_size must be a whole number >= 1"),
    ("epochs=0", "--set epochs=0: epochs must be a whole number >= 1 (a head must train)"),
    ("epochs=-2", "--set epochs=-2: epochs must be a whole number >= 1"),
    ("clip_grad=0", "--set clip_grad=0: clip_grad must be a finite number > 0"),
])
def test_settings_that_leave_a_head_untrained_are_refused(tmp_path, micro_data, oracle, setting, expected):
    result = cli("run", "ave", f"--ckpt=oracle={oracle}", "--data-root", micro_data, "--out", tmp_path / "out",
                 "--cache-dir", tmp_path / "cache", "--seeds", "1", "--bootstrap", "0", "--set", setting)
    one_line_error(result, expected)


def test_out_and_cache_that_cannot_be_folders(tmp_path, micro_data, oracle):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    ckpt = f"--ckpt=oracle={oracle}"
    one_line_error(run_ave(micro_data, a_file, ckpt), f"--out {a_file}: is a file, expected a folder")
    one_line_error(run_ave(micro_data, a_file / "out", ckpt), f"--out {a_file / 'out'}: cannot create the folder")
    result = cli("run", "ave", ckpt, "--data-root", micro_data, "--out", tmp_path / "out", "--cache-dir", a_file,
                 *FAST)
    one_line_error(result, f"--cache-dir {a_file}: is a file, expected a folder")
    assert a_file.read_text() == "not a folder"


def test_full_disk_is_one_line(tmp_path, micro_data, oracle, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", full)
    out = tmp_path / "out"
    one_line_error(run_ave(micro_data, out, f"--ckpt=oracle={oracle}"), "video_seed43.npz: cannot write (No space "
                                                                           "left on device)")
    assert not (out / "results.json").exists()


@pytest.mark.parametrize("command", ["run", "validate"])
def test_h5_link_to_a_file_that_is_not_hdf5(tmp_path, data_copy, oracle, command):
    (data_copy / "notes.txt").write_text("not HDF5")
    path = data_copy / AVE / "labels.h5"
    path.unlink()
    with h5py.File(path, "w") as handle:
        handle["avadataset"] = h5py.ExternalLink(str(data_copy / "notes.txt"), "/avadataset")
    expected = f"labels.h5: 'avadataset' is an external link to {data_copy / 'notes.txt'}:/avadataset"
    if command == "run":
        one_line_error(run_ave(data_copy, tmp_path / "out", f"--ckpt=oracle={oracle}"), expected)
    else:
        result = cli("validate", "--data-root", data_copy, "ave")
        assert result.exit_code == 1 and expected in result.output.replace("\n", "")


# ------------------------------------------------------------------------------------------ 5: a broken model is not a row


@pytest.fixture(scope="module")
def nan_dcid(tmp_path_factory):
    """A DCID checkpoint whose audio path holds NaN weights: every audio segment used to quantize to one code.
    Small widths (the input widths are fixed): NaN handling does not depend on them, and the file is 100x smaller."""
    import torch

    from cmg_eval.encoders.dcid import DcidEncoder
    from cmg_eval.io import save_checkpoint

    ckpt = DcidEncoder.init_checkpoint(seed=0, config={"hidden": 16, "ff_dim": 16, "se_hidden": 4, "n_embeddings": 12,
                                                       "video_output_dim": 8, "audio_output_dim": 8,
                                                       "text_output_dim": 8, "text_lstm_hidden": 4})
    ckpt["Encoder_parameters"]["audio_self_att.encoder.layers.0.linear1.weight"][0, 0] = torch.nan
    path = tmp_path_factory.mktemp("nan") / "nan-dcid.pt"
    save_checkpoint(ckpt, path)
    return path


def test_nan_weights_refused_in_run(tmp_path, micro_data, nan_dcid):
    result = run_ave(micro_data, tmp_path / "out", f"--ckpt=nan={nan_dcid}", extra=["--directions", "A->V"])
    one_line_error(result, "encoder 'nan': non-finite values out of its Linear module on audio inputs of")
    assert not (tmp_path / "out" / "results.json").exists()


def test_nan_weights_refused_in_embed(tmp_path, nan_dcid):
    np.savez(tmp_path / "in.npz", audio=np.random.default_rng(0).random((2, 10, 128)).astype(np.float32))
    result = cli("embed", "--ckpt", nan_dcid, "--modality", "audio", "--in", tmp_path / "in.npz",
                 "--out", tmp_path / "out.npz")
    one_line_error(result, "encoder 'nan-dcid': non-finite values out of its Linear module on audio inputs")
    assert not (tmp_path / "out.npz").exists()


def test_nan_weights_refused_in_codebook(tiny_data, nan_dcid):
    result = cli("codebook", "--ckpt", nan_dcid, "--data-root", tiny_data, "--max-items", "8")
    one_line_error(result, "encoder 'dcid': non-finite values out of its Linear module on codebook audio inputs")


@pytest.mark.parametrize("array, expected", [
    (np.full((2, 10, 128), 1e300), ": non-finite values in item 0 (as float32)"),
    (np.ones((2, 10, 128), np.complex64), " has dtype complex64, expected real numbers"),
    (np.full((2, 10, 128), "x"), " has dtype <U1, expected real numbers"),
])
def test_embed_inputs_that_are_not_float32_numbers(tmp_path, random_dcid, array, expected):
    np.savez(tmp_path / "in.npz", audio=array)
    result = cli("embed", "--ckpt", random_dcid, "--modality", "audio", "--in", tmp_path / "in.npz",
                 "--out", tmp_path / "out.npz")
    one_line_error(result, f"in.npz: array 'audio'{expected}")


# ------------------------------------------------------------------------------------------ 8: no stale files beside a report


def test_rerun_without_a_model_refuses_its_folders(tmp_path, micro_data, oracle):
    out = tmp_path / "out"
    first = run_ave(micro_data, out, f"--ckpt=old={oracle}", f"--ckpt=kept={oracle}", extra=["--directions", "A->V"])
    assert first.exit_code == 0, first.output
    result = run_ave(micro_data, out, f"--ckpt=kept={oracle}", extra=["--directions", "A->V"])
    one_line_error(result, f"{out / 'jobs' / 'old'}: results of another run (a model or task this run does not ask "
                           f"for)")
    assert not (out / "results.json").exists() and (out / "jobs" / "old").is_dir()
    shutil.rmtree(out / "jobs" / "old")
    one_line_error(run_ave(micro_data, out, f"--ckpt=kept={oracle}", extra=["--directions", "A->V"]),
                   f"{out / 'predictions' / 'old'}: results of another run")
    shutil.rmtree(out / "predictions" / "old")
    again = run_ave(micro_data, out, f"--ckpt=kept={oracle}", extra=["--directions", "A->V"])
    assert again.exit_code == 0, again.output


def test_rerun_with_fewer_seeds_clears_their_predictions(tmp_path, micro_data, oracle):
    out = tmp_path / "out"
    args = ["run", "ave", f"--ckpt=m={oracle}", "--data-root", micro_data, "--out", out, "--cache-dir",
            tmp_path / "cache", "--set", "epochs=1", "--bootstrap", "0", "--directions", "A->V"]
    assert cli(*args, "--seeds", "2").exit_code == 0
    assert sorted(p.name for p in (out / "predictions" / "m" / "ave").iterdir()) == \
        ["A_to_V_seed43.npz", "A_to_V_seed44.npz"]
    assert cli(*args, "--seeds", "1").exit_code == 0
    assert sorted(p.name for p in (out / "predictions" / "m" / "ave").iterdir()) == ["A_to_V_seed43.npz"]
