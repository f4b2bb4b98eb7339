"""The clean protocol's head training: embeddings rescaled to unit spread, at least `min_steps` optimizer steps,
and selection ties broken by the held-out loss; the paper protocol's training is untouched."""

import numpy as np
import torch
from torch import nn

from cmg_eval.heads import BestEpoch, SemanticDecoder, Standardize, clean_head, passes_per_epoch, seeded_head, train

SETTINGS = {"epochs": 3, "batch_size": 80, "lr": 1e-3, "milestones": [10], "gamma": 0.5, "clip_grad": 0.5}


def test_standardize_centres_and_divides_by_one_spread():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(50, 10, 4)) * [1e-3, 2e-3, 0, 4e-3] + [5, -1, 7, 0]).astype(np.float32)
    out = Standardize(x)(torch.from_numpy(x)).numpy().reshape(-1, 4)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-3)
    np.testing.assert_allclose(np.sqrt(out.var(0).mean()), 1, rtol=1e-3)
    ratios = out.std(0) / x.reshape(-1, 4).std(0).clip(1e-12)
    np.testing.assert_allclose(ratios[[0, 1, 3]], ratios[0], rtol=1e-3)  # one factor: relative spreads kept
    assert np.all(out[:, 2] == 0)                                         # a constant feature stays finite
    constant = np.ones((3, 2, 4), np.float32)
    assert torch.isfinite(Standardize(constant)(torch.from_numpy(constant))).all()


def test_standardize_is_absorbed_by_the_first_linear_layer():
    """The rescaled head computes a function the plain head can: fold mean and scale into its first layer."""
    x = np.random.default_rng(1).normal(3, 0.01, (20, 10, 6)).astype(np.float32)
    wrapped = clean_head(lambda: SemanticDecoder(6, 5), 0, x, {"standardize": True})
    plain = seeded_head(lambda: SemanticDecoder(6, 5), 0)
    scale, mean = wrapped[0].scale, wrapped[0].mean
    with torch.no_grad():
        plain.linear.weight.mul_(scale)
        plain.linear.bias.sub_(plain.linear.weight @ mean)
    torch.testing.assert_close(plain(torch.from_numpy(x)), wrapped(torch.from_numpy(x)), rtol=1e-4, atol=1e-4)
    assert not isinstance(clean_head(lambda: SemanticDecoder(6, 5), 0, x, {"standardize": False}), nn.Sequential)


def count_steps(n_items: int, min_steps: int) -> tuple[int, int]:
    x = np.zeros((n_items, 2, 3), np.float32)
    y = np.zeros(n_items, np.int64)
    steps, epochs = [0], [0]

    def loss(outputs, targets):
        steps[0] += 1
        return nn.functional.cross_entropy(outputs, targets)

    train(SemanticDecoder(3, 2), x, y, loss, SETTINGS, 0, lambda e, m: epochs.__setitem__(0, epochs[0] + 1),
          min_steps=min_steps)
    return steps[0], epochs[0]


def test_min_steps_repeats_passes_within_epochs_and_leaves_the_reference_loop_alone():
    assert count_steps(60, 0) == (3, 3)             # 1 batch x 3 epochs: the reference schedule
    assert count_steps(60, 10) == (12, 3)           # 4 passes per epoch; still 3 epochs (milestones, selection)
    assert count_steps(200, 10) == (18, 3)          # 3 batches x 3 epochs = 9 < 10: 2 passes
    assert count_steps(900, 10) == (36, 3)          # already enough steps: unchanged
    assert passes_per_epoch(60, SETTINGS, 3, 300) == 100


def test_best_epoch_breaks_score_ties_by_the_lower_loss():
    model = nn.Linear(1, 1)
    best = BestEpoch()
    for value, score, loss in [(1.0, 0.5, 0.9), (2.0, 1.0, 0.8), (3.0, 1.0, 0.3), (4.0, 1.0, 0.4), (5.0, 0.9, 0.1)]:
        with torch.no_grad():
            model.weight.fill_(value)
        best.offer(model, score, loss)
    assert best.restore(model).weight.item() == 3.0
