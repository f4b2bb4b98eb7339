"""UCF101 <-> VGGSound: CSV and class-list readers, label-map alignment, folds, protocols, the must-show run."""

import csv
import json
import shutil

import numpy as np
import pytest

from cmg_eval.data.annotations import read_clip_csv, read_label_map
from cmg_eval.data.zipfeat import read_feature_zip
from cmg_eval.errors import CmgError
from conftest import cli
from cmg_eval.data.ucf_vgg import LISTS
from cmg_eval.tasks.ucf_vgg import SELECTION_FOLD, TEST_FOLD, UcfVgg

FAST = ["--set", "epochs=2", "--seeds", "1", "--bootstrap", "0"]


@pytest.fixture
def lists_copy(tmp_path, micro_clip_data):
    """A data root with the UCF/VGGSound lists, CSVs and features (no AVE)."""
    root = tmp_path / "data"
    for part in (str(LISTS), "UCF101", "vggsound40k"):
        shutil.copytree(micro_clip_data / part, root / part)
    return root


def test_clip_csv_reads_quoted_categories_and_refuses_unknown_ones(tmp_path):
    classes = ["playing violin, fiddle", "rope skipping"]
    (tmp_path / "list.txt").write_text("\n".join(classes) + "\n")
    csv = tmp_path / "vgg.csv"
    csv.write_text('category,video_id,split\n"playing violin, fiddle",abc,train\nrope skipping,def,test\n')
    table = read_clip_csv(csv, ("category", "video_id", "split"), classes, tmp_path / "list.txt")
    assert table.ids == ["abc", "def"] and table.labels.tolist() == [0, 1] and table.lines == [2, 3]
    csv.write_text("category,video_id,split\nskiing,abc,train\n")
    with pytest.raises(CmgError, match="vgg.csv: line 2: category 'skiing' is not in list.txt"):
        read_clip_csv(csv, ("category", "video_id", "split"), classes, tmp_path / "list.txt")
    csv.write_text("category\tvideo_id\nrope skipping\tabc\n")
    with pytest.raises(CmgError, match="expected ','-separated columns category, video_id, split"):
        read_clip_csv(csv, ("category", "video_id", "split"), classes, tmp_path / "list.txt")


def test_class_lists_pair_by_line_and_list_label_map_differences(lists_copy):
    """Swapped lines pair by position as the reference does (clip labels follow the files); the built-in map's
    differences are warnings; lists of different lengths cannot be paired and are refused."""
    vgg_list = lists_copy / LISTS / "VGGSoundsameUCF101.txt"
    names = vgg_list.read_text().splitlines()
    names[2], names[3] = names[3], names[2]
    vgg_list.write_text("\n".join(names) + "\n")
    data = UcfVgg().load(lists_copy)
    assert data.classes["audio"][2] == "playing table tennis"
    table = data.datasets["audio"].table
    with open(lists_copy / LISTS / "vggsound2ucf.csv", newline="") as handle:
        categories = [row["category"] for row in csv.DictReader(handle)]
    assert table.labels.tolist() == [names.index(category) for category in categories]
    warnings = UcfVgg().data_notes(data)["warnings"]
    assert any("line 3: UCF101 'Skiing' is paired with VGGSound 'playing table tennis' by position; label map ucf_vgg "
               "v1 pairs it with 'skiing'" in w for w in warnings), warnings
    vgg_list.write_text("\n".join(names[:15]) + "\n")
    with pytest.raises(CmgError, match="VGGSoundsameUCF101.txt: 15 classes, but UCF101sameVGGSound.txt has 16; "
                                       "expected lists paired line by line"):
        UcfVgg().load(lists_copy)


def test_missing_clip_is_named(lists_copy):
    clip = (lists_copy / LISTS / "ucf2vggsound.csv").read_text().splitlines()[5].split(",")[1]
    (lists_copy / "UCF101/feature/video/zip" / f"{clip}.zip").unlink()
    with pytest.raises(CmgError, match=f"{clip}.zip: missing feature file of clip '{clip}' \\(ucf2vggsound.csv line 6"):
        UcfVgg().load(lists_copy)


