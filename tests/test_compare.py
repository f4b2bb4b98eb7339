"""Statistics (bootstrap coverage, paired tests) and the regression gate."""

import copy
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from cmg_eval.compare import bootstrap_interval, gate, mcnemar_p, paired_bootstrap, paired_permutation_p
from conftest import cli


def test_bootstrap_interval_covers_the_truth():
    """Accuracy of n Bernoulli(0.7) items: the 95% interval should hold 0.7 about 95% of the time."""
    rng = np.random.default_rng(0)
    hits = 0
    trials = 200
    for trial in range(trials):
        correct = rng.random(150) < 0.7
        low, high = bootstrap_interval(lambda idx: correct[idx].mean(), len(correct), resamples=400, seed=trial)
        hits += low <= 0.7 <= high
    assert 0.88 <= hits / trials <= 0.99


def test_paired_bootstrap_difference():
    rng = np.random.default_rng(1)
    a, b = rng.random(300) < 0.8, rng.random(300) < 0.5
    result = paired_bootstrap(lambda i: a[i].mean(), lambda i: b[i].mean(), 300, 500, 0)
    assert result["diff"] == pytest.approx(a.mean() - b.mean())
    assert result["ci_low"] < result["diff"] < result["ci_high"] and result["ci_low"] > 0


def test_resampling_in_batches_draws_what_scipy_draws_at_once():
    """Intervals and p-values equal scipy's with every resample drawn in one array (which holds resamples x
    items indices: the memory the batches save), for counts that are not multiples of the batch."""
    rng = np.random.default_rng(3)
    n, resamples = 333, 250
    a, b = rng.normal(size=n), rng.normal(size=n) + 0.1

    def mean_a(idx):
        return a[idx].mean()

    def absolute(first, second):
        return abs(np.where(first >= n, b, a).mean() - np.where(first >= n, a, b).mean())

    once = stats.bootstrap((np.arange(n),), mean_a, n_resamples=resamples, vectorized=False, method="percentile",
                           random_state=np.random.default_rng(7)).confidence_interval
    assert bootstrap_interval(mean_a, n, resamples, seed=7) == (once.low, once.high)
    at_once = stats.permutation_test((np.arange(n), np.arange(n) + n), absolute, permutation_type="samples",
                                     vectorized=False, n_resamples=resamples, alternative="greater",
                                     random_state=np.random.default_rng(7)).pvalue
    swapped = lambda swap: np.where(swap, b, a).mean() - np.where(swap, a, b).mean()  # noqa: E731
    assert paired_permutation_p(swapped, n, resamples, seed=7) == at_once


@pytest.mark.parametrize("seed", range(4))
def test_permutation_p_against_brute_force_enumeration(seed):
    rng = np.random.default_rng(seed)
    n = 10
    a, b = rng.random(n), rng.random(n) + 0.2 * seed

    def statistic(swap):
        return np.where(swap, b, a).mean() - np.where(swap, a, b).mean()

    observed = abs(statistic(np.zeros(n, bool)))
    every = [abs(statistic(np.array([(k >> i) & 1 for i in range(n)], bool))) for k in range(2 ** n)]
    assert paired_permutation_p(statistic, n) == pytest.approx(np.mean(np.array(every) >= observed - 1e-12))
    # Monte Carlo beyond the exact limit: close to the enumeration
    assert paired_permutation_p(statistic, n, resamples=4000, exact_below=5) == pytest.approx(
        np.mean(np.array(every) >= observed - 1e-12), abs=0.03)


