"""`pretrain --device`: the device path on the CPU, read-ahead workers, and the one-line error without a GPU."""

from pathlib import Path

import pytest
import torch

from cmg_eval import registry
from cmg_eval.encoders.loading import load_checkpoint
from cmg_eval.train.data import load_pretrain_set
from cmg_eval.train.presets import resolve_settings
from cmg_eval.train.trainer import Trainer
from conftest import cli

SMALL = ["hidden=16", "ff_dim=16", "n_heads=2", "se_hidden=4", "video_output_dim=8", "audio_output_dim=8",
         "text_output_dim=8", "text_lstm_hidden=4", "n_embeddings=24", "batch_size=4", "mi_iters=1", "log_every=1",
         "reset_after=0", "reset_active_within=2"]  # every unused code is reset at every step


pytestmark = pytest.mark.usefixtures("one_torch_thread")



def trainer(root: Path, method: str) -> Trainer:
    extra = ["layer2_min_step=1", "layer2_max_step=1"] if method == "srcid" else []
    settings = resolve_settings("tiny", registry.methods.get(method).defaults, [*SMALL, *extra])
    return Trainer(method, load_pretrain_set(root), settings, "tiny", root / f"{method}.pt", device="cpu")


@pytest.mark.parametrize("method", ["dcid", "cmcm", "srcid", "dcid-fsq", "dcid-rvq2"])
def test_a_step_makes_every_tensor_on_the_model_device(pretrain_root, method):
    """With torch's default device set to `meta`, any tensor a step creates without naming its device
    (a loss accumulator, a used-codes mask, a reset draw) lands on `meta` and the step fails; the
    methods build theirs on the device of their inputs, or draw random numbers on the CPU on purpose."""
    train = trainer(pretrain_root, method)
    batches = train.batches()
    for step in range(2):  # optimizer states exist; SRCID's layer 2 is on
        train.train_step(batches[step])
        train.step += 1
    batch = batches[2]
    with torch.device("meta"):
        result = train.method.step(batch, train.step)
        total = sum(result.losses.values())
    assert total.device.type == "cpu" and torch.isfinite(total)
    total.backward()
    with torch.device("meta"):
        for update in result.updates:  # codebook EMA and dead-code resets
            update()
    buffers = [b for m in train.parts.values() for b in m.buffers()]
    assert buffers == [] or all(b.device.type == "cpu" and torch.isfinite(b.float()).all() for b in buffers)


def pretrain(root, out, *options):
    args = ["pretrain", "dcid", "--data-root", root, "--out", out, *options]
    for setting in [*SMALL, "steps=4"]:
        args += ["--set", setting]
    return cli(*args)


def test_explicit_device_and_read_ahead_workers_give_the_same_checkpoint(pretrain_root, tmp_path):
    """The default, `--device cpu` and `--device cpu --workers 2` (batches read in worker processes)
    train the same model: loading never touches the training random state."""
    paths = [tmp_path / f"{name}.pt" for name in ("default", "cpu", "workers")]
    for path, options in zip(paths, [(), ("--device", "cpu"), ("--device", "cpu", "--workers", "2")]):
        result = pretrain(pretrain_root, path, *options)
        assert result.exit_code == 0, result.output
        assert "s/step on cpu" in result.output
    first = load_checkpoint(paths[0])
    assert first["device"] == "cpu"
    for other in map(load_checkpoint, paths[1:]):
        for part in ("Encoder_parameters", "Decoder_parameters", "Video_mi_net_parameters"):
            for key, value in first[part].items():
                assert torch.equal(value, other[part][key]), f"{part} {key}"
        assert torch.equal(first["rng_state"], other["rng_state"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_a_one_line_error(pretrain_root, tmp_path):
    out = tmp_path / "dcid.pt"
    result = pretrain(pretrain_root, out, "--device", "cuda")
    assert result.exit_code == 1 and not out.exists()
    assert result.output.strip().count("\n") == 0 and "--device cuda: torch sees no GPU" in result.output
