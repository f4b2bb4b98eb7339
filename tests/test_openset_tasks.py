"""Open-set tasks (ave_os, ucf51_os, ucf_vgg_os) on the synthetic benchmark: the must-show runs in both protocols,
K as a setting, the class counts reported, and the readers' refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import cli
from cmg_eval.errors import CmgError
from cmg_eval.metrics.openset import chance_h_score

TASKS = ("ave_os", "ucf51_os", "ucf_vgg_os")
OPEN_SET = Path("OSCMG(cvpr25)") / "data"
CROSS_MODAL = ("V->A", "A->V")


@pytest.fixture(scope="module")
def open_set_runs(tiny_data, random_dcid, clip_tasks_run, tmp_path_factory) -> dict[str, dict]:
    """Both protocols on tiny data, oracle and random DCID, one head seed; the cache is shared with the clip tasks'
    run (the UCF/VGGSound encodings). The paper protocol trains at 2e-3: the reference's 4e-4 makes 50-130 Adam
    steps on the tiny subsets, too few for any head."""
    base = tmp_path_factory.mktemp("open-set-runs")
    documents = {}
    for protocol, extra in (("clean", []), ("paper", ["--set", "paper_lr=2e-3"])):
        result = cli("run", ",".join(TASKS), "--ckpt", f"oracle={tiny_data / 'oracle.pt'}", "--ckpt",
                     f"random={random_dcid}", "--data-root", tiny_data, "--out", base / protocol, "--cache-dir",
                     clip_tasks_run.parent / "cache", "--protocol", protocol, "--seeds", "1", "--bootstrap", "0",
                     *extra)
        assert result.exit_code == 0, result.output
        documents[protocol] = json.loads((base / protocol / "results.json").read_text())
    return documents


def rows(document: dict, model: str, metric: str) -> dict[tuple[str, str], float]:
    return {(r["task"], r["direction"]): r["value"] for r in document["results"]
            if r["model"] == model and r["metric"] == metric}


def test_ls_lists_the_open_set_tasks():
    result = cli("ls")
    assert result.exit_code == 0
    for task in TASKS:
        assert task in result.output


@pytest.mark.parametrize("protocol", ["clean", "paper"])
def test_oracle_rejects_unknown_clips_and_random_does_not(open_set_runs, protocol):
    document = open_set_runs[protocol]
    h, auroc = rows(document, "oracle", "h_score"), rows(document, "oracle", "auroc")
    assert len(h) == 12
    assert all(value >= 70 for value in h.values()), h
    assert all(value >= 85 for value in auroc.values()), auroc
    about = document["meta"]["tasks"]
    chance = {"ave_os": about["ave_os"]["about"]["known=14"]["chance_h_score"],
              "ucf51_os": chance_h_score(17), "ucf_vgg_os": chance_h_score(8)}
    # The paper protocol scores the same-modality rows of UCF51 and UCF/VGG on clips the head trained on too (as
    # the reference): a random encoder's codes tell those apart, so those rows need not be at chance.
    random_h = {key: value for key, value in rows(document, "random", "h_score").items()
                if protocol == "clean" or key[0] == "ave_os" or key[1] in CROSS_MODAL}
    assert all(value <= chance[task] + 15 for (task, _), value in random_h.items()), (random_h, chance)
    assert np.mean(list(random_h.values())) <= np.mean(list(chance.values())) + 8
    assert {r["metric"] for r in document["results"]} == {"h_score", "known_acc", "unknown_acc", "auroc", "threshold"}
    assert all(r["primary"] == (r["metric"] == "h_score") for r in document["results"])


def test_clean_threshold_is_fixed_before_scoring_and_paper_on_the_scored_clips(open_set_runs):
    clean = rows(open_set_runs["clean"], "oracle", "threshold")
    paper = rows(open_set_runs["paper"], "oracle", "threshold")
    # clean: one threshold per head, the same for every target it scores
    assert clean[("ave_os", "V->A")] == clean[("ave_os", "V->V")]
    # paper: chosen per scored set among its own confidences
    assert paper[("ave_os", "V->A")] != paper[("ave_os", "V->V")]


def test_class_counts_reported_for_asymmetric_subsets(open_set_runs):
    about = open_set_runs["clean"]["meta"]["tasks"]["ucf_vgg_os"]["about"]
    vgg8 = about["known=8 VGGSound->UCF101"]
    assert vgg8["known_classes"] == 8 and vgg8["known_classes_with_training_clips"] == 7
    assert len(vgg8["known_classes_without_training_clips"]) == 1
    assert about["known=12 UCF101->VGGSound"]["known_classes_with_training_clips"] == 11
    assert about["known=8 UCF101->VGGSound"]["known_classes_with_training_clips"] == 8
    warnings = open_set_runs["clean"]["meta"]["data"]["notes"]["ucf_vgg_os"]["warnings"]
    assert any("vggsound2ucf_8.csv: no clips of known classes" in line for line in warnings)


def test_known_is_a_task_setting(tiny_data, tmp_path, clip_tasks_run):
    out = tmp_path / "k21"
    result = cli("run", "ave_os", "--ckpt", f"oracle={tiny_data / 'oracle.pt'}", "--data-root", tiny_data, "--out", out,
                 "--cache-dir", clip_tasks_run.parent / "cache", "--set", "ave_os.known=21", "--directions", "A->V",
                 "--seeds", "1", "--bootstrap", "0")
    assert result.exit_code == 0, result.output
    document = json.loads((out / "results.json").read_text())
    assert document["meta"]["settings"]["ave_os"]["known"] == 21
    assert rows(document, "oracle", "h_score")[("ave_os", "A->V")] >= 70
    result = cli("run", "ave_os", "--ckpt", f"oracle={tiny_data / 'oracle.pt'}", "--data-root", tiny_data, "--out",
                 tmp_path / "k15", "--set", "ave_os.known=15", "--seeds", "1")
    assert result.exit_code != 0
    assert result.output.strip().splitlines()[-1].endswith("expected one of 14, 21 (the known-class subsets the "
                                                           "release ships)")


# ------------------------------------------------------------------------------------------ readers


def linked_copy(tiny_data: Path, root: Path, copied: str, linked: tuple[str, ...]) -> Path:
    """A data root with `copied` (a small folder) copied and the big folders linked."""
    shutil.copytree(tiny_data / copied, root / copied)
    for name in linked:
        (root / name).symlink_to(tiny_data / name)
    return root


def validate_error(root: Path, task: str) -> str:
    """`validate`'s one line on the refused file (then its summary line)."""
    result = cli("validate", "--quick", "--data-root", root, task)
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{task}: "), result.output
    return lines[0]


