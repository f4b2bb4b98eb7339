"""Per-clip feature zips as the AVVP and UCF/VGGSound tasks read them: untrusted pickles never run,
bad or missing files end in one line naming them, short and long clips are padded or cut as the reference."""

import pickle
import shutil
import zipfile

import numpy as np
import pytest

from cmg_eval.data.clipzips import ClipZips, fit_steps
from cmg_eval.data.zipfeat import read_feature_zip, write_feature_zip
from cmg_eval.errors import CmgError
from conftest import CreatesFile, cli

FAST = ["--set", "epochs=1", "--seeds", "1", "--bootstrap", "0"]


@pytest.fixture
def avvp_copy(tmp_path, micro_clip_data):
    shutil.copytree(micro_clip_data / "AVVP", tmp_path / "data" / "AVVP")
    return tmp_path / "data"


def first_clip(root, modality="audio"):
    csv = root / "AVVP" / "data" / f"AVVP_eval_{'audio' if modality == 'audio' else 'visual'}_checked_combined.csv"
    name = csv.read_text().splitlines()[1].split("\t")[0]
    return name, root / "AVVP" / "feature" / modality / "zip" / f"{name[:11]}.zip"


@pytest.fixture
def oracle_next_to(avvp_copy, micro_clip_data):
    shutil.copy(micro_clip_data / "oracle.pt", avvp_copy.parent / "oracle.pt")
    return avvp_copy


def run_avvp(root, out):
    return cli("run", "avvp", "--ckpt", f"oracle={root.parent / 'oracle.pt'}", "--data-root", root, "--out", out,
               "--cache-dir", out.parent / "cache", *FAST)


def assert_one_line_refusal(result, out, expected):
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.output
    assert not (out / "results.json").exists()


def test_clip_zip_that_would_create_a_file_is_refused_by_the_task(oracle_next_to, tmp_path):
    root = oracle_next_to
    _, path = first_clip(root)
    victim = tmp_path / "created-by-pickle"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{path.stem}.pkl", pickle.dumps(CreatesFile(victim)))
    result = run_avvp(root, tmp_path / "out")
    assert_one_line_refusal(result, tmp_path / "out", f"{path}:{path.stem}.pkl: not a pickled numpy array")
    assert "refused global" in result.output and not victim.exists()


def test_missing_clip_feature_file_is_named(oracle_next_to, tmp_path):
    root = oracle_next_to
    name, path = first_clip(root, "video")
    path.unlink()
    result = run_avvp(root, tmp_path / "out")
    assert_one_line_refusal(result, tmp_path / "out", f"{path}: missing feature file of clip {name!r}")
    assert "AVVP_eval_visual_checked_combined.csv line 2" in result.output
    validated = cli("validate", "--data-root", root, "avvp")
    assert validated.exit_code == 1 and f"{name!r}" in validated.output


def test_wrong_shape_names_the_file_and_the_expected_shape(oracle_next_to, tmp_path):
    root = oracle_next_to
    _, path = first_clip(root, "video")
    write_feature_zip(path, np.zeros((9, 7, 7, 512), np.float16))  # AVVP video is not padded
    result = run_avvp(root, tmp_path / "out")
    assert_one_line_refusal(result, tmp_path / "out", f"{path}: array of shape (9, 7, 7, 512), expected (10, 7, 7, 512)")


def test_nonfinite_clip_features_are_refused(oracle_next_to, tmp_path):
    root = oracle_next_to
    _, path = first_clip(root)
    array = read_feature_zip(path)
    array[0, 0] = np.nan
    write_feature_zip(path, array)
    result = run_avvp(root, tmp_path / "out")
    assert_one_line_refusal(result, tmp_path / "out", "non-finite audio features in item 0 of the data rows of "
                                                      "AVVP_eval_audio_checked_combined.csv")


