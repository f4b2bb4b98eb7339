"""Caption-retrieval readers: grouping, variable-length pooling, token files, one-line errors."""

import json

import h5py
import numpy as np
import pytest
import torch

from cmg_eval.data.captions import read_clotho, read_mscoco, read_msrvtt, token_lengths
from cmg_eval.data.synth import retrieval as synth
from cmg_eval.data.synth.world import World
from cmg_eval.data.zipfeat import write_feature_zip
from cmg_eval.encoders.oracle import OracleEncoder
from cmg_eval.errors import CmgError
from cmg_eval.tasks.clotho_at import ClothoAudioText
from cmg_eval.tasks.mscoco_vt import MscocoVideoText
from cmg_eval.tasks.msrvtt_vt import MsrvttVideoText

from conftest import cli

MICRO = {"msrvtt": (6, (1, 3), (1, 4)), "mscoco": (5, (5, 6), (1, 2)), "clotho": (4, (5, 5), (2, 5))}


@pytest.fixture
def micro(tmp_path, monkeypatch):
    """A few items of each retrieval set, in the release formats."""
    for name, spec in MICRO.items():
        monkeypatch.setitem(synth.SIZES[name], "tiny", spec)
    synth.write(tmp_path, World(0), "tiny", np.random.default_rng(0))
    return tmp_path


def one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_captions_grouped_per_item(tiny_data):
    written = json.loads((tiny_data / "synth.json").read_text())["datasets"]["retrieval"]
    coco = read_mscoco(tiny_data / "MSCOCO" / "val_part_1.json")
    assert len(coco.items) == written["mscoco"]["images"] >= 200          # one gallery item per image
    assert len(coco.captions) == written["mscoco"]["captions"]
    assert {len(g) for g in coco.groups()} <= {5, 6}
    clotho = read_clotho(tiny_data / "clotho2.1" / "clotho_captions_evaluation.csv")
    assert len(clotho.items) == written["clotho"]["clips"] >= 200 and len(clotho.captions) == 5 * len(clotho.items)
    msrvtt = read_msrvtt(tiny_data / "MSRVTT" / "msrvtt_1kA_test.csv")
    assert len(msrvtt.items) == written["msrvtt"]["videos"] >= 200
    assert len(msrvtt.captions) == written["msrvtt"]["captions"]
    for captions in (coco, clotho, msrvtt):
        groups = captions.groups()
        assert sorted(np.concatenate(groups).tolist()) == list(range(len(captions.captions)))
        assert all((captions.caption_item[g] == i).all() for i, g in enumerate(groups))


@pytest.mark.parametrize("task", [MsrvttVideoText, MscocoVideoText, ClothoAudioText])
def test_token_file_rows_follow_caption_ids(tiny_data, task):
    """Synthetic captions have 4-12 words: each caption's token count must be min(words, 10)."""
    data = task().load(tiny_data)
    words = np.array([min(len(c.split()), 10) for c in data.captions.captions])
    np.testing.assert_array_equal(data.file_tokens.lengths, words)
    rows = data.file_tokens.read_rows(np.arange(3))
    assert rows.shape == (3, 10, 768) and rows.dtype == np.float32
    assert (token_lengths(rows) == words[:3]).all()


def pooled_by_source(source, order, encoder):
    rows = np.concatenate([encoder.encode(source.modality, torch.from_numpy(b)).mean(1).numpy()
                           for b in source.batches(4)])
    out = np.empty_like(rows)
    out[order] = rows
    return rows, out


def test_variable_length_items_pool_over_true_length(micro, tiny_data):
    data = MsrvttVideoText().load(micro)
    encoder = OracleEncoder.from_checkpoint(torch.load(tiny_data / "oracle.pt", weights_only=True))
    source, order = data.item_source(strict=True)
    assert source.pool and source.n_items == len(data.captions.items)
    batches = list(source.batches(4))
    assert len({b.shape[1] for b in batches}) > 1 and all(b.ndim == 5 for b in batches)
    _, pooled = pooled_by_source(source, order, encoder)
    for i in range(len(data.captions.items)):
        item = data.zips.read(i)
        expected = encoder.encode("video", torch.from_numpy(item[None])).mean(1)[0].numpy()
        np.testing.assert_allclose(pooled[i], expected, rtol=1e-5, atol=1e-5)
    text, text_order = data.text_source(MsrvttVideoText.defaults, strict=True)
    _, captions = pooled_by_source(text, text_order, encoder)
    tokens = data.file_tokens.read_rows(np.arange(len(captions)))
    for c, length in enumerate(data.file_tokens.lengths):
        expected = encoder.encode("text", torch.from_numpy(tokens[c:c + 1, :length])).mean(1)[0].numpy()
        np.testing.assert_allclose(captions[c], expected, rtol=1e-5, atol=1e-5)


