"""AVVP and AVE->AVVP: release readers, synthetic data, cross-fitting, the paper loop and the must-show run."""

import json
import shutil

import h5py
import numpy as np
import pytest
import torch
from rich.progress import Progress

import cmg_eval.headtask as headtask_module
from cmg_eval.cache import EmbeddingCache
from cmg_eval.data.annotations import (assign_folds, assign_folds_multilabel, read_class_list, read_event_csv,
                                       read_label_map)
from cmg_eval.data.zipfeat import read_feature_zip
from cmg_eval.embedder import Embedder
from cmg_eval.encoders.loading import load_model
from cmg_eval.errors import CmgError
from cmg_eval.headtask import Fold, HeadPlan, Labeled
from cmg_eval.heads import SegmentDecoder, train
from cmg_eval.localization import LOCALIZATION_METRICS, ExpLogLoss, LocalizationTask
from cmg_eval.metrics import localization
from cmg_eval.task import SourceRun
from conftest import cli
from cmg_eval.tasks.ave_avvp import AveAvvp
from cmg_eval.tasks.avvp import Avvp

CLASSES = ["Speech", "Violin_fiddle", "Dog"]
HEADER = "filename\tonset\toffset\tevent_labels\n"
FAST = ["--set", "epochs=2", "--seeds", "1", "--bootstrap", "0"]


def write(path, text):
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------ readers


def test_combined_rows_become_segment_labels(tmp_path):
    csv = write(tmp_path / "a.csv", HEADER + "IgN7v8nWmx8_30_40\t0,5,0,6,9\t1,9,5,8,10\t"
                                             "Speech,Speech,Violin_fiddle,Violin_fiddle,Violin_fiddle\n"
                                             "abcdefghijk_0_10\t3\t4\tDog\n")
    table = read_event_csv(csv, CLASSES)
    assert table.names == ["IgN7v8nWmx8_30_40", "abcdefghijk_0_10"] and table.lines == [2, 3]
    assert table.feature_ids() == ["IgN7v8nWmx8", "abcdefghijk"]
    first = table.labels[0]
    assert first.shape == (10, 4)
    assert first[:, 0].tolist() == [1, 0, 0, 0, 0, 1, 1, 1, 1, 0]      # Speech 0-1 and 5-9
    assert first[:, 1].tolist() == [1, 1, 1, 1, 1, 0, 1, 1, 0, 1]      # Violin 0-5, 6-8, 9-10
    assert first[:, 3].tolist() == [0] * 10                             # something on everywhere
    assert table.labels[1][:, 2].tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert table.labels[1][:, 3].sum() == 9


@pytest.mark.parametrize("text, expected", [
    ("filename,onset,offset,event_labels\nx,1,2,Dog\n", "expected tab-separated columns filename, onset, offset"),
    (HEADER + "abcdefghijk_0_10\t0,5\t1\tDog,Dog\n", "line 2: onset, offset and event_labels hold 2/1/2 items"),
    (HEADER + "abcdefghijk_0_10\t0\t1\tCat\n", "line 2: event label 'Cat' is not in the class list"),
    (HEADER + "abcdefghijk_0_10\t5\t4\tDog\n", "line 2: event 5-4, expected 0 <= onset <= offset <= 10"),
    (HEADER + "abcdefghijk_0_10\t0\t11\tDog\n", "line 2: event 0-11"),
    (HEADER + "abcdefghijk_0_10\t0.5\t2\tDog\n", "line 2: onset '0.5' is not a whole second"),
    (HEADER + "abcdefghijk_0_10\t0\t2\n", "line 2 has 3 fields, expected 4"),
    (HEADER + "short\t0\t2\tDog\n", "shorter than the 11-character video id"),
    (HEADER, "no rows"),
])
def test_bad_event_csv_is_one_line_naming_file_and_line(tmp_path, text, expected):
    csv = write(tmp_path / "bad.csv", text)
    with pytest.raises(CmgError, match="bad.csv: ") as error:
        read_event_csv(csv, CLASSES)
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_zero_length_events_cover_no_segment_and_are_counted(tmp_path):
    """onset == offset: the reference's label[onset:offset] slice is empty; the row still counts as annotated."""
    csv = write(tmp_path / "z.csv", HEADER + "abcdefghijk_0_10\t2,4\t5,4\tDog,Speech\n"
                                             "bbcdefghijk_0_10\t10\t10\tDog\n"
                                             "cbcdefghijk_0_10\t0\t1\tDog\n")
    table = read_event_csv(csv, CLASSES)
    assert table.zero_length_rows == 2
    assert table.labels[0][:, 2].tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 0, 0] and table.labels[0][:, 0].sum() == 0
    assert table.labels[1][:, 3].tolist() == [1] * 10   # only a zero-length event: background throughout