def test_ave_order_with_an_unknown_class_refused(tiny_data, tmp_path):
    root = linked_copy(tiny_data, tmp_path, str(OPEN_SET), ("AVE-ECCV18-master",))
    path = root / OPEN_SET / "AVE_OSCMG" / "train_order_14class.h5"
    with h5py.File(tiny_data / "AVE-ECCV18-master/data/labels.h5") as labels:
        classes = labels["avadataset"][:, :, :28].argmax(axis=2).max(axis=1)
    with h5py.File(path, "a") as handle:
        order = handle["order"][:]
        del handle["order"]
        handle["order"] = np.append(order, np.flatnonzero(classes == 20)[0]).astype(np.int32)
    assert "has class 20 (1 of 402 clips beyond class 13), expected clips of the first 14 classes only" in validate_error(root, "ave_os")


def test_missing_k_file_refused_only_when_asked(tiny_data, tmp_path):
    root = linked_copy(tiny_data, tmp_path, str(OPEN_SET), ("AVE-ECCV18-master",))
    (root / OPEN_SET / "AVE_OSCMG" / "train_order_21class.h5").unlink()
    assert cli("validate", "--quick", "--data-root", root, "ave_os").exit_code == 0
    result = cli("run", "ave_os", "--ckpt", f"oracle={tiny_data / 'oracle.pt'}", "--data-root", root, "--out",
                 tmp_path / "out", "--set", "ave_os.known=21", "--seeds", "1")
    assert result.exit_code != 0
    assert "train_order_21class.h5: missing file (expected the training clips of the first 21 classes" in result.output


