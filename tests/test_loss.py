import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ris_lite import match, pairwise_soft_iou, ris_loss, soft_iou
from ris_lite.training.loss import per_image_loss, soft_iou_grad


def _random_case(T, n, H=6, W=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(1, T, H, W, generator=g)
    targets = torch.rand(1, max(n, 1), H, W, generator=g) > 0.6
    scores = torch.rand(1, T, generator=g).clamp(0.05, 0.95)
    return masks, scores, targets, torch.tensor([n])


def test_soft_iou_values():
    a = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    assert torch.isclose(soft_iou(a, a), torch.tensor(1.0), atol=1e-5)
    assert soft_iou(a, 1 - a) == 0
    # <p,y> = 1, |p| = 2, |y| = 2 -> 1 / (2 + 2 - 1)
    torch.testing.assert_close(soft_iou(torch.full((2, 2), 0.5), a.bool()), torch.tensor(1 / 3), atol=1e-5, rtol=0)


def test_soft_iou_never_nan():
    z = torch.zeros(3, 4, 4)
    assert not torch.isnan(soft_iou(z, z)).any() and (soft_iou(z, z) == 0).all()
    p = torch.zeros(4, 4, requires_grad=True)
    soft_iou(p, torch.zeros(4, 4)).backward()
    assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize("T,n", [(3, 3), (2, 5), (6, 4), (5, 6), (1, 1), (4, 6)])
def test_matching_equals_brute_force(T, n):
    for seed in range(5):
        masks, _, targets, counts = _random_case(T, n, seed=seed)
        iou = pairwise_soft_iou(masks, targets)[0]
        rows, cols = match(iou.unsqueeze(0), counts)[0]
        best = iou[rows, cols].sum()
        k = min(T, n)
        brute = max(sum(float(iou[t, g]) for t, g in zip(range(k), perm))
                    for perm in itertools.permutations(range(n), k))
        assert float(best) == pytest.approx(brute, abs=1e-5)
        assert sorted(rows.tolist()) == list(range(k))  # only the first min(T, n) predictions


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 6), T=st.integers(1, 8), perm_seed=st.integers(0, 1000))
def test_loss_is_invariant_to_permuting_ground_truth(seed, n, T, perm_seed):
    masks, scores, targets, counts = _random_case(T, n, seed=seed)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(perm_seed))
    a = ris_loss(masks, scores, targets, counts)
    b = ris_loss(masks, scores, targets[:, perm], counts)
    torch.testing.assert_close(a, b)


def test_autograd_equals_algorithm_1():
    masks, scores, targets, counts = _random_case(4, 3, seed=3)
    masks.requires_grad_()
    scores.requires_grad_()
    ris_loss(masks, scores, targets, counts, lam=0.7).backward()
    iou = pairwise_soft_iou(masks.detach(), targets)
    rows, cols = match(iou, counts)[0]
    expected = torch.zeros_like(masks)
    for t, g in zip(rows, cols):
        expected[0, t] = -soft_iou_grad(masks[0, t].detach(), targets[0, g])
    torch.testing.assert_close(masks.grad, expected)
    s = scores.detach()
    y = (torch.arange(4) < 3).float()
    dbce = -(y / s - (1 - y) / (1 - s))  # f'_BCE wrt s
    torch.testing.assert_close(scores.grad, 0.7 * dbce, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("T,n", [(3, 0), (2, 5), (7, 3), (3, 3)])
def test_finite_for_edge_cases(T, n):
    masks, scores, targets, counts = _random_case(T, n)
    for m in (masks, torch.zeros_like(masks)):
        m = m.clone().requires_grad_()
        loss = ris_loss(m, scores, targets if n else torch.zeros_like(targets), counts)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(m.grad).all()


def test_empty_image_has_only_the_score_term():
    masks, scores, targets, _ = _random_case(3, 1)
    loss = ris_loss(masks, scores, torch.zeros_like(targets), torch.tensor([0]))
    expected = -torch.log(1 - scores).sum()
    torch.testing.assert_close(loss, expected)


def test_t_less_than_n_targets_all_ones_and_best_instances():
    masks, scores, targets, counts = _random_case(2, 5, seed=9)
    loss, parts = ris_loss(masks, scores, targets, counts, return_parts=True)
    assert len(parts["matches"][0][0]) == 2
    bce = -torch.log(scores).sum()
    iou = pairwise_soft_iou(masks, targets)[0]
    best = max(float(iou[0, a] + iou[1, b]) for a, b in itertools.permutations(range(5), 2))
    torch.testing.assert_close(loss, bce - best)


def test_batched_equals_per_image():
    g = torch.Generator().manual_seed(0)
    B, T, N = 4, 5, 6
    masks = torch.rand(B, T, 8, 8, generator=g)
    scores = torch.rand(B, T, generator=g).clamp(0.05, 0.95)
    counts = torch.tensor([3, 0, 6, 2])
    targets = torch.rand(B, N, 8, 8, generator=g) > 0.5
    for b in range(B):
        targets[b, counts[b]:] = False
    lengths = torch.tensor([5, 2, 5, 4])
    batched = ris_loss(masks, scores, targets, counts, lengths=lengths)
    torch.testing.assert_close(batched, per_image_loss(masks, scores, targets, counts, lengths=lengths.tolist()))
    torch.testing.assert_close(ris_loss(masks, scores, targets, counts),
                               per_image_loss(masks, scores, targets, counts))


def test_logit_scores_give_the_same_loss():
    masks, scores, targets, counts = _random_case(4, 2)
    torch.testing.assert_close(ris_loss(masks, scores, targets, counts),
                               ris_loss(masks, torch.logit(scores), targets, counts, scores_are_logits=True))


@pytest.mark.parametrize("bad,match_", [
    (dict(masks=torch.rand(2, 3, 4)), "masks"),
    (dict(scores=torch.rand(2, 4)), "scores"),
    (dict(targets=torch.zeros(2, 3, 5, 4, dtype=torch.bool)), "targets"),
    (dict(counts=torch.tensor([1.0, 2.0])), "counts"),
    (dict(counts=torch.tensor([1, 9])), "counts"),
])
def test_bad_shapes_are_named(bad, match_):
    args = dict(masks=torch.rand(2, 3, 4, 4), scores=torch.rand(2, 3),
                targets=torch.zeros(2, 3, 4, 4, dtype=torch.bool), counts=torch.tensor([1, 2]))
    args.update(bad)
    with pytest.raises(ValueError, match=match_):
        ris_loss(**args)


def test_flattened_masks():
    p = torch.tensor([0.5, 0.5, 0.0])
    y = torch.tensor([1, 0, 0])
    assert float(soft_iou(p, y)) == pytest.approx(0.5 / 1.5, abs=1e-5)
    batch = torch.stack([p, 1 - p])
    torch.testing.assert_close(soft_iou(batch, y, dims=1), torch.tensor([1 / 3, 0.5 / 2.5]), atol=1e-5, rtol=0)


def test_numpy_inputs_to_soft_iou():
    a = np.ones((3, 3), np.float32)
    assert float(soft_iou(a, a > 0)) == pytest.approx(1.0, abs=1e-5)