def test_class_lists_pair_by_line_and_refuse_only_what_cannot_be_paired(tmp_path):
    assert read_class_list(write(tmp_path / "c.txt", "A\r\nB, b\r\n\r\n"), "x") == ["A", "B, b"]
    assert read_class_list(write(tmp_path / "bom.txt", "\ufeffA\nB\n"), "x") == ["A", "B"]
    with pytest.raises(CmgError, match="listed twice"):
        read_class_list(write(tmp_path / "d.txt", "A\nA\n"), "x")
    with pytest.raises(CmgError, match="f.txt: no class names"):
        read_class_list(write(tmp_path / "f.txt", "\n\n"), "x")
    with pytest.raises(CmgError, match="g.txt: line 2 is blank"):
        read_class_list(write(tmp_path / "g.txt", "A\n\nB\n"), "x")
    with pytest.raises(CmgError, match="e.txt: missing file"):
        read_class_list(tmp_path / "e.txt", "x")


def test_folds_are_keyed_balanced_and_stratified():
    keys = [f"clip{i}" for i in range(103)]
    strata = np.arange(103) % 4
    folds = assign_folds(keys, 5, "salt", strata)
    assert np.bincount(folds).max() - np.bincount(folds).min() <= 1
    for stratum in range(4):
        counts = np.bincount(folds[strata == stratum], minlength=5)
        assert counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(assign_folds(keys[::-1], 5, "salt", strata[::-1]), folds[::-1])  # order-free
    assert not np.array_equal(assign_folds(keys, 5, "other", strata), folds)
    assert assign_folds(["a", "b", "a"], 2, "s").tolist()[0] == assign_folds(["a", "b", "a"], 2, "s").tolist()[2]


def test_multilabel_folds_spread_every_class_and_depend_on_the_keys_only():
    rng = np.random.default_rng(0)
    labels = np.zeros((100, 25), bool)
    for row in labels:
        row[rng.choice(25, rng.integers(1, 4), replace=False)] = True
    keys = [f"clip{i}" for i in range(100)]
    folds = assign_folds_multilabel(keys, labels, 5, "salt")
    assert np.abs(np.bincount(folds, minlength=5) - 20).max() <= 3
    for cls in np.flatnonzero(labels.sum(0) >= 5):
        assert len(set(folds[labels[:, cls]])) >= 4, cls   # no class is left to one or two folds
    np.testing.assert_array_equal(assign_folds_multilabel(keys[::-1], labels[::-1], 5, "salt"), folds[::-1])


# ------------------------------------------------------------------------------------------ synthetic data


