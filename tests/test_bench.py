"""`cmg-eval bench` runs end to end on small data (its numbers are reported, never asserted as timings)."""

import json

import numpy as np
import pytest
import torch
from conftest import cli, write_micro_ave

from cmg_eval.data.synth import avvp as synth_avvp
from cmg_eval.data.synth.world import World

FIELDS = {"speedup", "reference_s", "cmg_s", "n_clips", "epochs", "reference_ms_per_clip_epoch", "peak_rss_mib"}


@pytest.fixture(scope="module")
def micro_ave_avvp(tmp_path_factory):
    """The micro AVE clips plus 40 AVVP clips (AVVP's writer reads the AVE labels, so AVE comes first)."""
    root = write_micro_ave(tmp_path_factory.mktemp("micro-ave-avvp"))
    synth_avvp.write(root, World(0), "tiny", np.random.default_rng(0), count=40)
    return root


def test_bench_times_what_run_computes(micro_ave_avvp, random_dcid, tmp_path):
    """cmg-eval's side of the bench is the paper protocol of `cmg-eval run`: the same numbers for the same data,
    checkpoint, source and epochs; the reference side scores the same targets."""
    out = tmp_path / "bench.json"
    result = cli("bench", "--data-root", micro_ave_avvp, "--out", out, "--ckpt", random_dcid, "--epochs", "2")
    assert result.exit_code == 0, result.output
    bench = json.loads(out.read_text())
    run = cli("run", "ave,avvp", "--ckpt", f"r={random_dcid}", "--data-root", micro_ave_avvp, "--out", tmp_path / "run",
              "--cache-dir", tmp_path / "cache", "--protocol", "paper", "--directions", "A->V,A->A",
              "--set", "epochs=2", "--bootstrap", "0")
    assert run.exit_code == 0, run.output
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["results"]
    audio_rows = len((micro_ave_avvp / "AVVP/data/AVVP_eval_audio_checked_combined.csv").read_text().splitlines()) - 1
    for task, metric, clips in (("ave", "accuracy", 48), ("avvp", "legacy_precision", audio_rows)):
        measured = bench[task]
        assert FIELDS <= set(measured) and measured["source"] == "audio"
        assert measured["n_clips"] == clips and measured["epochs"] == 2
        assert measured["reference_s"] > 0 and measured["cmg_s"] > 0
        ran = {r["target"]: r["value"] for r in rows if r["task"] == task and r["metric"] == metric}
        assert measured[f"cmg_{metric}"] == pytest.approx(ran) and set(ran) == {"video", "audio"}
        reference = measured[f"reference_{metric}"]
        assert set(reference) == {"video", "audio"} and all(0 <= v <= 100 for v in reference.values())
    encoder = bench["encoder"]
    assert encoder["bare_clips_per_s"] > 0 and encoder["cmg_clips_per_s"] > 0 and encoder["read_and_forward_ratio"] > 0


def test_reference_loop_encodes_the_same_codes(random_dcid):
    """The pinned reference-style encoder (float64, explicit spatial attention) lands on cmg-eval's codes."""
    from cmg_eval.bench import ReferenceEncoder
    from cmg_eval.encoders.base import example_inputs
    from cmg_eval.encoders.loading import load_model

    encoder = load_model(str(random_dcid)).encoder
    reference = ReferenceEncoder(encoder)
    for modality in ("video", "audio"):
        feats = example_inputs(modality, batch=4)
        ours = encoder.encode(modality, feats)
        theirs = reference(modality, feats.double()).float()
        assert torch.equal(ours, theirs)


def test_bench_refuses_a_non_dcid_checkpoint(micro_data, tmp_path):
    from cmg_eval.data.synth.oracle import write_oracle
    from cmg_eval.data.synth.world import World

    write_oracle(World(0), tmp_path / "oracle.pt")
    result = cli("bench", "--data-root", micro_data, "--out", tmp_path / "b.json", "--ckpt", tmp_path / "oracle.pt")
    assert result.exit_code != 0 and "expected a DCID-layout one" in result.output
    assert not (tmp_path / "b.json").exists()