@pytest.mark.parametrize("seed", range(5))
def test_mcnemar_against_the_binomial_sum_by_hand(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.random(60) < 0.6, rng.random(60) < 0.4 + 0.05 * seed
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = only_a + only_b
    by_hand = min(1.0, 2 * sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2 ** n)
    assert mcnemar_p(a, b) == pytest.approx(by_hand)


def _document(values, std=1.0):
    return {"meta": {}, "results": [{"model": m, "task": "ave", "direction": d, "metric": "accuracy", "value": v,
                                     "std": std, "primary": True} for (m, d), v in values.items()]}


def test_gate_rules():
    base = _document({("a", "V->A"): 50.0, ("a", "A->V"): 60.0})
    assert not any(r.failed(False) for r in gate(base, _document({("a", "V->A"): 48.0, ("a", "A->V"): 61.0})))
    failed = [r.key for r in gate(base, _document({("a", "V->A"): 45.0, ("a", "A->V"): 60.0})) if r.failed(False)]
    assert failed == [("a", "ave", "V->A", "accuracy")]
    missing = gate(base, _document({("a", "V->A"): 50.0}))
    assert [r.key[2] for r in missing if r.failed(False)] == ["A->V"]
    assert not any(r.failed(True) for r in missing)


@pytest.fixture(scope="module")
def two_runs(micro_data, tmp_path_factory):
    base = tmp_path_factory.mktemp("gate")
    oracle = base / "oracle.pt"
    from cmg_eval.data.synth.oracle import write_oracle
    from cmg_eval.data.synth.world import World

    write_oracle(World(0), oracle)
    for name in ("first", "second"):
        result = cli("run", "ave", "--ckpt", f"model={oracle}", "--data-root", micro_data, "--out", base / name,
                     "--cache-dir", base / "cache", "--set", "epochs=3", "--seeds", "2", "--bootstrap", "200")
        assert result.exit_code == 0, result.output
    return base


def test_same_seeds_same_numbers_and_gate_passes(two_runs):
    first = json.loads((two_runs / "first" / "results.json").read_text())
    second = json.loads((two_runs / "second" / "results.json").read_text())
    assert [r["value"] for r in first["results"]] == [r["value"] for r in second["results"]]
    assert [r["ci_low"] for r in first["results"]] == [r["ci_low"] for r in second["results"]]
    result = cli("compare", two_runs / "first" / "results.json", two_runs / "second" / "results.json")
    assert result.exit_code == 0, result.output


def test_gate_fails_on_a_drop_and_names_rows(two_runs, tmp_path):
    document = json.loads((two_runs / "first" / "results.json").read_text())
    worse = copy.deepcopy(document)
    for row in worse["results"]:
        if row["direction"] == "V->A":
            row["value"] -= 3 * row["std"] + 5
    (tmp_path / "worse.json").write_text(json.dumps(worse))
    result = cli("compare", two_runs / "first" / "results.json", tmp_path / "worse.json")
    assert result.exit_code == 1
    assert "model ave V->A" in result.output and "1 of 4 rows" in result.output


def test_report_files_and_self_contained_html(two_runs):
    import base64
    import io
    import re

    import matplotlib.image

    run = two_runs / "first"
    (run / "index.html").unlink()
    assert cli("report", run).exit_code == 0
    page = (run / "index.html").read_text()
    images = re.findall(r'<img[^>]*src="([^"]+)"', page)
    assert len(images) >= 4
    for source in images:
        assert source.startswith("data:image/png;base64,")
        data = base64.b64decode(source.split(",", 1)[1])
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and matplotlib.image.imread(io.BytesIO(data)).ndim == 3
    text = re.sub(r'src="data:image/png;base64,[^"]*"', "", page)
    assert not re.search(r"https?:|(src|href)\s*=|@import|url\(", text, re.I)
    latex = (run / "table.tex").read_text()
    assert "\\toprule" in latex and "\\bottomrule" in latex and "model" in latex
    document = json.loads((run / "results.json").read_text())
    cross = [r["value"] for r in document["results"] if r["primary"] and r["source"] != r["target"]]
    assert len(cross) == 2   # ave V->A and A->V
    assert markdown_averages((run / "table.md").read_text()) == {"model": f"{sum(cross) / 2:.2f}"}


HEAD_TASKS = {"ave", "avvp", "ave_avvp", "ucf_vgg"}   # the classification and localization tasks


def markdown_averages(text: str) -> dict[str, str]:
    """model -> the last (average) cell of table.md's primary table."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| model |") and line.endswith("| average |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line.strip("|").split("|"))
    return {cells[0].strip(): cells[-1].strip().strip("*") for cells in rows}


def test_headline_average_is_the_mean_of_cross_modal_head_columns():
    """On the committed baseline (every task): retrieval, open-set and same-modality columns are left out."""
    from cmg_eval.report.text import markdown_report

    document = json.loads((Path(__file__).parents[1] / "reports" / "baselines" / "synthetic-tiny.json").read_text())
    shown = markdown_averages(markdown_report(document))
    for model in {r["model"] for r in document["results"]}:
        values = [r["value"] for r in document["results"] if r["model"] == model and r["primary"]
                  and r["task"] in HEAD_TASKS and r["source"] != r["target"]]
        assert len(values) == 8   # four tasks x V->A, A->V
        everything = [r["value"] for r in document["results"] if r["model"] == model and r["primary"]]
        assert shown[model] == f"{np.mean(values):.2f}" != f"{np.mean(everything):.2f}"


def test_oracle_baseline_against_random_run_fails(two_runs, random_dcid, micro_data, tmp_path):
    """The same row label, a worse encoder: the gate exits 1 and names the failing rows."""
    baseline = json.loads((two_runs / "first" / "results.json").read_text())
    result = cli("run", "ave", "--ckpt", f"model={random_dcid}", "--data-root", micro_data, "--out", tmp_path / "rand",
                 "--cache-dir", tmp_path / "cache", "--set", "epochs=3", "--seeds", "2", "--bootstrap", "0")
    assert result.exit_code == 0, result.output
    (tmp_path / "base.json").write_text(json.dumps(baseline))
    gated = cli("compare", tmp_path / "base.json", tmp_path / "rand" / "results.json")
    assert gated.exit_code == 1
    assert "rows regressed or are missing: model ave" in gated.output and "model ave A->V" in gated.output


# ------------------------------------------------------------------------------------------ a gate that fails closed

GATE_METRICS = {"accuracy": False, "macro_f1": False, "medr": True}   # metric -> lower_is_better


@st.composite
def gate_documents(draw):
    """A valid results document: unique rows, finite values in range, one primary metric per task."""
    keys = draw(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["ave", "avvp"]),
                                   st.sampled_from(["V->A", "A->V", "A->A"]), st.sampled_from(sorted(GATE_METRICS))),
                         min_size=1, max_size=12, unique=True))
    primary = {"ave": "accuracy", "avvp": draw(st.sampled_from(["macro_f1", "medr"]))}
    rows = []
    for model, task, direction, metric in keys:
        lower = GATE_METRICS[metric]
        value = draw(st.floats(1, 40) if lower else st.floats(0, 100))
        rows.append({"model": model, "task": task, "direction": direction, "source": direction[0],
                     "target": direction[-1], "metric": metric, "value": value, "std": draw(st.floats(0, 5)),
                     "n_items": 50, "primary": metric == primary[task], "lower_is_better": lower})
    if not any(r["primary"] for r in rows):
        rows[0]["primary"] = True
    return {"meta": {}, "results": rows}


@st.composite
def poisoned(draw):
    """A document pair that passes the gate, then one injection: NaN or inf in any value or std of either
    side, a duplicated row (same or another value), or a non-finite or negative --k / --floor."""
    clean = draw(gate_documents())
    base, current = copy.deepcopy(clean), copy.deepcopy(clean)
    options = {"k": "3", "floor": "1"}
    kind = draw(st.sampled_from(["number", "duplicate", "threshold"]))
    if kind == "threshold":
        options[draw(st.sampled_from(["k", "floor"]))] = draw(st.sampled_from(["nan", "inf", "-inf", "-1"]))
    else:
        document = draw(st.sampled_from([base, current]))
        row = draw(st.sampled_from(document["results"]))
        if kind == "number":
            row[draw(st.sampled_from(["value", "std"]))] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        else:
            twin = {**row, "value": draw(st.sampled_from([row["value"], 0.0, 100.0]))}
            document["results"].insert(draw(st.integers(0, len(document["results"]))), twin)
    return clean, base, current, options


def write_pair(folder, base, current):
    (folder / "base.json").write_text(json.dumps(base))
    (folder / "current.json").write_text(json.dumps(current))
    return folder / "base.json", folder / "current.json"


@settings(max_examples=150, deadline=None)
@given(poisoned())
def test_compare_never_passes_a_poisoned_document(case):
    clean, base, current, options = case
    with tempfile.TemporaryDirectory() as scratch:
        assert cli("compare", *write_pair(Path(scratch), clean, clean)).exit_code == 0   # passes before the injection
        paths = write_pair(Path(scratch), base, current)
        result = cli("compare", *paths, "--k", options["k"], "--floor", options["floor"])
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("field, bad, expected", [
    ("value", math.nan, "current value nan is not finite"),
    ("std", math.inf, "current std inf is not a finite number >= 0"),
    ("std", 1e308, "current std 1e+308 exceeds the metric's range 0..100"),
    ("value", 130.0, "current value 130 is outside the metric's range 0..100"),
])
def test_gate_names_each_untrusted_number(tmp_path, field, bad, expected):
    base = _document({("a", "V->A"): 50.0, ("a", "A->V"): 60.0})
    current = copy.deepcopy(base)
    current["results"][0][field] = bad
    result = cli("compare", *write_pair(tmp_path, base, current))
    assert result.exit_code == 1
    assert f"compare: FAIL a ave V->A accuracy: {expected}" in result.output.replace("\n", " ")


def test_gate_nan_baseline_and_threshold(tmp_path):
    base = _document({("a", "V->A"): 50.0})
    base["results"][0]["std"] = math.nan
    assert cli("compare", *write_pair(tmp_path, base, _document({("a", "V->A"): 50.0}))).exit_code == 1
    good = write_pair(tmp_path, _document({("a", "V->A"): 50.0}), _document({("a", "V->A"): 50.0}))
    for option, value in (("--k", "nan"), ("--floor", "inf"), ("--k", "-1")):
        result = cli("compare", *good, option, value)
        assert result.exit_code == 1 and result.output.strip() == f"Error: {option} {float(value)}: expected a " \
                                                                  f"finite number >= 0", result.output


@pytest.mark.parametrize("change, expected", [
    (lambda row: row.pop("value"), "results[0] (a ave V->A accuracy) has no 'value', expected a number"),
    (lambda row: row.update(value="50"), "results[0] (a ave V->A accuracy): value '50' is not a number"),
    (lambda row: row.update(value=None), "results[0] (a ave V->A accuracy): value None is not a number"),
    (lambda row: row.update(std=[1]), "results[0] (a ave V->A accuracy): std [1] is not a number"),
])
def test_gate_unreadable_value_is_one_line(tmp_path, change, expected):
    base = _document({("a", "V->A"): 50.0})
    current = copy.deepcopy(base)
    change(current["results"][0])
    result = cli("compare", *write_pair(tmp_path, base, current))
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {tmp_path / 'current.json'}: {expected}"


def test_gate_duplicate_row_makes_the_document_invalid(tmp_path):
    base = _document({("a", "V->A"): 50.0})
    current = copy.deepcopy(base)
    current["results"].append({**current["results"][0], "value": 90.0})   # the last one used to win
    result = cli("compare", *write_pair(tmp_path, base, current))
    assert result.exit_code == 1
    assert "results[0] and results[1] are both a ave V->A accuracy" in result.output


def test_gate_duplicate_source_target_under_another_direction_name(tmp_path):
    base = _document({("a", "V->A"): 50.0})
    for row in base["results"]:
        row.update(source="video", target="audio")
    current = copy.deepcopy(base)
    current["results"].append({**current["results"][0], "direction": "video->audio", "value": 90.0})
    result = cli("compare", *write_pair(tmp_path, base, current))
    assert result.exit_code == 1 and "results[0] and results[1] are both" in result.output


def test_synthetic_data_is_named_in_every_heading(two_runs, tmp_path):
    """A run on the generator's data (a `synth.json` in its data root, as the default data root has) says so in
    the terminal, table.md and index.html; a run on other data does not."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(two_runs / "first", run)
    document = json.loads((run / "results.json").read_text())
    for synthetic in (False, True):
        root = tmp_path / f"data-{synthetic}"
        root.mkdir()
        if synthetic:
            (root / "synth.json").write_text(json.dumps({"size": "small", "seed": 0, "datasets": {}}))
        document["meta"]["data"]["root"] = str(root)
        (run / "results.json").write_text(json.dumps(document))
        result = cli("report", run)
        assert result.exit_code == 0, result.output
        heading = "cmg-eval results on the built-in synthetic benchmark (size small, seed 0)"
        markdown, page = (run / "table.md").read_text(), (run / "index.html").read_text()
        if synthetic:
            assert markdown.startswith(f"# {heading}\n") and f"<h1>{heading}</h1>" in page
            terminal = " ".join(result.output.split())   # the summary title may wrap
            assert terminal.startswith(heading) and "(clean protocol, built-in synthetic benchmark" in terminal
        else:
            assert markdown.startswith("# cmg-eval results\n") and "<h1>cmg-eval results</h1>" in page
            assert "built-in synthetic benchmark" not in markdown + page + result.output
