"""Retrieval metrics: exact expectations under uniform random tie-breaking, multi-positive aware.

A query's gallery, sorted by score, is a sequence of tie blocks (equal scores) whose internal
order is uniformly random. Every metric is the exact expectation over those orders:
- first positive: the best-scoring block holding a positive starts after `g` items, has `t`
  items and `p` positives; the first of `p` positives among `t` shuffled slots is at
  (t + 1) / (p + 1) on average, so E[rank] = g + (t + 1) / (p + 1);
- R@k (any positive in the top k): 0 if g >= k, 1 if g + t <= k, otherwise the hypergeometric
  1 - C(t - p, k - g) / C(t, k - g) (no positive among the k - g slots of the block that fit);
- AP@k = sum_{i<=k} rel_i * hits_i / i / min(P, k) is linear in rel_i * hits_i, and a block slot j
  holds a positive with probability p / t, and then E[hits] = c + 1 + (j - 1)(p - 1)/(t - 1)
  (c positives score higher).
Recalls and mAP@k are percent; `medr` and `meanr` are 1-based ranks (lower is better).
Hand-written because no library computes expectations over tie orders (torchmetrics' retrieval metrics break ties
by position; the tests check them against it on tie-free scores).
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np

RECALL_KS = (1, 5, 10, 50)
MAP_K = 10
# Scores agreeing to this many decimals tie: float32 embeddings carry about 7 significant digits,
# so mathematically equal embeddings (e.g. the same codes summed in another order) must tie.
TIE_DECIMALS = 6
CHUNK_ELEMENTS = 1 << 22   # query x positive x gallery comparisons held at once


def pad_positives(groups: Iterable[Sequence[int]]) -> np.ndarray:
    """Per-query lists of positive gallery indices -> (Q, P) int64, padded with -1."""
    groups = [np.asarray(g, dtype=np.int64) for g in groups]
    if any(len(g) == 0 or len(np.unique(g)) != len(g) for g in groups):
        raise ValueError("every query needs at least one positive, each listed once")
    out = np.full((len(groups), max((len(g) for g in groups), default=1)), -1, dtype=np.int64)
    for row, group in zip(out, groups):
        row[:len(group)] = group
    return out


def block_expectations(greater: np.ndarray, tied: np.ndarray, block_pos: np.ndarray, above: np.ndarray,
                       valid: np.ndarray, ks: Sequence[int] = RECALL_KS, map_k: int = MAP_K) -> dict[str, np.ndarray]:
    """Per-query expected metrics from per-positive tie facts, all (Q, P).

    For positive j of a query: `greater` items score higher, `tied` items (itself included) score
    the same, `block_pos` of those are positives, `above` positives score higher; `valid` masks padding.
    """
    greater, tied = greater.astype(np.float64), tied.astype(np.float64)
    block_pos, above = block_pos.astype(np.float64), above.astype(np.float64)
    first = np.argmin(np.where(valid, greater, np.inf), axis=1)[:, None]
    g1, t1, p1 = (np.take_along_axis(a, first, 1)[:, 0] for a in (greater, tied, block_pos))
    out = {"rank": g1 + (t1 + 1.0) / (p1 + 1.0)}
    for k in ks:
        out[f"r{k}"] = _hit_probability(g1, t1, p1, k, greater.shape[1])
    out[f"map{map_k}"] = _average_precision(greater, tied, block_pos, above, valid, map_k)
    return out


def _hit_probability(g: np.ndarray, t: np.ndarray, p: np.ndarray, k: int, max_p: int) -> np.ndarray:
    """P(a positive of the first positive block lands in the top k)."""
    slots = k - g
    miss = np.ones_like(g)
    for i in range(max_p):  # C(t - p, a) / C(t, a) = prod_{i<p} (t - a - i) / (t - i)
        factor = np.clip((t - slots - i) / np.maximum(t - i, 1.0), 0.0, None)
        miss *= np.where(i < p, factor, 1.0)
    return np.where(slots <= 0, 0.0, np.where(slots >= t, 1.0, 1.0 - miss))


def _average_precision(greater: np.ndarray, tied: np.ndarray, block_pos: np.ndarray, above: np.ndarray,
                       valid: np.ndarray, k: int) -> np.ndarray:
    """E[AP@k], normalised by min(number of positives, k)."""
    slot = np.arange(1, k + 1, dtype=np.float64)                       # j: 1-based slot in the block
    position = greater[..., None] + slot                               # (Q, P, k)
    share_others = (block_pos[..., None] - 1.0) / np.maximum(tied[..., None] - 1.0, 1.0)
    hits = above[..., None] + 1.0 + (slot - 1.0) * share_others
    term = block_pos[..., None] / np.maximum(tied[..., None], 1.0) * hits / position
    term = np.where((slot <= tied[..., None]) & (position <= k), term, 0.0).sum(-1)
    per_positive = np.where(valid, term / np.maximum(block_pos, 1.0), 0.0)  # each block counted once
    # AP is at most 1; summing the expectation's terms in floating point can pass it by an ulp
    return np.minimum(per_positive.sum(1) / np.minimum(valid.sum(1), k), 1.0)


def tie_facts(scores: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, ...]:
    """(greater, tied, block_pos, above, valid), each (Q, P), for a score matrix (Q, G)."""
    valid = positives >= 0
    pos_scores = np.take_along_axis(scores, np.where(valid, positives, 0), axis=1)
    pos_scores = np.where(valid, pos_scores, -np.inf)
    greater = (scores[:, None, :] > pos_scores[..., None]).sum(-1)
    tied = (scores[:, None, :] == pos_scores[..., None]).sum(-1)
    pairs = valid[:, None, :] & valid[:, :, None]
    block_pos = ((pos_scores[:, :, None] == pos_scores[:, None, :]) & pairs).sum(-1)
    above = ((pos_scores[:, None, :] > pos_scores[:, :, None]) & pairs).sum(-1)
    return greater, tied, block_pos, above, valid


def per_query(scores: np.ndarray, positives: np.ndarray, ks: Sequence[int] = RECALL_KS,
              map_k: int = MAP_K) -> dict[str, np.ndarray]:
    """Expected rank, R@k and AP@k per query for scores (Q, G) and padded positives (Q, P)."""
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=np.int64).reshape(len(scores), -1)
    if (positives >= scores.shape[1]).any() or not (positives >= 0).any(1).all():
        raise ValueError("positives must index the gallery, at least one per query")
    return block_expectations(*tie_facts(scores, positives), ks=ks, map_k=map_k)


def chance_per_query(gallery_size: int, n_positives: np.ndarray, ks: Sequence[int] = RECALL_KS,
                     map_k: int = MAP_K) -> dict[str, np.ndarray]:
    """The same expectations when the whole gallery ties: a score that carries no information."""
    n_positives = np.asarray(n_positives, dtype=np.int64)
    width = int(n_positives.max())
    valid = np.arange(width)[None, :] < n_positives[:, None]
    shape = valid.shape
    return block_expectations(np.zeros(shape), np.full(shape, float(gallery_size)),
                              np.broadcast_to(n_positives[:, None], shape), np.zeros(shape), valid, ks, map_k)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm in float64 (zero rows stay zero: cosine 0 with everything)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def cosine_retrieval(queries: np.ndarray, gallery: np.ndarray, positives: np.ndarray,
                     chunk_elements: int = CHUNK_ELEMENTS, ks: Sequence[int] = RECALL_KS,
                     map_k: int = MAP_K) -> dict[str, np.ndarray]:
    """Per-query metrics by cosine similarity, a block of queries at a time.

    Identical gallery rows are scored once (so they tie exactly) and scores are rounded to
    TIE_DECIMALS; `top1` is the best gallery index (lowest index among ties).
    """
    unique, inverse = np.unique(np.asarray(gallery), axis=0, return_inverse=True)
    unique = unit_rows(unique)
    inverse = inverse.reshape(-1)
    queries = unit_rows(queries)
    step = max(1, chunk_elements // (len(inverse) * positives.shape[1]))
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, len(queries), step):
        scores = np.round(queries[start:start + step] @ unique.T, TIE_DECIMALS)[:, inverse]
        part = per_query(scores, positives[start:start + step], ks, map_k)
        part["top1"] = scores.argmax(axis=1)
        parts.append(part)
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def summarize(per_query_values: dict[str, np.ndarray]) -> dict[str, float]:
    """Percent recalls and mAP, median and mean expected rank, from per-query values."""
    out = {key: 100.0 * float(np.mean(values)) for key, values in per_query_values.items()
           if re.fullmatch(r"(r|map)\d+", key)}
    ranks = per_query_values["rank"]
    out["medr"] = float(np.median(ranks))
    out["meanr"] = float(np.mean(ranks))
    return out
