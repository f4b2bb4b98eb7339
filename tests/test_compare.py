"""Statistics (bootstrap coverage, paired tests) and the regression gate."""

import copy
import json

import numpy as np
import pytest
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


@pytest.mark.parametrize("seed", range(4))
def test_permutation_p_against_scipy_exact(seed):
    rng = np.random.default_rng(seed)
    n = 10
    a, b = rng.random(n), rng.random(n) + 0.2 * seed

    def statistic(swap):
        return np.where(swap, b, a).mean() - np.where(swap, a, b).mean()

    ours = paired_permutation_p(statistic, n)
    reference = stats.permutation_test((a, b), lambda x, y: np.mean(x) - np.mean(y), permutation_type="samples",
                                       alternative="two-sided", n_resamples=np.inf).pvalue
    assert ours == pytest.approx(reference)


@pytest.mark.parametrize("seed", range(5))
def test_mcnemar_against_binomial_test(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.random(60) < 0.6, rng.random(60) < 0.4 + 0.05 * seed
    discordant_a, discordant_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    reference = stats.binomtest(discordant_a, discordant_a + discordant_b, 0.5).pvalue
    assert mcnemar_p(a, b) == pytest.approx(reference)


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
    assert "average" in (run / "table.md").read_text()


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
