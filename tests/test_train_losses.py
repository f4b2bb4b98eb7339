"""Each pretraining loss and quantizer on small inputs whose answer can be worked out by hand."""

import math

import pytest
import torch

from cmg_eval.models.dcid import nearest_codes
from cmg_eval.models.rvq import residual_codes
from cmg_eval.models.fsq import FsqQuantizer
from cmg_eval.train.club import Club, CLUBSampleGroup, mi_upper_bound
from cmg_eval.train.cmcm import cmcm_loss, code_distribution, pair_loss
from cmg_eval.train.cpc import CrossCPC, info_nce
from cmg_eval.train.quantizer import (EmaCodebook, ResetRule, commitment, mm_ema_target, rvq_quantize,
                                      straight_through, vq_quantize)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------ CLUB


def test_club_bound_by_hand():
    # one step, one dim, unit variance: positive = -(mu - y)^2, negative uses the swapped y
    mu = torch.tensor([[[0.0]], [[2.0]]])
    y = torch.tensor([[[0.0]], [[2.0]]])
    value = mi_upper_bound(mu, torch.zeros_like(mu), y, torch.tensor([1, 0]))
    assert value.item() == pytest.approx((0 - (-4)) / 2)   # mean_b(0 - (-4)) / 2 = 2
    halved = mi_upper_bound(mu, torch.full_like(mu, math.log(2.0)), y, torch.tensor([1, 0]))
    assert halved.item() == pytest.approx(1.0)            # variance 2 halves both terms


def fitted_club_estimate(dependent: bool) -> float:
    """Fit q(y|x) on one sample, estimate on a fresh one (a fitted net memorises its own sample)."""
    torch.manual_seed(0)
    x, fresh_x = torch.randn(128, 2, 3, generator=generator(1)), torch.randn(128, 2, 3, generator=generator(4))
    y = x.clone() if dependent else torch.randn(128, 2, 3, generator=generator(2))
    fresh_y = fresh_x.clone() if dependent else torch.randn(128, 2, 3, generator=generator(5))
    club = Club(CLUBSampleGroup(3, 3, 16), lr=1e-2)
    club.fit(x, y, 80)
    with torch.no_grad():
        return club.net.mi_est(fresh_x, fresh_y, generator(3)).item()


def test_club_identical_inputs_score_far_above_independent():
    identical, independent = fitted_club_estimate(True), fitted_club_estimate(False)
    assert identical > 1.0
    assert abs(independent) < 0.3
    assert identical > 5 * abs(independent)


def test_club_estimate_sends_no_gradient_to_its_network():
    club = Club(CLUBSampleGroup(3, 2, 8), lr=1e-3)
    x = torch.randn(5, 2, 3, requires_grad=True)
    club.estimate(x, torch.randn(5, 2, 2)).backward()
    assert x.grad is not None and all(p.grad is None for p in club.net.parameters())
    assert all(p.requires_grad for p in club.net.parameters())


# ------------------------------------------------------------------------------------------ CPC


def test_info_nce_aligned_vs_shuffled():
    targets = 10 * torch.eye(4)
    aligned = -info_nce(targets, targets) / 4
    shuffled = -info_nce(targets, targets[[1, 2, 3, 0]]) / 4
    assert aligned.item() == pytest.approx(-math.log(1 / (1 + 3 * math.exp(-100))), abs=1e-6)
    assert shuffled.item() == pytest.approx(100 + math.log(1 + 3 * math.exp(-100)), rel=1e-6)
    uniform = -info_nce(torch.zeros(4, 3), torch.zeros(4, 3)) / 4
    assert uniform.item() == pytest.approx(math.log(4))


def test_cross_cpc_learns_aligned_pairs_only():
    torch.manual_seed(0)
    latent = torch.randn(32, 10, 8, generator=generator(1)).cumsum(1)
    aligned = {"video": latent, "audio": latent.flip(-1)}
    cpc = CrossCPC(("video", "audio"), 8, 16)
    optimizer = torch.optim.Adam(cpc.parameters(), lr=1e-2)
    for _ in range(60):
        loss = cpc(aligned)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    shuffled = {"video": latent, "audio": latent.flip(-1)[torch.randperm(32, generator=generator(2))]}
    with torch.no_grad():
        aligned_loss = sum(cpc(aligned, generator(s)).item() for s in range(5))
        shuffled_loss = sum(cpc(shuffled, generator(s)).item() for s in range(5))
    assert aligned_loss < 0.5 * shuffled_loss
    assert {k.split(".")[0] for k in cpc.state_dict()} == {"video_ar_lstm", "audio_ar_lstm", "video_predictors",
                                                            "audio_predictors"}


