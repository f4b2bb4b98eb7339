"""Sharded runs merge to the single-process result; a killed run resumes; concurrent runs share a cache."""

import json
import subprocess
import sys
import time

import pytest

from conftest import cli

ARGS = ["--set", "epochs=2", "--seeds", "2", "--bootstrap", "100"]


def command(*args) -> list[str]:
    return [sys.executable, "-m", "cmg_eval.cli", *map(str, args)]


def comparable(document: dict) -> dict:
    """What must agree between runs: rows, comparisons, and meta other than timing and provenance."""
    volatile = {"timings", "peak_rss_mib", "cache", "command", "started_at", "merged", "git_commit",
                "nonfinite_masked_items"}
    meta = {k: v for k, v in document["meta"].items() if k not in volatile}
    meta["jobs"] = {"count": meta["jobs"]["count"]}
    return {"results": document["results"], "comparisons": document["comparisons"], "meta": meta}


@pytest.fixture(scope="module")
def setup(micro_data, tmp_path_factory):
    from cmg_eval.data.synth.oracle import write_oracle
    from cmg_eval.data.synth.world import World

    base = tmp_path_factory.mktemp("shards")
    write_oracle(World(0), base / "oracle.pt")
    run = ["run", "ave", "--ckpt", f"oracle={base / 'oracle.pt'}", "--ckpt", f"other={base / 'oracle.pt'}",
           "--data-root", micro_data, *ARGS]
    single = cli(*run, "--out", base / "single", "--cache-dir", base / "cache-single")
    assert single.exit_code == 0, single.output
    return base, run, json.loads((base / "single" / "results.json").read_text())


def test_three_shards_merge_to_the_single_process_result(setup):
    base, run, single = setup
    processes = [subprocess.Popen(command(*run, "--out", base / "sharded", "--cache-dir", base / "cache-shards",
                                          "--shard", f"{i}/3"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for i in range(3)]
    for process in processes:
        output = process.communicate(timeout=300)[0].decode()
        assert process.returncode == 0, output
    assert not (base / "sharded" / "results.json").exists()
    merged = cli("merge", base / "sharded")
    assert merged.exit_code == 0, merged.output
    assert comparable(json.loads((base / "sharded" / "results.json").read_text())) == comparable(single)


def test_merge_with_a_missing_shard_fails(setup):
    base, run, _ = setup
    assert cli(*run, "--out", base / "partial", "--cache-dir", base / "cache-partial", "--shard", "0/2").exit_code == 0
    result = cli("merge", base / "partial")
    assert result.exit_code != 0 and "jobs not finished" in result.output
    assert not (base / "partial" / "results.json").exists()


def test_killed_run_resumes_to_the_same_result(setup):
    base, run, single = setup
    out = base / "killed"
    process = subprocess.Popen(command(*run, "--out", out, "--cache-dir", base / "cache-killed"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((out / "jobs").rglob("*.json")) and time.time() < deadline:
        time.sleep(0.05)
    process.kill()
    process.wait()
    done_before = len(list((out / "jobs").rglob("*.json")))
    assert done_before >= 1 and not (out / "results.json").exists()
    resumed = cli(*run, "--out", out, "--cache-dir", base / "cache-killed")
    assert resumed.exit_code == 0, resumed.output
    document = json.loads((out / "results.json").read_text())
    assert document["meta"]["timings"]["resumed_jobs"] >= min(done_before, 1)
    assert comparable(document) == comparable(single)


def test_concurrent_runs_share_one_cache(setup):
    base, run, single = setup
    processes = [subprocess.Popen(command(*run, "--out", base / f"concurrent{i}", "--cache-dir", base / "cache-shared"),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i in range(2)]
    for process in processes:
        output = process.communicate(timeout=300)[0].decode()
        assert process.returncode == 0, output
    for i in range(2):
        assert comparable(json.loads((base / f"concurrent{i}" / "results.json").read_text())) == comparable(single)
    entries = list((base / "cache-shared" / "embeddings").rglob("*.npy"))
    assert len(entries) == 2  # oracle: each AVE file (2 modalities) encoded once though two runs wanted it
    assert not list((base / "cache-shared").rglob("*.partial"))


def plan_status(output: str) -> dict[str, str]:
    """job id -> done / pending, from `cmg-eval plan`'s table."""
    rows = [line.split("│") for line in output.splitlines() if line.startswith("│")]
    return {cells[1].strip(): cells[4].strip() for cells in rows if len(cells) > 5 and cells[1].strip()}


def test_plan_sees_the_jobs_run_ran(micro_data, user_weights, tmp_path):
    """`run` takes a space list, `plan` takes run's --directions and --device: with the same options every job
    is done; with another device or other directions (jobs of their own) none is."""
    common = ["--ckpt", f"mine={user_weights}", "--encoder", "user_models:projection", "--data-root", micro_data,
              "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache", "--directions", "V->A,A->A",
              "--set", "epochs=2", "--seeds", "1"]
    result = cli("run", "ave", "avvp", *common[:-4], "--directions", "V->A", "--set", "epochs=2", "--seeds", "1",
                 "--bootstrap", "0")
    assert result.exit_code == 1 and "AVVP_Categories.txt: missing file" in result.output  # both tasks were read
    result = cli("run", "ave", *common, "--bootstrap", "0")
    assert result.exit_code == 0, result.output
    done = plan_status(cli("plan", "ave", *common).output)
    assert done and set(done.values()) == {"done"}
    elsewhere = plan_status(cli("plan", "ave", *common, "--device", "cuda").output)
    assert elsewhere.keys() == done.keys() and set(elsewhere.values()) == {"pending"}
    # without --directions (all plan could do before) the same jobs have more targets: not what run ran
    wider = plan_status(cli("plan", "ave,", *common[:-6], "--set", "epochs=2", "--seeds", "1").output)
    assert wider.keys() == done.keys() and set(wider.values()) == {"pending"}


@pytest.mark.parametrize("env, expected, said", [
    ({"RANK": "1", "WORLD_SIZE": "4"}, (0, 1), "RANK / WORLD_SIZE are set but not used"),
    ({"RANK": "1", "WORLD_SIZE": "4", "CMG_EVAL_SHARD_FROM_RANK": "1"}, (1, 4), "shard 1/4 from RANK / WORLD_SIZE"),
    ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "3"}, (2, 4),
     "shard 2/4 from SLURM_ARRAY_TASK_ID"),
])
def test_shard_from_the_environment_says_so(monkeypatch, capsys, env, expected, said):
    from cmg_eval.cli import parse_shard

    for name in ("RANK", "WORLD_SIZE", "CMG_EVAL_SHARD_FROM_RANK", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT",
                 "SLURM_ARRAY_TASK_MIN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert parse_shard(None) == expected
    assert said in capsys.readouterr().err
