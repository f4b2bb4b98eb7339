"""Pretraining under torchrun: 2 CPU processes (gloo) split each step's batch and end with identical models."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from cmg_eval.encoders.loading import load_checkpoint
from cmg_eval.errors import CmgError
from cmg_eval.train.distributed import Ranks
from cmg_eval.train.data import batch_items
from conftest import cli

SMALL = ["hidden=16", "ff_dim=16", "n_heads=2", "se_hidden=4", "video_output_dim=8", "audio_output_dim=8",
         "text_output_dim=8", "text_lstm_hidden=4", "n_embeddings=24", "mi_iters=1", "log_every=1"]
# 5 clips a step split 3 + 2; codes unused for 2 steps are reset (random); SRCID's layer 2 joins at step 1.
SETTINGS = [*SMALL, "batch_size=5", "steps=3", "reset_after=1", "reset_active_within=2", "layer2_max_step=1"]

# Runs the real CLI under torchrun; after training, each rank saves what it holds and the clips it saw.
WORKER = '''
import os, sys
import torch
from cmg_eval.train import trainer as training

original_run = training.Trainer.run

def run(self, report=lambda _: None):
    seen, batch = [], self.data.batch
    self.data.batch = lambda items: (seen.append([int(i) for i in items]), batch(items))[1]
    result = original_run(self, report)
    state = {name: module.state_dict() for name, module in self.parts.items()}
    state.update({key: club.net.state_dict() for key, club in self.method.mi_nets().items()})
    torch.save({"state": state, "seen": seen, "method_state": self.method.state(), "world": self.ranks.world,
                "rng": torch.get_rng_state()}, os.path.join(os.environ["DDP_TEST_DUMP"], f"rank{self.ranks.rank}.pt"))
    return result

training.Trainer.run = run
from cmg_eval.cli import main
main(sys.argv[1:], prog_name="cmg-eval")
'''



def torchrun(root, out, dump, *settings):
    """`cmg-eval pretrain srcid` on 2 gloo processes; each rank's final state, loaded from its dump."""
    worker = dump / "worker.py"
    worker.write_text(WORKER)
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker),
            "pretrain", "srcid", "--data-root", str(root), "--out", str(out)]
    for setting in settings:
        args += ["--set", setting]
    env = {**os.environ, "DDP_TEST_DUMP": str(dump), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("wrote srcid checkpoint") == 1 and "on 2 processes" in done.stdout  # rank 0 only
    return [torch.load(dump / f"rank{r}.pt", weights_only=False) for r in range(2)]


def assert_same_state(ranks, ckpt):
    compared = 0
    for part, tensors in ranks[0]["state"].items():
        for key, value in tensors.items():
            assert torch.equal(value, ranks[1]["state"][part][key]), f"{part} {key} differs between ranks"
            assert torch.equal(value, ckpt[part][key]), f"{part} {key} differs from the checkpoint"
            compared += 1
    assert compared > 100 and "Cross_quantizer.ema_count" in ranks[0]["state"]["Encoder_parameters"]
    assert ranks[0]["method_state"] == ranks[1]["method_state"] and torch.equal(ranks[0]["rng"], ranks[1]["rng"])


def test_two_gloo_ranks_end_identical(pretrain_root, tmp_path):
    out = tmp_path / "srcid.pt"
    ranks = torchrun(pretrain_root, out, tmp_path, *SETTINGS)
    ckpt = load_checkpoint(out)
    assert ckpt["world_size"] == 2 and ckpt["total_step"] == 3 and ranks[0]["world"] == 2
    assert ckpt["layer2_start_step"] == 1

    # each rank trained on its own part of the single-process batch of every step
    for step, (first, second) in enumerate(zip(ranks[0]["seen"], ranks[1]["seen"])):
        assert len(first) == 3 and len(second) == 2 and not set(first) & set(second)
        assert first + second == batch_items(43, step, 5, 24).tolist()
    assert len(ranks[0]["seen"]) == 3

    # ... and both hold the same weights, buffers (codebook EMA, reset counters), switch and random state
    assert_same_state(ranks, ckpt)

    # resumed under torchrun, both ranks continue from the checkpoint and stay identical
    ranks = torchrun(pretrain_root, out, tmp_path, *[s.replace("steps=3", "steps=4") for s in SETTINGS])
    ckpt = load_checkpoint(out)
    assert ckpt["total_step"] == 4 and [len(r["seen"]) for r in ranks] == [1, 1]
    assert ranks[0]["seen"][0] + ranks[1]["seen"][0] == batch_items(43, 3, 5, 24).tolist()
    assert_same_state(ranks, ckpt)


def test_single_process_records_world_size(pretrain_root, tmp_path):
    out = tmp_path / "dcid.pt"
    args = ["pretrain", "dcid", "--data-root", pretrain_root, "--out", out]
    for setting in [*SMALL, "batch_size=4", "steps=1"]:
        args += ["--set", setting]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out)["world_size"] == 1 and "processes" not in result.output


def test_batch_split():
    items = np.arange(10, 15)
    assert Ranks().share(items).tolist() == items.tolist()
    parts = [Ranks(rank, 2).share(items).tolist() for rank in range(2)]
    assert parts == [[10, 11, 12], [13, 14]]
    with pytest.raises(CmgError, match="cannot be split over 3 processes"):
        Ranks(0, 3).share(items[:2])
