"""Shared fixtures: generated data and checkpoints, built once per test session."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cmg_eval.cli import main
from cmg_eval.data.synth import synthesize
from cmg_eval.data.synth import ave as synth_ave
from cmg_eval.data.synth.world import World
from cmg_eval.encoders.dcid import DcidEncoder
from cmg_eval.io import save_checkpoint

sys.path.insert(0, str(Path(__file__).parent))  # so `--encoder user_models:factory` imports

MICRO_COUNTS = (48, 16, 16)  # 80 clips


class CreatesFile:
    """A pickle payload whose loading would create a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CMG_EVAL_CACHE", str(tmp_path / "default-cache"))


def cli(*args: str) -> "click.testing.Result":
    """Run `cmg-eval ARGS` in process."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def write_micro_ave(root: Path, dtype=np.float32, seed: int = 0) -> Path:
    """A few dozen AVE clips in the release format (for reader and error tests)."""
    synth_ave.write(root, World(seed), "tiny", np.random.default_rng(seed), dtype=dtype, counts=MICRO_COUNTS)
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """`cmg-eval data synth --size tiny` output (with oracle.pt)."""
    return synthesize(tmp_path_factory.mktemp("tiny"), "tiny", 0)


@pytest.fixture(scope="session")
def micro_data(tmp_path_factory) -> Path:
    return write_micro_ave(tmp_path_factory.mktemp("micro"))


@pytest.fixture(scope="session")
def random_dcid(tmp_path_factory) -> Path:
    """`ckpt init dcid` checkpoint: the full public layout in float64."""
    path = tmp_path_factory.mktemp("ckpt") / "random.pt"
    save_checkpoint(DcidEncoder.init_checkpoint(seed=0), path)
    return path


@pytest.fixture(scope="session")
def public_dcid(tmp_path_factory) -> Path:
    """A checkpoint as the reference saves it: no `method`, no `config`, the keys downstream reads."""
    ckpt = DcidEncoder.init_checkpoint(seed=1)
    path = tmp_path_factory.mktemp("public") / "DCID-model-4.pt"
    save_checkpoint({"Encoder_parameters": ckpt["Encoder_parameters"],
                     "Text_ar_lstm_parameters": ckpt["Text_ar_lstm_parameters"], "epoch": 4, "total_step": 100}, path)
    return path


@pytest.fixture(scope="session")
def user_weights(tmp_path_factory) -> Path:
    generator = torch.Generator().manual_seed(0)
    path = tmp_path_factory.mktemp("user") / "projection.pt"
    torch.save({"video": torch.randn(512, 16, generator=generator),
                "audio": torch.randn(128, 16, generator=generator)}, path)
    return path


@pytest.fixture(scope="session")
def micro_clip_data(tmp_path_factory) -> Path:
    """Micro AVE plus a few dozen AVVP, AVE->AVVP, UCF101 and VGGSound clips in the release formats, and
    the world's `oracle.pt`."""
    from cmg_eval.data.synth import avvp as synth_avvp, ucf_vgg as synth_ucf_vgg
    from cmg_eval.data.synth.oracle import write_oracle

    root = write_micro_ave(tmp_path_factory.mktemp("micro-clips"))
    synth_avvp.write(root, World(0), "tiny", np.random.default_rng(1), count=40)
    synth_ucf_vgg.write(root, World(0), "tiny", np.random.default_rng(2), counts=(48, 64))
    write_oracle(World(0), root / "oracle.pt")
    return root


@pytest.fixture(scope="session")
def clip_tasks_run(tiny_data, random_dcid, tmp_path_factory) -> Path:
    """The AVVP / AVE->AVVP / UCF<->VGG must-show run on tiny data with default head settings (its folder); 100
    item resamples instead of 1000 (its tests read per-seed values; other runs check the intervals)."""
    base = tmp_path_factory.mktemp("clip-tasks-run")
    result = cli("run", "avvp,ave_avvp,ucf_vgg", "--ckpt", f"oracle={tiny_data / 'oracle.pt'}",
                 "--ckpt", f"random={random_dcid}", "--data-root", tiny_data, "--out", base / "run",
                 "--cache-dir", base / "cache", "--bootstrap", "100")
    assert result.exit_code == 0, result.output
    return base / "run"


@pytest.fixture
def one_torch_thread():
    """Tiny models: one thread avoids hand-offs between threads that cost more than the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def pretrain_root(tmp_path_factory) -> Path:
    """A 24-clip VGGSound-AVEL40k in its release layout (read-only: tests that damage it copy it first)."""
    from cmg_eval.data.synth import vggsound40k

    root = tmp_path_factory.mktemp("vggsound40k")
    vggsound40k.write(root, World(0), "tiny", np.random.default_rng(0), clips=24)
    return root