def test_synthetic_avvp_has_separate_streams(tiny_data):
    task = Avvp()
    data = task.load(tiny_data)
    audio, video = (data.streams[m].table for m in ("audio", "video"))
    assert len(set(audio.names) | set(video.names)) >= 200
    by_name = {n: i for i, n in enumerate(video.names)}
    both = [(i, by_name[n]) for i, n in enumerate(audio.names) if n in by_name]
    heard = np.array([audio.labels[i, :, :-1].max(0) for i, _ in both])
    seen = np.array([video.labels[j, :, :-1].max(0) for _, j in both])
    assert ((heard > 0) & (seen == 0)).sum() > 20 and ((seen > 0) & (heard == 0)).sum() > 20
    lengths = {len(read_feature_zip(data.streams["audio"].zips.path(i))) for i in audio.feature_ids()[:80]}
    assert {9, 10, 11} <= lengths  # the reader pads or cuts to 10
    assert data.folds["audio"][both[0][0]] == data.folds["video"][both[0][1]]


def test_synthetic_ave_avvp_aligns_with_ave_and_the_label_map(tiny_data):
    data = AveAvvp().load(tiny_data)
    label_map = read_label_map("ave_avvp")
    assert data.classes == [b for _, b in label_map.pairs] and len(data.classes) == 12
    with h5py.File(tiny_data / "AVE-ECCV18-master/data/labels.h5") as ave, \
            h5py.File(tiny_data / "AVE_AVVP/ave_avvp_labels.h5") as mapped:
        ave_labels, labels = ave["avadataset"][()], mapped["avadataset"][()]
    assert labels.shape == (len(ave_labels), 10, 13)
    from cmg_eval.data.synth.ave import AVE_CLASSES
    for ave_name, avvp_name in label_map.pairs:  # same segments, renamed column
        np.testing.assert_array_equal(ave_labels[..., AVE_CLASSES.index(ave_name)], labels[..., data.classes.index(avvp_name)])
    np.testing.assert_array_equal(labels.sum(-1), 1)
    assert data.selection.mean() == pytest.approx(0.2, abs=0.01)
    assert all(len(s.table.names) >= 80 for s in data.streams.values())


def test_ave_avvp_pairs_classes_by_position_and_lists_label_map_differences(micro_clip_data, tmp_path):
    """A list naming a class the built-in map lacks reads (line i names label column i); the map's differences
    are warnings. A list whose length does not match the label columns cannot be paired and is refused."""
    root = tmp_path / "data"
    for part in ("AVE_AVVP", "AVE-ECCV18-master", "AVVP"):
        shutil.copytree(micro_clip_data / part, root / part)
    categories = root / "AVE_AVVP" / "AVE_AVVP_Categories.txt"
    original = categories.read_text()
    categories.write_text(original.replace("Dog\n", "Speech\n"))
    for stream in ("audio", "visual"):
        csv = root / "AVE_AVVP" / f"AVE_AVVP_eval_{stream}_checked_combined.csv"
        csv.write_text(csv.read_text().replace("Dog", "Speech"))
    data = AveAvvp().load(root)
    assert data.classes[original.splitlines().index("Dog")] == "Speech"
    warnings = AveAvvp().data_notes(data)["warnings"]
    assert any("AVVP class 'Speech' has no AVE class in label map ave_avvp v1" in w for w in warnings)
    assert any("label map ave_avvp v1 class 'Dog' (AVE 'Bark') is not in AVE_AVVP_Categories.txt" in w for w in warnings)
    categories.write_text(original + "Speech\n")
    with pytest.raises(CmgError, match="ave_avvp_labels.h5: dataset 'avadataset' has shape .* one column per line "
                                       "of AVE_AVVP_Categories.txt \\(13\\)"):
        AveAvvp().load(root)