# ------------------------------------------------------------------------------------------ CMCM


def test_code_distribution_by_hand():
    codebook = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    p = code_distribution(torch.tensor([[[0.0, 0.0], [3.0, 4.0]]]), codebook)
    first = torch.softmax(torch.tensor([0.0, -5.0]), 0)
    assert torch.allclose(p[0], (first + first.flip(0)) / 2)


def test_code_distribution_gradient_finite_on_a_code():
    # |f|^2 + |c|^2 - 2 f.c cancels to exactly 0 in float32 for a feature ~1e-3 from a grid point of norm 3
    # (the values of dcid-fsq seed 45, step 774); sqrt's infinite derivative there gave NaN gradients
    codebook = torch.tensor([[2.0, 2.0, 1.0, 0.0], [1.0, 2.0, 1.0, 0.0], [-2.0, 0.0, 1.0, -1.0]])
    feature = torch.tensor([[[1.9993470907211304, 2.0007095336914062, 0.9999531507492065, -0.0011769235134124756],
                             [2.0, 2.0, 1.0, 0.0]]], requires_grad=True)
    flat = feature.detach().reshape(-1, 4)
    squared = (flat * flat).sum(1, keepdim=True) + (codebook * codebook).sum(1) - 2 * flat @ codebook.T
    assert squared[0, 0] == 0 and squared[1, 0] == 0
    p = code_distribution(feature, codebook)
    p[0, 0].backward()
    assert torch.isfinite(feature.grad).all()
    assert torch.allclose(p.detach().sum(-1), torch.ones(1))


def test_code_distribution_unchanged_off_the_codes():
    # away from exact zeros the safe sqrt is clamp_min(0).sqrt(), in value and gradient, bit for bit
    codebook = torch.randn(7, 4, generator=generator(3))
    feature = torch.randn(2, 3, 4, generator=generator(4), requires_grad=True)
    p = code_distribution(feature, codebook)
    (grad,) = torch.autograd.grad((p * torch.arange(7.0)).sum(), feature)
    flat = feature.reshape(-1, 4)
    squared = (flat * flat).sum(1, keepdim=True) + (codebook * codebook).sum(1) - 2 * flat @ codebook.T
    old = torch.softmax(-squared.clamp_min(0).sqrt(), dim=1).reshape(2, 3, -1).mean(dim=1)
    (old_grad,) = torch.autograd.grad((old * torch.arange(7.0)).sum(), feature)
    assert torch.equal(p, old) and torch.equal(grad, old_grad)


def test_pair_loss_matches_the_reference_shift_formula():
    p1 = torch.softmax(torch.randn(5, 7, generator=generator(1)), 1)
    p2 = torch.softmax(torch.randn(5, 7, generator=generator(2)), 1)
    s = p1 @ (p2 + 1e-10).log().T + p2 @ (p1 + 1e-10).log().T
    e = torch.exp(s + (-s).max())
    reference = -torch.log(e.diagonal() / (e.sum(1) + 1e-5)).mean()
    assert pair_loss(p1, p2).item() == pytest.approx(reference.item(), abs=1e-4)


def test_cmcm_lower_when_paired_clips_share_codes():
    codebook = torch.randn(6, 4, generator=generator(0)) * 5
    shared = codebook[torch.arange(6)][:, None, :].expand(6, 3, 4)
    matched = cmcm_loss({"audio": shared, "video": shared.clone()}, codebook)
    mismatched = cmcm_loss({"audio": shared, "video": shared[[1, 2, 3, 4, 5, 0]]}, codebook)
    assert matched.item() < 0.1 < 3.0 < mismatched.item()


# ------------------------------------------------------------------------------------------ FSQ


def test_fsq_rounds_onto_the_level_grid():
    fsq = FsqQuantizer((5, 4), dim=2)
    codes, indices = fsq.quantize_scalars(torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, -10.0], [0.2, -0.3]]))
    # 5 levels: -1, -0.5, 0, 0.5, 1; 4 levels (even, half-step offset): -1, -0.5, 0, 0.5
    assert codes.tolist() == [[0.0, 0.0], [1.0, 0.5], [-1.0, -1.0], [0.0, 0.0]]
    # mixed radix, first level fastest: digits (2, 2) -> 2 + 5*2; (4, 3) -> 19; (0, 0) -> 0
    assert indices.tolist() == [12, 19, 0, 12]