def test_synthetic_lists_clips_and_folds(tiny_data):
    data = UcfVgg().load(tiny_data)
    pairs = read_label_map("ucf_vgg").pairs
    assert data.classes == {"video": [a for a, _ in pairs], "audio": [b for _, b in pairs]}
    for modality, dataset in data.datasets.items():
        assert len(dataset.table.ids) >= 200
        counts = np.bincount(dataset.table.labels, minlength=16)
        assert counts.min() >= 12
        for fold in (TEST_FOLD, SELECTION_FOLD):   # every class in the held-out folds
            assert (np.bincount(dataset.table.labels[dataset.folds == fold], minlength=16) > 0).all()
        assert np.mean(dataset.folds == TEST_FOLD) == pytest.approx(0.2, abs=0.02)
    lengths = {len(read_feature_zip(data.datasets["video"].zips.path(i))) for i in data.datasets["video"].table.ids[:60]}
    assert min(lengths) < 10 < max(lengths)   # padded with the last step or cut, as the reference
    batch = next(data.datasets["video"].zips.iter_rows([0, 1], 2))
    assert batch.shape == (2, 10, 7, 7, 512) and batch.dtype == np.float32
    about = UcfVgg().about(data)
    assert about["label_map"] == "ucf_vgg v1" and about["classes_kept"] == 16 and len(about["clips_per_class"]) == 16


@pytest.fixture(scope="module")
def oracle(micro_clip_data):
    return micro_clip_data / "oracle.pt"


@pytest.mark.parametrize("protocol", ["clean", "paper"])
def test_scored_items_per_protocol(micro_clip_data, oracle, tmp_path, protocol):
    out = tmp_path / "out"
    result = cli("run", "ucf_vgg", "--ckpt", f"oracle={oracle}", "--data-root", micro_clip_data, "--out", out,
                 "--cache-dir", tmp_path / "cache", "--protocol", protocol, *FAST)
    assert result.exit_code == 0, result.output
    rows = {r["direction"]: r for r in json.loads((out / "results.json").read_text())["results"]
            if r["metric"] == "accuracy"}
    data = UcfVgg().load(micro_clip_data)
    ucf, vgg = data.datasets["video"], data.datasets["audio"]
    assert rows["V->A"]["n_items"] == len(vgg.table.ids) and rows["A->V"]["n_items"] == len(ucf.table.ids)
    same = {"V->V": ucf, "A->A": vgg}
    for direction, dataset in same.items():
        expected = np.flatnonzero(dataset.folds == TEST_FOLD) if protocol == "clean" else np.arange(len(dataset.folds))
        saved = np.load(out / "predictions" / "oracle" / "ucf_vgg" / f"{direction.replace('->', '_to_')}_seed43.npz")
        np.testing.assert_array_equal(saved["item"], expected)
        np.testing.assert_array_equal(saved["y_true"], dataset.table.labels[expected])
        assert rows[direction]["n_items"] == len(expected)
        assert UcfVgg().rescore(data, dict(saved))["accuracy"] == pytest.approx(rows[direction]["value"])


def test_oracle_transfers_across_datasets_and_random_is_near_chance(clip_tasks_run):
    document = json.loads((clip_tasks_run / "results.json").read_text())
    rows = {(r["model"], r["direction"]): r for r in document["results"]
            if r["task"] == "ucf_vgg" and r["metric"] == "accuracy"}
    for direction in ("V->A", "A->V"):
        assert min(rows["oracle", direction]["per_seed"]) >= 70.0
    assert all(max(rows["random", d]["per_seed"]) <= 25.0 for d in ("V->A", "A->V", "V->V", "A->A"))
    table = (clip_tasks_run / "table.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| model |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns == ["model", *(f"{t} {d}" for t in ("avvp", "ave_avvp", "ucf_vgg")
                                  for d in ("V->A", "A->V", "V->V", "A->A")), "average"]
