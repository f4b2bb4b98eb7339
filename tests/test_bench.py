"""`cmg-eval bench` runs end to end on small data (its numbers are reported, never asserted as timings)."""

import json

from conftest import cli


def test_bench_reports_both_loops(micro_data, random_dcid, tmp_path):
    out = tmp_path / "bench.json"
    result = cli("bench", "--data-root", micro_data, "--out", out, "--ckpt", random_dcid, "--epochs", "2")
    assert result.exit_code == 0, result.output
    ave = json.loads(out.read_text())["ave"]
    assert ave["n_clips"] == 48 and ave["epochs"] == 2
    assert ave["reference_s"] > 0 and ave["cmg_s"] > 0
    assert ave["speedup"] == ave["reference_s"] / ave["cmg_s"]
    assert set(ave["reference_accuracy"]) == set(ave["cmg_accuracy"]) == {"video", "audio"}
    encoder = json.loads(out.read_text())["encoder"]
    assert encoder["bare_clips_per_s"] > 0 and encoder["cmg_clips_per_s"] > 0


def test_bench_refuses_a_non_dcid_checkpoint(micro_data, tmp_path):
    from cmg_eval.data.synth.oracle import write_oracle
    from cmg_eval.data.synth.world import World

    write_oracle(World(0), tmp_path / "oracle.pt")
    result = cli("bench", "--data-root", micro_data, "--out", tmp_path / "b.json", "--ckpt", tmp_path / "oracle.pt")
    assert result.exit_code != 0 and "expected a DCID-layout one" in result.output
    assert not (tmp_path / "b.json").exists()
