"""Rows that differ only by pretraining seed: grouping, the grouped gate and the paper tables."""

import json
import math

import pytest

from cmg_eval.errors import CmgError
from cmg_eval.seedgroups import group_by_pretrain_seed, split_label
from conftest import cli

# hand-written AVE accuracies per (label, direction): head-seed mean and head-seed std
VALUES = {
    "dcid+seed1": {"V->A": (50.0, 1.0), "A->V": (40.0, 1.0), "V->V": (80.0, 0.5)},
    "dcid+seed2": {"V->A": (52.0, 2.0), "A->V": (44.0, 1.0), "V->V": (81.0, 0.5)},
    "dcid+seed3": {"V->A": (57.0, 3.0), "A->V": (42.0, 1.0), "V->V": (82.0, 0.5)},
    "cmcm+seed1": {"V->A": (70.0, 1.0), "A->V": (60.0, 1.0), "V->V": (70.0, 0.5)},
    "cmcm+seed2": {"V->A": (71.0, 1.0), "A->V": (61.0, 1.0), "V->V": (70.0, 0.5)},
    "cmcm+seed3": {"V->A": (72.0, 1.0), "A->V": (62.0, 1.0), "V->V": (70.0, 0.5)},
    "oracle": {"V->A": (90.0, 0.0), "A->V": (95.0, 0.0), "V->V": (99.0, 0.0)},
}


MODALITY = {"V": "video", "A": "audio"}


def document(values=VALUES):
    results = [{"model": label, "task": "ave", "direction": direction, "source": MODALITY[direction[0]],
                "target": MODALITY[direction[-1]],
                "metric": "accuracy", "value": value, "std": std, "n_seeds": 3, "n_items": 100, "primary": True,
                "lower_is_better": False, "per_seed": [value] * 3}
               for label, cells in values.items() for direction, (value, std) in cells.items()]
    return {"meta": {"protocol": "clean", "seeds": [43, 44, 45], "models": [{"label": label} for label in values],
                     "tasks": {"ave": {"primary_metric": "accuracy", "lower_is_better": [],
                                       "directions": ["V->A", "A->V", "V->V", "A->A"]}}},
            "results": results, "comparisons": [{"task": "ave", "other": "dcid+seed1", "significant": True}]}


@pytest.mark.parametrize("label, expected", [
    ("dcid+seed44", ("dcid", 44)), ("srcid+seed7@layer1", ("srcid@layer1", 7)), ("dcid-rvq2+seed1", ("dcid-rvq2", 1)),
    ("oracle", ("oracle", None)), ("seed3", ("seed3", None)), ("a+seedx", ("a+seedx", None)),
])
def test_split_label(label, expected):
    assert split_label(label) == expected


def test_groups_fold_pretraining_seeds():
    grouped = group_by_pretrain_seed(document())
    assert [m["label"] for m in grouped["meta"]["models"]] == ["dcid", "cmcm", "oracle"]
    assert grouped["meta"]["models"][0]["pretrain_seeds"] == [1, 2, 3] and grouped["comparisons"] == []
    rows = {(r["model"], r["direction"]): r for r in grouped["results"]}
    dcid = rows[("dcid", "V->A")]
    # mean of 50, 52, 57 = 53; sample std sqrt((9 + 1 + 16) / 2); head-seed stds 1, 2, 3 average 2
    assert dcid["value"] == 53.0 and math.isclose(dcid["std"], math.sqrt(13)) and dcid["head_std"] == 2.0
    assert dcid["n_seeds"] == 3 and dcid["members"] == {"dcid+seed1": 50.0, "dcid+seed2": 52.0, "dcid+seed3": 57.0}
    assert rows[("oracle", "V->A")]["std"] == 0.0 and rows[("oracle", "V->A")]["n_seeds"] == 1


def test_a_repeated_row_cannot_be_grouped():
    doc = document()
    doc["results"].append(dict(doc["results"][0]))
    with pytest.raises(CmgError, match="appears twice"):
        group_by_pretrain_seed(doc)


def write(path, doc):
    path.write_text(json.dumps(doc))
    return path


def test_compare_groups_rows_by_pretraining_seed(tmp_path):
    """Seeds 1 and 2 of dcid swap their numbers: each row moves by more than its head-seed noise (the
    plain gate fails), the group mean does not move (the grouped gate passes); a group mean falling by
    more than 3 pretraining-seed stds fails the grouped gate."""
    swapped = {**VALUES, "dcid+seed1": VALUES["dcid+seed3"], "dcid+seed3": VALUES["dcid+seed1"]}
    base, current = write(tmp_path / "base.json", document()), write(tmp_path / "cur.json", document(swapped))
    assert cli("compare", base, current).exit_code == 1
    grouped = cli("compare", base, current, "--group-seeds")
    assert grouped.exit_code == 0, grouped.output
    assert "all 9 rows within the allowed noise" in grouped.output
    worse = {**VALUES, **{f"cmcm+seed{i}": {**VALUES[f"cmcm+seed{i}"], "V->A": (60.0, 1.0)} for i in (1, 2, 3)}}
    result = cli("compare", base, write(tmp_path / "worse.json", document(worse)), "--group-seeds")
    assert result.exit_code == 1 and "cmcm ave V->A" in result.output


def test_paper_tables(tmp_path):
    (tmp_path / "run").mkdir()
    write(tmp_path / "run" / "results.json", document())
    result = cli("paper-tables", tmp_path / "run")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "run" / "paper-tables.md").read_text()
    assert "| dcid | 81.00 ± 1.00 [0.50] | 53.00 ± 3.61 [2.00] | 42.00 ± 2.00 [1.00] |" in text  # no A->A rows
    # Table II average per pretraining seed: dcid 45, 48, 49.5 -> 47.5 ± 2.29; cmcm 65, 66, 67 -> 66 ± 1
    assert "| dcid | 53.00 ± 3.61 [2.00] | 42.00 ± 2.00 [1.00] | 47.50 ± 2.29 [1.50] |" in text
    assert "| cmcm | 71.00 ± 1.00 [1.00] | 61.00 ± 1.00 [1.00] | 66.00 ± 1.00 [1.00] |" in text
    assert "| oracle | 90.00 [0.00] | 95.00 [0.00] | 92.50 [0.00] |" in text
    # Welch's t-test dcid vs cmcm on V->A: t = 18 / sqrt(13/3 + 1/3), df by Welch-Satterthwaite
    se2 = 13 / 3 + 1 / 3
    assert "ave V->A: cmcm > dcid" in text and "ave V->V: dcid > cmcm" in text
    assert "Table II average: cmcm > dcid" in text and "oracle >" not in text  # one pretraining seed: no test
    from scipy import stats
    t, df = 18 / math.sqrt(se2), se2 ** 2 / ((13 / 3) ** 2 / 2 + (1 / 3) ** 2 / 2)
    assert f"cmcm > dcid (p {2 * stats.t.sf(t, df):.3f})" in text
