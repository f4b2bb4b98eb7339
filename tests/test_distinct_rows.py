"""Heads on codebook readouts: the per-step part runs once per distinct row, with the numbers of the full inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cmg_eval.data.clipzips import stack_float32
from cmg_eval.encoders.base import all_finite
from cmg_eval.heads import (DistinctRows, SegmentDecoder, SemanticDecoder, Standardize, distinct_rows, predict,
                            seeded_head, train)

SETTINGS = {"lr": 1e-3, "milestones": [5], "gamma": 0.5, "batch_size": 16, "clip_grad": 1.0}


def code_inputs(n_items: int = 60, steps: int = 10, n_codes: int = 7, dim: int = 12, seed: int = 0) -> np.ndarray:
    """(N, T, D) rows drawn from a small random codebook, as a quantized readout gives them."""
    rng = np.random.default_rng(seed)
    codebook = rng.normal(size=(n_codes, dim)).astype(np.float32)
    return codebook[rng.integers(0, n_codes, size=(n_items, steps))]


class Opaque(nn.Module):
    """The same head without `per_step`/`after_steps`: always run on the full inputs."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.inner = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def test_distinct_rows_rebuild_the_inputs_and_stay_dense_when_rows_rarely_repeat():
    inputs = code_inputs()
    rows = distinct_rows(inputs)
    assert isinstance(rows, DistinctRows) and len(rows.table) == 7 and len(rows) == 60
    np.testing.assert_array_equal(rows.table[rows.index], inputs)
    continuous = np.random.default_rng(1).normal(size=(60, 10, 12)).astype(np.float32)
    assert distinct_rows(continuous) is continuous


@pytest.mark.parametrize("factory", [lambda: SemanticDecoder(12, 5), lambda: SegmentDecoder(12, 5),
                                     lambda: nn.Sequential(Standardize(code_inputs()), SemanticDecoder(12, 5))])
def test_predictions_on_distinct_rows_equal_the_full_inputs_bit_for_bit(factory):
    inputs = code_inputs(n_items=300)
    head = seeded_head(factory, 3)
    expected = predict(head, inputs, batch_size=64)
    np.testing.assert_array_equal(predict(head, distinct_rows(inputs), batch_size=64), expected)
    np.testing.assert_array_equal(predict(Opaque(head), distinct_rows(inputs), batch_size=64), expected)


@pytest.mark.parametrize("factory, targets", [
    (lambda: SemanticDecoder(12, 5), lambda rng: rng.integers(0, 5, 60)),
    (lambda: SegmentDecoder(12, 5), lambda rng: (rng.random((60, 10, 5)) > 0.7).astype(np.float32))])
def test_training_on_distinct_rows_follows_the_full_inputs(factory, targets):
    """Same batches, same steps: the weights agree to float32 rounding (duplicate rows' gradients are summed
    before the matrix product instead of inside it)."""
    inputs, labels = code_inputs(), targets(np.random.default_rng(2))
    loss = nn.functional.cross_entropy if labels.ndim == 1 else nn.functional.binary_cross_entropy_with_logits
    gathered, full = seeded_head(factory, 0), Opaque(seeded_head(factory, 0))
    shapes, per_step = [], gathered.per_step
    gathered.per_step = lambda x: (shapes.append(tuple(x.shape)), per_step(x))[1]
    for head in (gathered, full):
        train(head, inputs, labels, loss, SETTINGS, seed=5, after_epoch=lambda *_: None, epochs=8)
    assert shapes and set(shapes) == {(7, 12)}  # every step ran on the 7 distinct rows
    trained = dict(full.inner.named_parameters())
    moved = False
    for name, weight in gathered.named_parameters():
        torch.testing.assert_close(weight, trained[name], rtol=1e-4, atol=1e-5)
        moved |= not torch.equal(weight, seeded_head(factory, 0).get_parameter(name))
    assert moved


def test_all_finite_looks_at_elements_only_when_the_sum_is_not_finite():
    big = np.full(4, 3e38, np.float32)  # finite elements whose float32 sum overflows
    for as_tensor in (False, True):
        wrap = torch.from_numpy if as_tensor else (lambda a: a)
        assert all_finite(wrap(big.copy()))
        for bad in (np.nan, np.inf, -np.inf):
            array = np.ones(1000, np.float32)
            array[617] = bad
            assert not all_finite(wrap(array))


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int32])
def test_stack_float32_casts_each_clip_once_as_astype_does(dtype):
    clips = [(np.random.default_rng(i).normal(size=(10, 3, 4)) * 100).astype(dtype) for i in range(5)]
    if dtype == np.float64:
        clips[2][1, 1, 1] = 1e300  # beyond float32: inf, as astype gives it (refused where batches are checked)
    batch = stack_float32(clips)
    assert batch.dtype == np.float32
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(batch, np.stack(clips).astype(np.float32))
    assert np.isinf(batch).any() == (dtype == np.float64)
