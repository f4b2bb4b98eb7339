"""Localization metrics against scikit-learn and brute-force transcriptions of the AVVP benchmark and the
reference's batch-weighted numbers, on random inputs; hand-computed event matches."""

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from cmg_eval.metrics import clip_counts, localization, scores_from_counts
from cmg_eval.metrics.localization import event_counts, runs


def random_labels(rng, clips, steps=10, classes=6, p=0.3):
    """Multi-hot (clips, steps, classes + 1) with runs of events; background where nothing is on."""
    events = rng.random((clips, steps, classes)) < p
    events |= np.roll(events, 1, axis=1) & (rng.random((clips, steps, classes)) < 0.5)
    return np.concatenate([events, ~events.any(-1, keepdims=True)], -1)


def noisy(y, rng, flip=0.15):
    return y ^ (rng.random(y.shape) < flip)


# ------------------------------------------------------------------------------------------ brute force


def benchmark_events(sequence):
    """Events as 0/1 vectors, scanning like the AVVP benchmark's extract_event."""
    events, i, n = [], 0, len(sequence)
    while i < n:
        if sequence[i]:
            start = i
            while i < n and sequence[i]:
                i += 1
            vector = np.zeros(n)
            vector[start:i] = 1
            events.append(vector)
        else:
            i += 1
    return events


def benchmark_tp_fp_fn(predicted, truth):
    """The benchmark's event_wise_metric: IoU >= 0.5 on 0/1 vectors, predictions first, then truths."""
    tp = fp = fn = 0
    for p in predicted:
        hit = any(np.sum(p * t) >= 0.5 * np.sum(p + t - p * t) for t in truth)
        tp, fp = tp + hit, fp + (not hit)
    for t in truth:
        fn += not any(np.sum(t * p) >= 0.5 * np.sum(t + p - t * p) for p in predicted)
    return tp, fp, fn


def brute_event_f1(y_true, y_pred):
    tp = fp = fn = 0
    for clip in range(len(y_true)):
        for c in range(y_true.shape[2] - 1):
            counts = benchmark_tp_fp_fn(benchmark_events(y_pred[clip, :, c]), benchmark_events(y_true[clip, :, c]))
            tp, fp, fn = tp + counts[0], fp + counts[1], fn + counts[2]
    return 100 * 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def brute_legacy(y_true, y_pred, batch):
    """The reference loop: per batch micro P, R over all cells (0, 0 without predictions), weighted mean."""
    ps, rs, ws = [], [], []
    for start in range(0, len(y_true), batch):
        t, p = y_true[start:start + batch].reshape(-1), y_pred[start:start + batch].reshape(-1)
        if p.sum() == 0:
            ps.append(0.0)
            rs.append(0.0)
        else:
            ps.append((t & p).sum() / p.sum())
            rs.append((t & p).sum() / t.sum())
        ws.append(len(y_true[start:start + batch]))
    precision, recall = np.average(ps, weights=ws), np.average(rs, weights=ws)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return 100 * precision, 100 * f1


# ------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("seed", range(8))
def test_segment_scores_match_sklearn_micro(seed):
    rng = np.random.default_rng(seed)
    y_true = random_labels(rng, int(rng.integers(3, 40)), classes=int(rng.integers(2, 12)))
    y_pred = noisy(y_true, rng)
    ours = localization(y_true, y_pred)
    flat_true, flat_pred = y_true.reshape(-1, y_true.shape[-1]), y_pred.reshape(-1, y_pred.shape[-1])
    fg = list(range(y_true.shape[-1] - 1))
    precision, recall, f1, _ = precision_recall_fscore_support(flat_true, flat_pred, labels=fg, average="micro",
                                                               zero_division=0)
    assert ours["seg_precision"] == pytest.approx(100 * precision)
    assert ours["seg_recall"] == pytest.approx(100 * recall)
    assert ours["seg_f1"] == pytest.approx(100 * f1)
    _, _, f1_bg, _ = precision_recall_fscore_support(flat_true, flat_pred, average="micro", zero_division=0)
    assert ours["seg_f1_bg"] == pytest.approx(100 * f1_bg)