def test_ave_clips_are_indexed_out_of_one_encoding_per_file(micro_clip_data, random_dcid, tmp_path):
    """ave_avvp's clips and every AVE split come out of one cached encoding of each feature file, equal to
    encoding their clips read in their own order."""
    data = AveAvvp().load(micro_clip_data)
    cache = EmbeddingCache(tmp_path)
    embedder = Embedder(load_model(str(random_dcid)), cache, 16, Progress(disable=True))
    sources = [data.source("audio"), *(data.ave.source("audio", split) for split in ("train", "val", "test"))]
    for source in sources:
        np.testing.assert_allclose(embedder(source), embedder.encode_uncached(source), rtol=0, atol=1e-6)
    entries = list((tmp_path / "embeddings").rglob("*.npy"))
    assert cache.misses == 1 and len(entries) == 1
    assert len(sources[0].rows) == len(data.order) and sources[0].whole.n_items == len(data.ave.labels)
    expected = embedder(sources[0])
    with open(entries[0], "r+b") as handle:   # a cut-short entry cannot be mapped: encoded again, not trusted
        handle.truncate(entries[0].stat().st_size // 2)
    np.testing.assert_array_equal(embedder(sources[0]), expected)
    assert cache.misses == 2


# ------------------------------------------------------------------------------------------ heads and protocols


def test_cross_fitting_scores_each_clip_once_with_a_head_that_never_saw_it(micro_clip_data, monkeypatch):
    task = Avvp()
    data = task.load(micro_clip_data)
    number = {n: i for i, n in enumerate(sorted({n for s in data.streams.values() for n in s.table.names}))}
    inputs = {m: np.array([number[n] for n in s.table.names], np.float32)[:, None, None].repeat(10, 1)
              for m, s in data.streams.items()}
    scored = []

    def fake_fit(head, x_fit, y_fit, x_select, y_select, *args, **kwargs):
        return set(x_fit[:, 0, 0].tolist()) | set(x_select[:, 0, 0].tolist())   # the "head": clips it saw

    def fake_predict(head, x):
        assert not head & set(x[:, 0, 0].tolist())
        scored.extend(x[:, 0, 0].tolist())
        return np.zeros((len(x), 10, 26), np.float32)

    monkeypatch.setattr(headtask_module, "clean_head", lambda *args: None)
    monkeypatch.setattr(headtask_module, "fit_clean", fake_fit)
    monkeypatch.setattr(headtask_module, "predict", fake_predict)
    job = SourceRun(data, "video", ("audio", "video"), 43, "clean", dict(task.defaults),
                    embed=lambda source: inputs[source.modality])
    out = task.run_source(job)
    assert sorted(scored) == sorted(inputs["audio"][:, 0, 0].tolist() + inputs["video"][:, 0, 0].tolist())
    assert out["audio"].n_items == len(data.streams["audio"].table.labels)


def test_explogloss_weights_grow_without_bound():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 10, 8, generator=generator).numpy()
    y = (torch.rand(64, 10, 4, generator=generator) < 0.3).float().numpy()
    loss = ExpLogLoss(4)
    logits, targets = torch.randn(2, 10, 4, generator=generator), torch.from_numpy(y[:2])
    by_hand = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets) \
        - (targets * torch.log_softmax(logits, -1) * torch.exp(-torch.tensor(0.1))).sum(-1).mean()
    assert loss(logits, targets).item() == pytest.approx(by_hand.item())
    settings = {"lr": 4e-4, "milestones": [10, 20, 30], "gamma": 0.5, "clip_grad": 0.5, "batch_size": 16}
    alphas = []
    train(SegmentDecoder(8, 4), x, y, loss, settings, 0, lambda e, m: alphas.append(loss.alpha.detach().clone()),
          epochs=6, clip_loss=False)
    assert all((later > earlier).all() for earlier, later in zip(alphas, alphas[1:]))


def scripted_outputs(decisions):
    calls = iter(decisions)
    return lambda head, inputs: np.where(next(calls), 1.0, -1.0)