def test_validate_accepts_the_synthetic_sets(micro):
    result = cli("validate", "--data-root", micro, "msrvtt_vt", "mscoco_vt", "clotho_at")
    assert result.exit_code == 0, result.output
    assert result.output.count(": ok") == 3


def test_full_size_counts_match_the_releases():
    assert synth.SIZES["msrvtt"]["full"][:2] == (1000, (1, 1))             # 1k-A test: 1000 videos, 1000 captions
    assert synth.SIZES["clotho"]["full"][:2] == (1045, (5, 5))             # evaluation split: 1045 clips x 5
    assert synth.SIZES["mscoco"]["full"][0] == 5000                         # 5k test images, ~25k captions


def test_missing_zip_names_the_item(micro):
    data = MsrvttVideoText().load(micro)
    victim = data.zips.paths[2]
    victim.unlink()
    with pytest.raises(CmgError) as error:
        MsrvttVideoText().load(micro)
    message = one_line(error)
    assert str(victim) in message and repr(data.captions.items[2]) in message and "pickled (T, 7, 7, 512)" in message


def test_wrong_columns_are_named(micro):
    path = micro / "clotho2.1" / "clotho_captions_evaluation.csv"
    path.write_text(path.read_text().replace("caption_3", "caption three", 1))
    with pytest.raises(CmgError) as error:
        ClothoAudioText().load(micro)
    message = one_line(error)
    assert str(path) in message and "'caption_3'" in message and "file_name, caption_1" in message


def test_bad_annotation_is_named(micro):
    path = micro / "MSCOCO" / "val_part_1.json"
    document = json.loads(path.read_text())
    document["annotations"][3]["image_id"] = "not a number"
    path.write_text(json.dumps(document))
    with pytest.raises(CmgError) as error:
        MscocoVideoText().load(micro)
    assert str(path) in one_line(error) and "annotation 3" in str(error.value)


def test_wrong_shape_names_the_file(micro):
    data = ClothoAudioText().load(micro)
    write_feature_zip(data.zips.paths[1], np.zeros((5, 64), np.float32))
    data = ClothoAudioText().load(micro)
    source, _ = data.item_source(strict=True)
    with pytest.raises(CmgError) as error:
        list(source.batches(8))
    message = one_line(error)
    assert str(data.zips.paths[1]) in message and "(5, 64)" in message and "(T, 128)" in message


def test_non_finite_features_name_the_file(micro):
    data = MsrvttVideoText().load(micro)
    array = data.zips.read(0)
    array[0, 0, 0, 0] = np.nan
    write_feature_zip(data.zips.paths[0], array)
    data = MsrvttVideoText().load(micro)
    source, _ = data.item_source(strict=True)
    with pytest.raises(CmgError) as error:
        list(source.batches(8))
    assert str(data.zips.paths[0]) in one_line(error) and "non-finite" in str(error.value)
    source, _ = data.item_source(strict=False)            # --allow-nonfinite: the embedder masks them
    assert sum(len(b) for b in source.batches(8)) == len(data.captions.items)


def test_token_file_must_cover_every_caption(micro):
    path = micro / "MSRVTT" / "text_tokens.h5"
    with h5py.File(path, "r") as handle:
        tokens, ids = handle["tokens"][()], handle["caption_id"].asstr()[()]
    with h5py.File(path, "w") as handle:
        handle.create_dataset("tokens", data=tokens[1:])
        handle.create_dataset("caption_id", data=ids[1:].astype(object), dtype=h5py.string_dtype())
    with pytest.raises(CmgError) as error:
        MsrvttVideoText().load(micro)
    assert str(path) in one_line(error) and repr(str(ids[0])) in str(error.value)


def test_token_file_shape_is_checked(micro):
    path = micro / "clotho2.1" / "text_tokens.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("tokens", data=np.zeros((20, 10, 256), np.float32))
        handle.create_dataset("caption_id", data=np.arange(20))
    with pytest.raises(CmgError) as error:
        ClothoAudioText().load(micro)
    assert str(path) in one_line(error) and "(N, 10, 768)" in str(error.value)