@pytest.mark.parametrize("seed", range(8))
def test_event_f1_matches_benchmark_transcription(seed):
    rng = np.random.default_rng(100 + seed)
    y_true = random_labels(rng, int(rng.integers(1, 25)), classes=int(rng.integers(1, 8)), p=0.25)
    y_pred = noisy(y_true, rng, flip=float(rng.uniform(0.02, 0.3)))
    assert localization(y_true, y_pred)["event_f1"] == pytest.approx(brute_event_f1(y_true, y_pred))


@pytest.mark.parametrize("seed", range(6))
def test_legacy_numbers_match_the_reference_loop(seed):
    rng = np.random.default_rng(200 + seed)
    y_true = random_labels(rng, int(rng.integers(5, 60)))
    y_pred = noisy(y_true, rng, flip=0.2)
    y_pred[:7] = False  # a whole batch without any predicted cell counts as P = R = 0
    batch = int(rng.integers(1, 9))
    ours = localization(y_true, y_pred, batch_size=batch)
    precision, f1 = brute_legacy(y_true, y_pred, batch)
    assert ours["legacy_precision"] == pytest.approx(precision) and ours["legacy_f1"] == pytest.approx(f1)
    assert "legacy_precision" not in localization(y_true, y_pred)


def test_subsets_rescore_by_summing_clip_counts():
    rng = np.random.default_rng(7)
    y_true = random_labels(rng, 30)
    y_pred = noisy(y_true, rng)
    counts = clip_counts(y_true, y_pred)
    items = rng.integers(0, 30, 30)  # a bootstrap resample, with repeats
    assert scores_from_counts(counts[items], 4) == pytest.approx(localization(y_true[items], y_pred[items], 4))


@pytest.mark.parametrize("truth, predicted, expected", [
    ("0111000000", "0011100000", (1, 0, 0)),   # IoU 2/4 = 0.5: a match
    ("0111100000", "0010000000", (0, 1, 1)),   # IoU 1/4: a false positive and a miss
    ("1111111111", "1111101111", (1, 1, 0)),   # the 5-run matches (5/10); the 4-run does not
    ("1100000011", "1000000011", (2, 0, 0)),   # [0,1) vs [0,2): IoU 1/2, a match; [8,10) exact
    ("0000000000", "0001100000", (0, 1, 0)),
    ("0001100000", "0000000000", (0, 0, 1)),
    ("0110011000", "0111111000", (0, 1, 2)),   # one long prediction covers two events: IoU 2/6 each
])
def test_event_matching_by_hand(truth, predicted, expected):
    as_bool = [np.array([c == "1" for c in s]) for s in (truth, predicted)]
    tp, fp, fn = event_counts(*as_bool)
    assert (tp, fp, fn) == expected
    assert (tp, fp, fn) == benchmark_tp_fp_fn(benchmark_events(as_bool[1]), benchmark_events(as_bool[0]))


def test_runs_are_maximal_half_open_intervals():
    assert runs(np.array([1, 1, 0, 1, 0, 0, 1, 1, 1, 1], bool)) == [(0, 2), (3, 4), (6, 10)]
    assert runs(np.zeros(10, bool)) == []


def test_no_predictions_score_zero_not_an_error():
    rng = np.random.default_rng(3)
    y_true = random_labels(rng, 5)
    y_pred = np.zeros_like(y_true)
    scores = localization(y_true, y_pred, batch_size=2)
    assert scores["seg_precision"] == scores["seg_f1"] == scores["event_f1"] == scores["legacy_f1"] == 0.0
    with pytest.raises(ValueError):
        localization(y_true[:0], y_pred[:0])