def test_fsq_index_round_trip_and_codebook_size():
    fsq = FsqQuantizer((5, 5, 4, 4), dim=8)
    every = torch.arange(400)
    codes = fsq.indices_to_codes(every)
    assert len({tuple(c) for c in codes.tolist()}) == 400
    assert torch.equal(fsq.codes_to_indices(codes), every)
    assert fsq.codebook().shape == (400, 8)
    with torch.no_grad():
        out, indices = fsq(torch.randn(3, 5, 8, generator=generator(0)))
        assert torch.allclose(out, fsq.codebook()[indices], atol=1e-6)


def test_fsq_grid_is_where_it_rounds():
    """CMCM's soft assignment for FSQ: the grid in level units holds, at each index, the integer point its
    bounded projection rounds to, so the nearest grid point of a feature is its code."""
    fsq = FsqQuantizer((5, 4, 3), dim=6)
    grid = fsq.grid()
    # 5 levels: -2..2; 4 levels (half-step offset): -2..1; 3 levels: -1..1; first level fastest
    assert grid.shape == (60, 3) and grid[0].tolist() == [-2, -2, -1] and grid[1].tolist() == [-1, -2, -1]
    assert grid[59].tolist() == [2, 1, 1]
    with torch.no_grad():
        features = 3 * torch.randn(50, 6, generator=generator(2))
        bounded = fsq.bound(fsq.project_in(features))
        indices = fsq(features)[1]
        assert torch.equal(nearest_codes(bounded, grid.double()), indices)
        assert torch.equal(grid[indices], torch.round(bounded))


def test_fsq_straight_through_gradient():
    fsq = FsqQuantizer((5, 5), dim=2)
    scalars = torch.tensor([[0.1, -0.2]], requires_grad=True)
    fsq.quantize_scalars(scalars)[0].sum().backward()
    assert torch.all(scalars.grad > 0)   # rounding passes the bound's gradient through


# ------------------------------------------------------------------------------------------ RVQ


def test_rvq_residual_sum_and_greedy_levels():
    codebooks = torch.randn(3, 10, 4, generator=generator(0), dtype=torch.float64)
    codebooks[:, 0] = 0
    features = torch.randn(2, 5, 4, generator=generator(1))
    indices, residuals = residual_codes(features, codebooks)
    assert indices.shape == (2, 5, 3)
    chosen = sum(codebooks[k][indices[..., k]] for k in range(3))
    last = residuals[-1] - codebooks[2][indices[..., 2]]
    torch.testing.assert_close(chosen + last, features.double())       # codes + final residual = input
    assert torch.equal(indices[..., 0], nearest_codes(features, codebooks[0]))
    for k in range(3):   # each level is never worse than adding nothing (row 0 is zero)
        after = residuals[k] - codebooks[k][indices[..., k]]
        assert torch.all(after.norm(dim=-1) <= residuals[k].norm(dim=-1) + 1e-12)


def test_rvq_quantize_outputs_the_sum_and_keeps_row_zero():
    embedding = torch.randn(2, 6, 3, generator=generator(0))
    embedding[:, 0] = 0
    buffers = (embedding, torch.ones(2, 6), embedding.clone(), torch.zeros(2, 6))
    levels = [EmaCodebook(*(b[k] for b in buffers), zero_row=True) for k in range(2)]
    features = {"audio": torch.randn(4, 3, 3, generator=generator(1)), "video": torch.randn(4, 3, 3, generator=generator(2))}
    out = rvq_quantize(levels, features, 0.25, ResetRule(300, 100))
    for m, z in features.items():
        expected = embedding[0][out.indices[m][..., 0]] + embedding[1][out.indices[m][..., 1]]
        torch.testing.assert_close(out.vq[m], expected)
    for update in out.updates:
        update()
    assert torch.all(embedding[:, 0] == 0)


# ------------------------------------------------------------------------------------------ VQ, MM-EMA


