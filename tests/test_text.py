"""Text featurizers: the BERT plumbing on a randomly initialised tiny BERT, offline-only loading, errors."""

import inspect
import string
import sys

import numpy as np
import pytest

from cmg_eval.data.synth import retrieval as synth
from cmg_eval.data.synth.world import World
from cmg_eval.errors import CmgError
from cmg_eval.text import BertFeaturizer, featurizers, make_featurizer, pad_words, words_of

from conftest import cli

CAPTIONS = ["bado keti", "zzq " * 3 + "fina", " ".join(synth.vocabulary()[:14]), "tak"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A random 1-layer BERT with 768-d outputs and a word-piece vocabulary, saved as a local folder."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tiny-bert")
    letters = list(string.ascii_lowercase)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *synth.vocabulary()[:20], *letters,
             *(f"##{c}" for c in letters)]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    if "vocab_file" in inspect.signature(transformers.BertTokenizerFast.__init__).parameters:  # transformers 4
        tokenizer = transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    else:
        tokenizer = transformers.BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)})
    tokenizer.save_pretrained(folder)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=768, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    transformers.set_seed(0)
    transformers.BertModel(config).save_pretrained(folder)
    return folder


def test_bert_featurizer_averages_word_pieces(tiny_bert):
    import torch
    from transformers import AutoModel, AutoTokenizer

    featurizer = make_featurizer("bert", str(tiny_bert), fallback="provide tokens")
    tokens = featurizer(CAPTIONS)
    assert tokens.shape == (len(CAPTIONS), 10, 768) and tokens.dtype == np.float32
    counts = [2, 4, 10, 1]                                                # words kept, 10 at most
    for row, count in zip(tokens, counts):
        assert (np.abs(row[:count]).sum(1) > 0).all() and not row[count:].any()
    tokenizer, model = AutoTokenizer.from_pretrained(tiny_bert), AutoModel.from_pretrained(tiny_bert).eval()
    encoded = tokenizer(CAPTIONS[1], return_tensors="pt")
    with torch.no_grad():
        hidden = model(**encoded).last_hidden_state[0].numpy()
    pieces = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    assert pieces[1:4] == ["z", "##z", "##q"]                             # "zzq" is three word-pieces
    np.testing.assert_allclose(tokens[1, 0], hidden[1:4].mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(tokens[1, 3], hidden[10:14].mean(0), rtol=1e-4, atol=1e-5)  # "fina": f ##i ##n ##a
    assert featurizer.identity() == make_featurizer("bert", str(tiny_bert), "x").identity()


def test_run_with_the_featurizer_instead_of_a_token_file(tiny_bert, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setitem(synth.SIZES["msrvtt"], "tiny", (8, (1, 2), (1, 3)))
    synth.write_msrvtt(tmp_path / "data", World(0), "tiny", np.random.default_rng(0))
    (tmp_path / "data" / "MSRVTT" / "text_tokens.h5").unlink()
    args = ["run", "msrvtt_vt", "--ckpt", f"oracle={tiny_data / 'oracle.pt'}", "--data-root", tmp_path / "data",
            "--cache-dir", tmp_path / "cache", "--bootstrap", "0"]
    result = cli(*args, "--out", tmp_path / "run", "--set", f"text_model={tiny_bert}")
    assert result.exit_code == 0, result.output
    assert "MSRVTT/text_tokens.h5" not in (tmp_path / "run" / "table.md").read_text()


def test_missing_model_is_one_line_that_says_how_to_provide_features(tmp_path):
    with pytest.raises(CmgError) as error:
        make_featurizer("bert", str(tmp_path / "no-such-bert"), fallback="provide MSRVTT/text_tokens.h5")
    message = str(error.value)
    assert "\n" not in message and "text_model" in message and "MSRVTT/text_tokens.h5" in message


def test_without_transformers_the_error_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)           # import fails as if not installed
    with pytest.raises(CmgError, match="transformers is not installed.*text_tokens.h5"):
        BertFeaturizer("bert-base-uncased", fallback="provide clotho2.1/text_tokens.h5")


def test_run_without_tokens_or_model_fails_with_one_line(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setitem(synth.SIZES["clotho"], "tiny", (3, (5, 5), (2, 3)))
    synth.write_clotho(tmp_path / "data", World(0), "tiny", np.random.default_rng(0))
    (tmp_path / "data" / "clotho2.1" / "text_tokens.h5").unlink()
    result = cli("run", "clotho_at", "--ckpt", f"oracle={tiny_data / 'oracle.pt'}", "--data-root", tmp_path / "data",
                 "--out", tmp_path / "run", "--cache-dir", tmp_path / "cache",
                 "--set", f"text_model={tmp_path / 'absent'}")
    assert result.exit_code != 0
    assert "text_tokens.h5" in result.output and "text_model" in result.output


def test_file_setting_requires_the_token_file(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setitem(synth.SIZES["clotho"], "tiny", (3, (5, 5), (2, 3)))
    synth.write_clotho(tmp_path / "data", World(0), "tiny", np.random.default_rng(0))
    (tmp_path / "data" / "clotho2.1" / "text_tokens.h5").unlink()
    result = cli("run", "clotho_at", "--ckpt", f"oracle={tiny_data / 'oracle.pt'}", "--data-root", tmp_path / "data",
                 "--out", tmp_path / "run", "--cache-dir", tmp_path / "cache", "--set", "text_features=file")
    assert result.exit_code != 0 and "text_tokens.h5: missing" in result.output


def test_helpers_and_registry():
    hidden = np.arange(5 * 768, dtype=np.float32).reshape(5, 768)
    words = words_of([None, 0, 0, 1, None], hidden)                    # specials dropped, pieces averaged
    np.testing.assert_array_equal(words, np.stack([hidden[1:3].mean(0), hidden[3]]))
    padded = pad_words([np.ones((12, 768), np.float32), np.ones((3, 768), np.float32)])
    assert padded.shape == (2, 10, 768) and padded[0].all() and not padded[1, 3:].any()
    assert "bert" in featurizers.names()
    with pytest.raises(CmgError, match="unknown text featurizer"):
        make_featurizer("nope", "", "")
