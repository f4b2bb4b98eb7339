"""`cmg-eval run` end to end: the AVE table, the cache, user encoders, the paper protocol."""

import json

import numpy as np
import pytest

from conftest import MICRO_COUNTS, cli

FAST = ["--set", "epochs=2", "--seeds", "1"]


@pytest.fixture(scope="module")
def tiny_run(tiny_data, random_dcid, tmp_path_factory):
    """The must-show run, with default head settings."""
    base = tmp_path_factory.mktemp("tiny-run")
    args = ["run", "ave", "--ckpt", f"oracle={tiny_data / 'oracle.pt'}", "--ckpt", f"random={random_dcid}",
            "--data-root", tiny_data, "--cache-dir", base / "cache"]
    first = cli(*args, "--out", base / "first")
    assert first.exit_code == 0, first.output
    second = cli(*args, "--out", base / "second")
    assert second.exit_code == 0, second.output
    return base


def accuracy(document, model, direction):
    (row,) = [r for r in document["results"] if r["model"] == model and r["direction"] == direction
              and r["metric"] == "accuracy"]
    return row["value"]


def test_oracle_far_above_random_floor(tiny_run):
    document = json.loads((tiny_run / "first" / "results.json").read_text())
    for direction in ("V->A", "A->V"):
        assert accuracy(document, "oracle", direction) >= 70.0
        assert accuracy(document, "random", direction) <= 15.0


def test_results_schema(tiny_run):
    document = json.loads((tiny_run / "first" / "results.json").read_text())
    rows = document["results"]
    required = {"model", "task", "source", "target", "metric", "value", "std", "n_seeds", "n_items"}
    assert all(required <= set(r) for r in rows)
    assert {(r["model"], r["direction"]) for r in rows} == {
        (m, d) for m in ("oracle", "random") for d in ("V->A", "A->V", "V->V", "A->A")}
    assert {r["metric"] for r in rows} == {"accuracy", "macro_precision", "macro_recall", "macro_f1"}
    assert all(r["n_seeds"] == 3 and r["n_items"] == 50 and len(r["per_seed"]) == 3 for r in rows)
    for row in rows:
        assert row["value"] == pytest.approx(np.mean(row["per_seed"]))
        assert row["std"] == pytest.approx(np.std(row["per_seed"], ddof=1))
    meta = document["meta"]
    assert meta["seeds"] == [43, 44, 45] and meta["protocol"] == "clean"
    assert {m["label"] for m in meta["models"]} == {"oracle", "random"}
    assert all(len(m["sha256"]) == 64 for m in meta["models"])
    assert len(meta["data"]["manifest_hash"]) == 64
    # the versions of what actually ran, as the interpreter and the installed packages report them
    import platform

    import sklearn
    import torch
    assert meta["versions"]["python"] == platform.python_version()
    assert meta["versions"]["torch"] in (torch.__version__, torch.__version__.split("+")[0])
    assert meta["versions"]["scikit-learn"] == sklearn.__version__
    assert list(meta["codebook"]) == ["random"]           # codebook diagnostics; the oracle has no codes
    assert meta["codebook"]["random"]["columns"][0]["n_codes"] == 400
    assert "<h2>Codebook</h2>" in (tiny_run / "first" / "index.html").read_text()
    for name in ("table.md", "table.csv"):
        assert (tiny_run / "first" / name).stat().st_size > 0
    assert "oracle" in (tiny_run / "first" / "table.md").read_text()
    predictions = np.load(tiny_run / "first" / "predictions" / "oracle" / "ave" / "V_to_A_seed43.npz")
    assert set(predictions.files) == {"item", "y_true", "y_pred"} and len(predictions["item"]) == 50


def test_second_run_reuses_the_cache(tiny_run):
    first = json.loads((tiny_run / "first" / "results.json").read_text())
    second = json.loads((tiny_run / "second" / "results.json").read_text())
    assert first["meta"]["cache"]["misses"] > 0
    assert second["meta"]["cache"]["misses"] == 0 and second["meta"]["cache"]["hits"] > 0
    assert second["meta"]["timings"]["encode_s"] == 0
    assert [r["value"] for r in first["results"]] == [r["value"] for r in second["results"]]


def test_user_encoder_end_to_end(micro_data, user_weights, tmp_path):
    result = cli("run", "ave", "--ckpt", f"mine={user_weights}", "--encoder", "user_models:projection",
                 "--data-root", micro_data, "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache", *FAST)
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {r["direction"] for r in document["results"]} == {"V->A", "A->V", "V->V", "A->A"}
    assert document["meta"]["models"][0]["encoder"] == "user_models:projection"
    assert all(r["n_items"] == MICRO_COUNTS[2] for r in document["results"])


def test_paper_protocol(tiny_data, tmp_path):
    result = cli("run", "ave", "--ckpt", f"oracle={tiny_data / 'oracle.pt'}", "--data-root", tiny_data,
                 "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache", "--protocol", "paper",
                 "--set", "epochs=3")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert document["meta"]["protocol"] == "paper" and document["meta"]["seeds"] == [43]
    assert all(r["n_items"] == 800 and r["protocol"] == "paper" for r in document["results"])  # the train split


def test_readout_label(public_dcid, micro_data, tmp_path):
    result = cli("run", "ave", "--ckpt", f"dcid@pre_vq={public_dcid}", "--data-root", micro_data,
                 "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache", *FAST)
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {r["readout"] for r in document["results"]} == {"pre_vq"}
    assert document["meta"]["models"][0]["checkpoint_epoch"] == 4


def test_plain_progress_lines_when_stderr_is_not_a_terminal(micro_data, user_weights, tmp_path, monkeypatch):
    """A batch run logs jobs, epochs and encoding as plain lines (done/total, elapsed, ETA)."""
    monkeypatch.setenv("CMG_EVAL_PROGRESS_SECONDS", "0")
    result = cli("run", "ave", "--ckpt", f"mine={user_weights}", "--encoder", "user_models:projection",
                 "--data-root", micro_data, "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache", *FAST)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    settings = json.loads((tmp_path / "out" / "results.json").read_text())["meta"]["settings"]["ave"]
    assert settings["epochs"] == 2   # the recorded setting is --set's, and the job below ran that many epochs
    evaluate = [line for line in lines if line.startswith("evaluate: ")]
    assert evaluate[-1].startswith("evaluate: 2/2 (100%), elapsed ") and "ETA" in evaluate[-1]   # two source jobs
    assert any(line.startswith("mine ave video seed 43: 2/2 (100%)") for line in lines)     # the job's epochs
    assert any(line.startswith("encode mine audio") for line in lines)