def loop_mm_ema(embedding, ema_count, ema_weight, features, indices, decay, eps):
    """The update written as loops over modalities, codes and tokens. MM-EMA: a code moves towards 0.5 x the
    features of its own modality plus 0.25 x each other modality's features at the same positions."""
    embedding, ema_count, ema_weight = embedding.clone(), ema_count.clone(), ema_weight.clone()
    n = len(embedding)
    for m in ("audio", "video", "text"):
        others = [o for o in ("audio", "video", "text") if o != m]
        counts = [0.0] * n
        for i in indices[m].reshape(-1).tolist():
            counts[i] += 1
        for i in range(n):
            ema_count[i] = decay * ema_count[i] + (1 - decay) * counts[i]
        total = float(ema_count.sum())
        for i in range(n):
            ema_count[i] = (ema_count[i] + eps) / (total + n * eps) * total
        dw = torch.zeros_like(ema_weight)
        flat = {k: v.reshape(-1, v.shape[-1]) for k, v in features.items()}
        for token, i in enumerate(indices[m].reshape(-1).tolist()):
            dw[i] += 0.5 * flat[m][token] + 0.25 * flat[others[0]][token] + 0.25 * flat[others[1]][token]
        for i in range(n):
            ema_weight[i] = decay * ema_weight[i] + (1 - decay) * dw[i]
            embedding[i] = ema_weight[i] / ema_count[i]
    return embedding, ema_count, ema_weight


def test_mm_ema_update_against_loops():
    torch.manual_seed(0)
    embedding = torch.randn(5, 3, dtype=torch.float64)
    ema_count, ema_weight = torch.rand(5, dtype=torch.float64) + 0.5, torch.randn(5, 3, dtype=torch.float64)
    features = {m: torch.randn(2, 4, 3, dtype=torch.float64) for m in ("video", "audio", "text")}
    indices = {m: torch.randint(0, 5, (2, 4)) for m in features}
    expected = loop_mm_ema(embedding, ema_count, ema_weight, features, indices, 0.9, 1e-5)
    codebook = EmaCodebook(embedding.clone(), ema_count.clone(), ema_weight.clone(), torch.zeros(5), decay=0.9, eps=1e-5)
    codebook.mm_ema_update(features, indices)
    for got, want in zip((codebook.embedding, codebook.ema_count, codebook.ema_weight), expected):
        torch.testing.assert_close(got, want)


def test_mm_ema_target_weights():
    z = {"audio": torch.tensor([4.0]), "video": torch.tensor([8.0]), "text": torch.tensor([0.0])}
    assert mm_ema_target(z, "audio").item() == 0.5 * 4 + 0.25 * 8 + 0.25 * 0
    two = {"audio": torch.tensor([4.0]), "video": torch.tensor([8.0])}
    assert mm_ema_target(two, "video").item() == 0.5 * 8 + 0.5 * 4


def test_commitment_by_hand():
    z = {"audio": torch.zeros(1, 1, 2), "video": torch.zeros(1, 1, 2), "text": torch.zeros(1, 1, 2)}
    codes = {"audio": torch.ones(1, 1, 2), "video": 2 * torch.ones(1, 1, 2), "text": torch.zeros(1, 1, 2)}
    loss = commitment(z, codes, beta=0.25)
    # audio: 2*0.25*1 + 0.125*4 + 0.125*0
    assert loss["audio"].item() == pytest.approx(1.0)
    assert loss["text"].item() == pytest.approx(0.125 * 1 + 0.125 * 4)


def test_vq_straight_through_and_deferred_update():
    embedding = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    codebook = EmaCodebook(embedding, torch.ones(2), embedding.clone(), torch.zeros(2), decay=0.5)
    z = torch.tensor([[[1.0, 1.0], [9.0, 9.0]]], requires_grad=True)
    out = vq_quantize(codebook, {"audio": z}, 0.25, ResetRule(300, 100))
    assert out.indices["audio"].tolist() == [[0, 1]]
    assert torch.equal(out.vq["audio"], embedding[[0, 1]][None])
    out.vq["audio"].sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))               # straight-through
    assert torch.equal(codebook.embedding, torch.tensor([[0.0, 0.0], [10.0, 10.0]]))  # not yet updated
    for update in out.updates:
        update()
    assert codebook.embedding[0, 0].item() > 0                  # pulled toward the features


def test_dead_codes_restart_next_to_used_ones():
    torch.manual_seed(0)
    embedding = torch.tensor([[0.0], [1.0], [50.0]])
    unactivated = torch.tensor([0.0, 0.0, 5.0])
    codebook = EmaCodebook(embedding, torch.ones(3), embedding.clone(), unactivated)
    reset = codebook.reset_dead(torch.tensor([True, False, False]), after=5, active_within=3)
    assert reset == 1 and unactivated.tolist() == [0, 1, 0]
    assert min(abs(embedding[2, 0].item() - 0.0), abs(embedding[2, 0].item() - 1.0)) <= 1 / 1024


def test_straight_through_value():
    z = torch.tensor([1.0], requires_grad=True)
    assert straight_through(z, torch.tensor([3.0])).item() == 3.0