def test_paper_loop_keeps_the_best_epoch_by_the_reference_rule(monkeypatch):
    rng = np.random.default_rng(0)
    labels = np.zeros((20, 10, 4), np.float32)
    labels[..., 0] = rng.random((20, 10)) < 0.5
    labels[..., 3] = labels[..., :3].max(-1) == 0
    truth = labels > 0.5
    precise = truth & (rng.random(truth.shape) < 0.3)                 # few, right predictions
    broad = truth | (rng.random(truth.shape) < 0.2)                   # many, mostly right
    assert localization(truth, precise, 80)["legacy_precision"] > localization(truth, broad, 80)["legacy_precision"]
    assert localization(truth, precise, 80)["legacy_f1"] < localization(truth, broad, 80)["legacy_f1"]
    x = np.zeros((20, 10, 8), np.float32)
    clips = Labeled(lambda embed: x, labels)
    job = SourceRun(None, "video", ("audio",), 43, "paper",
                    {**Avvp.defaults, "epochs": 2}, embed=None, checkpoint_epoch=-1)
    for rule, expected in (("legacy_precision", precise), ("legacy_f1", broad)):
        class Scripted(LocalizationTask):
            paper_metric = rule
            load = None

            def plan(self, data, job):
                return HeadPlan([Fold(clips)], {"audio": clips})

        monkeypatch.setattr(headtask_module, "predict", scripted_outputs([precise, broad]))
        out = Scripted().run_source(job)
        assert out["audio"].metrics == pytest.approx(localization(truth, expected, 80))


@pytest.fixture(scope="module")
def oracle(micro_clip_data):
    return micro_clip_data / "oracle.pt"


@pytest.mark.parametrize("protocol", ["clean", "paper"])
def test_micro_runs_write_every_metric_and_rescorable_predictions(micro_clip_data, oracle, tmp_path, protocol):
    out = tmp_path / "out"
    result = cli("run", "avvp,ave_avvp", "--ckpt", f"oracle={oracle}", "--data-root", micro_clip_data, "--out", out,
                 "--cache-dir", tmp_path / "cache", "--protocol", protocol, *FAST)
    assert result.exit_code == 0, result.output
    document = json.loads((out / "results.json").read_text())
    rows = document["results"]
    assert {(r["task"], r["direction"]) for r in rows} == {
        (t, d) for t in ("avvp", "ave_avvp") for d in ("V->A", "A->V", "V->V", "A->A")}
    assert {r["metric"] for r in rows} == set(LOCALIZATION_METRICS)
    data = {"avvp": Avvp().load(micro_clip_data), "ave_avvp": AveAvvp().load(micro_clip_data)}
    for row in (r for r in rows if r["metric"] == "seg_f1"):
        target = data[row["task"]].streams[row["target"]]
        assert row["n_items"] == len(target.table.names)
        saved = np.load(out / "predictions" / "oracle" / row["task"] / f"{row['direction'].replace('->', '_to_')}_seed43.npz")
        assert saved["y_pred"].shape == target.table.labels.shape
        rescored = Avvp().rescore(None, dict(saved))
        assert all(rescored[r["metric"]] == pytest.approx(r["value"]) for r in rows
                   if (r["task"], r["direction"]) == (row["task"], row["direction"]))
    assert document["meta"]["tasks"]["ave_avvp"]["about"]["label_map"] == "ave_avvp v1"


# ------------------------------------------------------------------------------------------ must-show


def primary(document, task, model):
    return {r["direction"]: r for r in document["results"] if r["task"] == task and r["model"] == model
            and r["primary"]}


@pytest.mark.parametrize("task", ["avvp", "ave_avvp"])
def test_oracle_localizes_across_modalities_and_random_does_not(clip_tasks_run, task):
    document = json.loads((clip_tasks_run / "results.json").read_text())
    oracle, random = primary(document, task, "oracle"), primary(document, task, "random")
    assert set(oracle) == set(random) == {"V->A", "A->V", "V->V", "A->A"}
    for direction in ("V->A", "A->V"):
        assert oracle[direction]["metric"] == "seg_f1" and len(oracle[direction]["per_seed"]) == 3
        assert min(oracle[direction]["per_seed"]) >= 60.0
    assert all(max(row["per_seed"]) <= 30.0 for row in random.values())
    about = document["meta"]["tasks"][task]["about"]
    assert about and document["meta"]["settings"][task]["lr"] == Avvp.defaults["lr"]
