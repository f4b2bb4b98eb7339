"""The paper protocol's `encode_mode=train`: training items re-encoded each epoch with the encoder's dropout on."""

import json

import numpy as np
import pytest
from rich.progress import Progress

from cmg_eval.cache import EmbeddingCache
from cmg_eval.dropout import DropoutEncoding, torch_modules
from cmg_eval.embedder import Embedder
from cmg_eval.encoders.loading import load_model
from cmg_eval.task import FeatureSource
from conftest import cli

FAST = ["--seeds", "1", "--bootstrap", "0", "--set", "epochs=4", "--set", "paper_lr=0.05"]


def source(array):
    return FeatureSource(key="k", modality="audio", n_items=len(array), part="test", where="memory",
                         batches=lambda size: (array[i:i + size] for i in range(0, len(array), size)))


def test_dropout_encodings_are_seeded_differ_from_eval_mode_and_leave_it_in_eval_mode(random_dcid, tmp_path):
    embedder = Embedder(load_model(str(random_dcid)), EmbeddingCache(tmp_path), 8, Progress(disable=True))
    items = np.random.default_rng(0).normal(size=(12, 10, 128)).astype(np.float32)
    cached = embedder(source(items))
    encode = DropoutEncoding(embedder)
    first, again, other = encode(source(items), 1), encode(source(items), 1), encode(source(items), 2)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other) and not np.allclose(first, cached)
    assert not any(m.training for root in torch_modules(embedder.model.encoder) for m in root.modules())
    np.testing.assert_array_equal(embedder.encode_uncached(source(items)), cached)


def results(out):
    document = json.loads((out / "results.json").read_text())
    return document, {(r["direction"], r["metric"]): r["per_seed"] for r in document["results"]}


def test_paper_run_in_train_mode_is_reproducible_and_stated(micro_data, random_dcid, tmp_path):
    runs = {}
    for name, mode in (("eval", "eval"), ("train", "train"), ("train_again", "train")):
        out = tmp_path / name
        result = cli("run", "ave", "--protocol", "paper", "--ckpt", f"random={random_dcid}", "--data-root", micro_data,
                     "--out", out, "--cache-dir", tmp_path / "cache", "--set", f"encode_mode={mode}", *FAST)
        assert result.exit_code == 0, result.output
        runs[name] = results(out)
    assert runs["eval"][0]["meta"]["encode_mode"] == {"ave": "eval"}
    assert runs["train"][0]["meta"]["encode_mode"] == {"ave": "train"}
    assert runs["train"][1] == runs["train_again"][1]
    assert runs["train"][1] != runs["eval"][1]


@pytest.mark.parametrize("args, message", [
    (["--protocol", "paper", "--ckpt", "oracle={oracle}"], "has no dropout to activate"),
    (["--ckpt", "random={random}"], "a setting of the paper protocol"),
])
def test_train_mode_is_refused_in_one_line(tiny_data, random_dcid, tmp_path, args, message):
    args = [a.format(oracle=tiny_data / "oracle.pt", random=random_dcid) for a in args]
    result = cli("run", "ave", *args, "--data-root", tiny_data, "--out", tmp_path / "out", "--set", "encode_mode=train",
                 *FAST)
    assert result.exit_code != 0
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "results.json").exists()
