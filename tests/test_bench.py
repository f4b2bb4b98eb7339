"""`cmg-eval bench` runs end to end on small data (its numbers are reported, never asserted as timings)."""

import json

import numpy as np
import pytest
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


def test_bench_reports_both_loops(micro_ave_avvp, random_dcid, tmp_path):
    out = tmp_path / "bench.json"
    result = cli("bench", "--data-root", micro_ave_avvp, "--out", out, "--ckpt", random_dcid, "--epochs", "2")
    assert result.exit_code == 0, result.output
    ave = json.loads(out.read_text())["ave"]
    assert FIELDS <= set(ave)
    assert ave["n_clips"] == 48 and ave["epochs"] == 2
    assert ave["reference_s"] > 0 and ave["cmg_s"] > 0
    assert ave["speedup"] == ave["reference_s"] / ave["cmg_s"]
    assert set(ave["reference_accuracy"]) == set(ave["cmg_accuracy"]) == {"video", "audio"}
    avvp = json.loads(out.read_text())["avvp"]
    assert FIELDS <= set(avvp)
    audio_rows = len((micro_ave_avvp / "AVVP/data/AVVP_eval_audio_checked_combined.csv").read_text().splitlines()) - 1
    assert avvp["n_clips"] == audio_rows and avvp["epochs"] == 2 and avvp["source"] == "audio"
    assert avvp["reference_s"] > 0 and avvp["cmg_s"] > 0 and avvp["speedup"] == avvp["reference_s"] / avvp["cmg_s"]
    assert set(avvp["reference_legacy_precision"]) == set(avvp["cmg_legacy_precision"]) == {"video", "audio"}
    encoder = json.loads(out.read_text())["encoder"]
    assert encoder["bare_clips_per_s"] > 0 and encoder["cmg_clips_per_s"] > 0


def test_bench_refuses_a_non_dcid_checkpoint(micro_data, tmp_path):
    from cmg_eval.data.synth.oracle import write_oracle
    from cmg_eval.data.synth.world import World

    write_oracle(World(0), tmp_path / "oracle.pt")
    result = cli("bench", "--data-root", micro_data, "--out", tmp_path / "b.json", "--ckpt", tmp_path / "oracle.pt")
    assert result.exit_code != 0 and "expected a DCID-layout one" in result.output
    assert not (tmp_path / "b.json").exists()
