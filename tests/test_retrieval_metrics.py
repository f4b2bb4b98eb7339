"""Retrieval metrics: hand-computed tie cases, brute force over tie orders, torchmetrics without ties."""

import itertools
import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.retrieval import (retrieval_average_precision, retrieval_hit_rate,
                                               retrieval_reciprocal_rank)

from cmg_eval.metrics.retrieval import (chance_per_query, cosine_retrieval, pad_positives, per_query,
                                        summarize)


def one(scores, positives, ks=(1, 2, 3, 5, 10), map_k=3):
    """Per-query metrics of a single query, as plain floats."""
    out = per_query(np.asarray(scores, float)[None], pad_positives([positives]), ks, map_k)
    return {key: float(value[0]) for key, value in out.items()}


def test_all_tied_gallery_one_positive():
    got = one(np.zeros(10), [7])
    assert got["rank"] == pytest.approx(5.5)                  # (G + 1) / 2
    assert got["r1"] == pytest.approx(0.1) and got["r5"] == pytest.approx(0.5) and got["r10"] == 1.0
    assert got["map3"] == pytest.approx(0.1 * (1 + 1 / 2 + 1 / 3))


def test_all_tied_gallery_two_positives():
    got = one(np.zeros(10), [0, 9])
    assert got["rank"] == pytest.approx(11 / 3)               # (G + 1) / (P + 1)
    assert got["r1"] == pytest.approx(0.2)
    assert got["r5"] == pytest.approx(1 - math.comb(8, 5) / math.comb(10, 5))  # = 7/9
    assert got["r5"] == pytest.approx(7 / 9)


def test_two_way_tie():
    got = one([0.9, 0.5, 0.5, 0.1], [2])
    assert got["rank"] == pytest.approx(2.5)
    assert (got["r1"], got["r2"], got["r3"]) == (0.0, pytest.approx(0.5), 1.0)
    assert got["map3"] == pytest.approx(0.5 * 1 / 2 + 0.5 * 1 / 3)


def test_several_positives_across_blocks():
    # positive alone on top, then a 3-way tie holding one positive, then a lower positive
    got = one([0.9, 0.7, 0.7, 0.7, 0.2], [0, 2, 4])
    assert got["rank"] == 1.0 and got["r1"] == 1.0
    # tied positive at slot 2, 3 or 4 (each 1/3): AP@3 sums 1 + {1, 2/3, 0}, over min(3, 3)
    assert got["map3"] == pytest.approx(14 / 27)


def test_positive_below_a_tie_block():
    got = one([0.8, 0.8, 0.8, 0.3, 0.1], [3])
    assert got["rank"] == 4.0 and got["r3"] == 0.0 and got["r5"] == 1.0


def brute_force(scores, positives, ks, map_k):
    """Average over every order consistent with the scores (each equally likely)."""
    rows = []
    for order in itertools.permutations(range(len(scores))):
        if np.any(np.diff(scores[list(order)]) > 0):
            continue
        relevant = np.isin(order, positives)
        hits = np.cumsum(relevant)
        ap = sum(relevant[i] * hits[i] / (i + 1) for i in range(min(map_k, len(order)))) / min(len(positives), map_k)
        rows.append([np.argmax(relevant) + 1, *(float(relevant[:k].any()) for k in ks), ap])
    return np.mean(rows, axis=0)