def test_short_and_long_clips_are_padded_with_the_last_step_or_cut():
    rows = np.arange(12, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(fit_steps(rows[:7], 10), np.concatenate([rows[:7], np.repeat(rows[6:7], 3, 0)]))
    np.testing.assert_array_equal(fit_steps(rows, 10), rows[:10])
    np.testing.assert_array_equal(fit_steps(rows[:10], 10), rows[:10])


def test_clip_zips_read_float32_in_order_and_key_changes_with_files(tmp_path):
    arrays = {"a": np.random.default_rng(0).random((9, 128)).astype(np.float16),
              "b": np.random.default_rng(1).random((11, 128)).astype(np.float32)}
    for clip_id, array in arrays.items():
        write_feature_zip(tmp_path / f"{clip_id}.zip", array)
    zips = ClipZips(tmp_path, ["b", "a", "b"], ["b_0_10", "a_0_10", "b_0_10"], (128,), tmp_path / "x.csv", [2, 3, 4],
                    pad=True)
    batches = list(zips.iter_rows([0, 1, 2], 2))
    assert [b.shape for b in batches] == [(2, 10, 128), (1, 10, 128)] and batches[0].dtype == np.float32
    np.testing.assert_array_equal(batches[0][1], fit_steps(arrays["a"].astype(np.float32), 10))
    np.testing.assert_array_equal(batches[0][0], arrays["b"][:10])
    assert zips.paths() == [tmp_path / "b.zip", tmp_path / "a.zip"]
    key = zips.key()
    write_feature_zip(tmp_path / "a.zip", arrays["a"][:8])
    again = ClipZips(tmp_path, ["b", "a", "b"], ["b_0_10", "a_0_10", "b_0_10"], (128,), tmp_path / "x.csv", [2, 3, 4],
                     pad=True)
    assert again.key() != key


def test_missing_feature_folder_is_named(tmp_path):
    with pytest.raises(CmgError, match="nope: missing folder"):
        ClipZips(tmp_path / "nope", ["a"], ["a"], (128,), tmp_path / "x.csv", [2], pad=True)


def test_validate_decodes_every_zip_and_names_each_refused_one(avvp_copy, tmp_path):
    """One pass lists every file a run would stop at; a protocol-5 pickle reads; --quick decodes one per stream."""
    csv = avvp_copy / "AVVP" / "data" / "AVVP_eval_audio_checked_combined.csv"
    ids = list(dict.fromkeys(line.split("\t")[0][:11] for line in csv.read_text().splitlines()[1:]))
    folder = avvp_copy / "AVVP" / "feature" / "audio" / "zip"
    protocol5, corrupt, nonfinite, wrong = (folder / f"{i}.zip" for i in ids[:4])
    payload = pickle.dumps(read_feature_zip(protocol5), protocol=5)
    with zipfile.ZipFile(protocol5, "w") as archive:
        archive.writestr("feat.pkl", payload)
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip")
    array = read_feature_zip(nonfinite)
    array[3, 5] = np.inf
    write_feature_zip(nonfinite, array)
    write_feature_zip(wrong, np.zeros((10, 64), np.float32))
    result = cli("validate", "--data-root", avvp_copy, "avvp")
    assert result.exit_code == 1
    refused = [line for line in result.output.splitlines() if line.startswith("avvp: /")]
    assert len(refused) == 3 and str(protocol5) not in result.output, result.output
    assert f"{corrupt}: not a readable zip" in refused[0]
    assert f"{nonfinite}: non-finite values in its VGGish audio array" in refused[1]
    assert "--allow-nonfinite" in refused[1]
    assert f"{wrong}: array of shape (10, 64), expected (T, 128)" in refused[2]
    assert "avvp: 3 of " in result.output and " feature reads refused" in result.output
    quick = cli("validate", "--data-root", avvp_copy, "--quick", "avvp")
    assert quick.exit_code == 0 and "avvp: ok, 2 feature files decoded (--quick)" in quick.output, quick.output