def test_ucf51_subset_refusals(tiny_data, tmp_path):
    root = linked_copy(tiny_data, tmp_path, str(OPEN_SET), ("UCF101ALL",))
    subset = root / OPEN_SET / "UCF_OSCMG" / "ucf51checked_17.csv"
    lines = subset.read_text().splitlines()
    subset.write_text("\n".join([*lines, "YoYo,v_YoYo_g01_c01"]) + "\n")
    assert f"line {len(lines) + 1} ('v_YoYo_g01_c01') has class 50" in validate_error(root, "ucf51_os")
    subset.write_text("\n".join([*lines, "Archery,v_Archery_g99_c99"]) + "\n")
    assert "clip 'v_Archery_g99_c99' is not in ucf51checked.csv, expected a subset of its clips" in \
        validate_error(root, "ucf51_os")


def test_ucf_vgg_subset_of_another_category_refused(tiny_data, tmp_path):
    root = linked_copy(tiny_data, tmp_path, str(OPEN_SET), ("feature_extractor", "UCF101", "vggsound40k"))
    subset = root / OPEN_SET / "UCF_VGG_OSCMG" / "ucf2vggsound_8.csv"
    header, first, *rest = subset.read_text().splitlines()
    category, clip = first.split(",")
    other = next(line.split(",")[0] for line in rest if line.split(",")[0] != category)
    subset.write_text("\n".join([header, f"{other},{clip}", *rest]) + "\n")
    assert f"line 2: clip {clip!r} has class" in validate_error(root, "ucf_vgg_os")


def test_synthetic_subsets_as_the_reference(tiny_data):
    written = json.loads((tiny_data / "synth.json").read_text())["datasets"]
    assert written["ucf_vgg_os"]["vggsound2ucf_8"]["classes"] == 7
    assert written["ucf_vgg_os"]["ucf2vggsound_12"]["classes"] == written["ucf_vgg_os"]["vggsound2ucf_12"]["classes"] == 11
    with h5py.File(tiny_data / OPEN_SET / "AVE_OSCMG/train_order_14class.h5") as handle:
        order = handle["order"][:]
    with h5py.File(tiny_data / "AVE-ECCV18-master/data/labels.h5") as labels:
        classes = labels["avadataset"][:, :, :28].argmax(axis=2).max(axis=1)[order]
    assert (np.diff(classes) >= 0).all() and classes.max() == 13     # grouped by class, the first 14 classes


def test_hand_written_subset_csvs_read_as_rows_of_the_full_list(tmp_path):
    """Written by hand, not by the generator: CRLF line ends, columns in another order with an extra one, a
    quoted category holding a comma, subset clips out of the full list's order; one K file absent."""
    from cmg_eval.data.annotations import ClipTable
    from cmg_eval.data.openset import read_known_csvs

    classes = ["playing violin, fiddle", "dog barking", "typing on typewriter"]
    full = ClipTable(tmp_path / "full.csv", ["a-1", "b_2", "c-3", "d_4"], np.array([0, 1, 2, 0]), [2, 3, 4, 5])
    (tmp_path / "sub_2.csv").write_bytes(b'video_id,split,category\r\nd_4,train,"playing violin, fiddle"\r\n'
                                         b'b_2,train,dog barking\r\na-1,train,"playing violin, fiddle"\r\n')
    subsets = read_known_csvs(lambda k: tmp_path / f"sub_{k}.csv", (2, 3), full, classes, tmp_path / "classes.txt")
    assert subsets.rows[2].tolist() == [3, 1, 0]
    with pytest.raises(CmgError, match=r"sub_3\.csv: missing file .*known=3"):
        subsets.get(3)