@pytest.mark.parametrize("seed", range(4))
def test_exact_expectation_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    ks, map_k = (1, 2, 3, 5), 3
    for _ in range(40):
        size = int(rng.integers(1, 8))
        scores = rng.integers(0, int(rng.integers(1, 4)), size).astype(float)
        positives = rng.choice(size, int(rng.integers(1, size + 1)), replace=False)
        got = one(scores, positives, ks, map_k)
        ours = [got["rank"], *(got[f"r{k}"] for k in ks), got[f"map{map_k}"]]
        np.testing.assert_allclose(ours, brute_force(scores, positives, ks, map_k), atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_matches_torchmetrics_without_ties(seed):
    rng = np.random.default_rng(seed)
    n_queries, gallery = 40, 120
    scores = rng.random((n_queries, gallery)) + 0.01          # distinct and positive (torchmetrics AP drops <= 0)
    groups = [rng.choice(gallery, int(rng.integers(1, 5)), replace=False) for _ in range(n_queries)]
    ours = per_query(scores, pad_positives(groups))
    for q, group in enumerate(groups):
        preds, target = torch.from_numpy(scores[q]), torch.zeros(gallery, dtype=torch.bool)
        target[group] = True
        for k in (1, 5, 10, 50):
            assert ours[f"r{k}"][q] == float(retrieval_hit_rate(preds, target, top_k=k))
        assert ours["rank"][q] == pytest.approx(1 / float(retrieval_reciprocal_rank(preds, target)))
        if len(group) == 1:
            assert ours["map10"][q] == pytest.approx(float(retrieval_average_precision(preds, target, top_k=10)))
        else:  # torchmetrics divides by the positives retrieved; ours by min(P, 10): check by definition
            relevant = np.isin(np.argsort(-scores[q])[:10], group)
            expected = sum(relevant[i] * relevant[:i + 1].sum() / (i + 1) for i in range(10)) / min(len(group), 10)
            assert ours["map10"][q] == pytest.approx(expected)


@pytest.mark.parametrize("embedding", ["identical", "zero"])
def test_identical_gallery_gives_exactly_chance(embedding):
    rng = np.random.default_rng(0)
    gallery_size, n_queries = 60, 25
    row = rng.normal(size=8) if embedding == "identical" else np.zeros(8)
    gallery = np.tile(row, (gallery_size, 1)).astype(np.float32)
    groups = [rng.choice(gallery_size, int(rng.integers(1, 6)), replace=False) for _ in range(n_queries)]
    got = cosine_retrieval(rng.normal(size=(n_queries, 8)), gallery, pad_positives(groups))
    chance = chance_per_query(gallery_size, [len(g) for g in groups])
    for key in chance:
        np.testing.assert_array_equal(got[key], chance[key])
    by_hand = [1 - math.comb(gallery_size - len(g), 10) / math.comb(gallery_size, 10) for g in groups]
    np.testing.assert_allclose(chance["r10"], by_hand, rtol=1e-12)
    np.testing.assert_allclose(chance["rank"], [(gallery_size + 1) / (len(g) + 1) for g in groups])


def test_equal_embeddings_tie_and_chunks_do_not_matter():
    rng = np.random.default_rng(1)
    codes = rng.normal(size=(6, 16)).astype(np.float32)
    gallery = codes[rng.integers(0, 6, 50)]                    # quantized: many identical rows
    queries = codes[rng.integers(0, 6, 30)] + 0.3 * rng.normal(size=(30, 16)).astype(np.float32)
    positives = pad_positives([rng.choice(50, int(rng.integers(1, 4)), replace=False) for _ in range(30)])
    whole = cosine_retrieval(queries, gallery, positives, chunk_elements=1 << 30)
    pieces = cosine_retrieval(queries, gallery, positives, chunk_elements=7)
    for key in whole:
        np.testing.assert_array_equal(whole[key], pieces[key])


def test_equal_and_nearly_equal_embeddings_tie():
    rng = np.random.default_rng(2)
    a, b, c = rng.normal(size=(3, 32)).astype(np.float32)
    nudged = (a * np.float32(1 + 2e-7)).astype(np.float32)  # the same vector up to float32 rounding
    gallery = np.stack([b, a, c, nudged, a])
    got = cosine_retrieval(a[None], gallery, np.array([[4]]))
    assert got["rank"][0] == pytest.approx(2.0)              # 3-way tie at the top, one positive: (3 + 1) / 2
    assert got["r1"][0] == pytest.approx(1 / 3) and got["top1"][0] == 1


def test_summary_units():
    values = {"rank": np.array([1.0, 2.0, 10.0, 3.5]), "r1": np.array([1, 0, 0, 0.5]), "map10": np.array([1, .5, 0, 0])}
    out = summarize(values)
    assert out == {"r1": 37.5, "map10": 37.5, "medr": 2.75, "meanr": 4.125}


def test_a_query_without_positives_is_refused():
    with pytest.raises(ValueError):
        pad_positives([[1], []])
    with pytest.raises(ValueError):
        pad_positives([[1, 1]])
    with pytest.raises(ValueError):
        per_query(np.zeros((1, 3)), np.array([[5]]))
