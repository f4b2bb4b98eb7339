"""`cmg-eval run` on the retrieval tasks: oracle far above chance, random init at chance, report columns."""

import json

import numpy as np
import pytest

from cmg_eval import registry
from cmg_eval.runner import resolve_tasks

from conftest import cli

DIRECTIONS = {"msrvtt_vt": ("V->T", "T->V"), "clotho_at": ("A->T", "T->A")}


@pytest.fixture(scope="module")
def retrieval_run(tiny_data, random_dcid, tmp_path_factory):
    """The must-show run: oracle and a random-init DCID on MSR-VTT and Clotho."""
    out = tmp_path_factory.mktemp("retrieval-run")
    result = cli("run", "msrvtt_vt,clotho_at", "--ckpt", f"oracle={tiny_data / 'oracle.pt'}",
                 "--ckpt", f"random={random_dcid}", "--data-root", tiny_data, "--out", out / "run",
                 "--cache-dir", out / "cache")
    assert result.exit_code == 0, result.output
    return out / "run"


def value(document, model, task, direction, metric):
    (row,) = [r for r in document["results"] if (r["model"], r["task"], r["direction"], r["metric"])
              == (model, task, direction, metric)]
    return row["value"]


def test_oracle_far_above_random_and_random_at_chance(retrieval_run):
    document = json.loads((retrieval_run / "results.json").read_text())
    for task, directions in DIRECTIONS.items():
        for direction in directions:
            oracle = value(document, "oracle", task, direction, "r10")
            random = value(document, "random", task, direction, "r10")
            chance = value(document, "random", task, direction, "r10_chance")
            assert oracle >= 3 * random and oracle >= 80.0
            assert abs(random - chance) <= 4.0
            about = document["meta"]["tasks"][task]["about"]["chance"][direction]
            assert about["r10"] == pytest.approx(chance, abs=1e-3)
            assert value(document, "oracle", task, direction, "medr") < about["medr"] / 10


def test_rows_and_schema(retrieval_run):
    document = json.loads((retrieval_run / "results.json").read_text())
    rows = [r for r in document["results"] if r["task"] in DIRECTIONS]
    assert {r["metric"] for r in rows} == {"r1", "r5", "r10", "r50", "medr", "meanr", "map10", "r10_chance"}
    assert all(r["n_seeds"] == 1 for r in rows)                                   # zero-shot: run once
    assert {r["metric"] for r in rows if r["lower_is_better"]} == {"medr", "meanr"}
    assert {r["metric"] for r in rows if r["primary"]} == {"r10"}
    counts = {(r["task"], r["direction"]): r["n_items"] for r in rows}
    about = document["meta"]["tasks"]
    assert counts[("msrvtt_vt", "V->T")] == about["msrvtt_vt"]["about"]["items"]
    assert counts[("clotho_at", "T->A")] == about["clotho_at"]["about"]["captions"]
    for r in rows:
        if r["metric"] in ("medr", "meanr"):
            assert r["value"] >= 1.0
        else:
            assert 0.0 <= r["value"] <= 100.0
    primary = [r for r in rows if r["primary"]]
    assert all(r["ci_low"] <= r["value"] <= r["ci_high"] for r in primary)


def test_predictions_rescore_to_the_reported_metrics(retrieval_run):
    document = json.loads((retrieval_run / "results.json").read_text())
    task = registry.tasks.get("clotho_at")()
    saved = np.load(retrieval_run / "predictions" / "random" / "clotho_at" / "T_to_A_seed43.npz")
    metrics = task.rescore(None, dict(saved))
    for metric in task.metrics:
        assert metrics[metric] == pytest.approx(value(document, "random", "clotho_at", "T->A", metric))


def test_report_has_retrieval_columns(retrieval_run):
    table = (retrieval_run / "table.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| model"))
    for task, directions in DIRECTIONS.items():
        for direction in directions:
            assert f"{task} {direction}" in header
    assert "r10_chance" in table and "'chance'" in table


def test_all_includes_the_retrieval_tasks():
    names = set(resolve_tasks(["all"]))
    assert {"msrvtt_vt", "mscoco_vt", "clotho_at"} <= names
