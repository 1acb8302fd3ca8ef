"""The diagnosis of ris_lite.evaluation.diagnose on hand-made label maps and masks."""

import numpy as np
import pytest
import torch

from ris_lite.data.rosette import RosetteDataset
from ris_lite.evaluation.diagnose import (
    diagnose,
    leaf_dice_by_area,
    probe_auc,
    roc_auc,
    sample_pairs,
    segment_kinds,
    step_targets,
)
from ris_lite.model.ris import RIS


def truth_map():
    """Three leaves in a 10 x 30 frame: columns 0-9 (leaf 1), 10-19 (leaf 2), 20-29 (leaf 3),
    rows 0-7; rows 8-9 are background."""
    t = np.zeros((10, 30), np.int64)
    t[:8, 0:10], t[:8, 10:20], t[:8, 20:30] = 1, 2, 3
    return t


def test_segment_kinds_on_a_hand_made_map():
    t = truth_map()
    p = np.zeros_like(t)
    p[:8, 0:10] = 1                      # exactly leaf 1: whole
    p[:8, 10:20] = 2                     # leaves 2 and 3 together ...
    p[:8, 20:30] = 2                     # ... one segment: merge
    p[8:, :] = 3                         # the background strip: background
    assert segment_kinds(p, t) == ["whole", "merge", "background"]

    p = np.zeros_like(t)
    p[:3, 0:10] = 1                      # 30 of leaf 1's 80 pixels: fragment
    p[:10, 10:20] = 2                    # leaf 2, 20 background pixels below it ...
    p[:8, 20:23] = 2                     # ... and 24 of leaf 3 (under half): Dice 0.78, spill
    assert segment_kinds(p, t) == ["fragment", "spill"]
    with pytest.raises(ValueError, match="label maps"):
        segment_kinds(p[:5], t)


def test_step_targets_counts_repeats_and_untargeted_leaves():
    t = torch.from_numpy(truth_map())
    leaves = torch.stack([t == k for k in (1, 2, 3)])
    masks = torch.zeros(4, 10, 30)
    masks[0, :8, 0:12] = 0.9   # leaf 1 plus two columns of leaf 2
    masks[1, :8, 0:10] = 0.9   # leaf 1 again: a duplicate
    masks[2, :8, 10:20] = 0.9  # leaf 2
    masks[3, 8:, :] = 0.9      # only background: no best leaf
    out = step_targets(masks, leaves)
    assert out["best"] == [0, 0, 1, -1]
    assert out["duplicate"] == [False, True, False, False]
    assert out["untargeted"] == [2]
    assert out["first_dice"] == pytest.approx(2 * 80 / (96 + 80))
    assert out["first_touches"] == 2   # 16 of leaf 2's 80 pixels is >= 10 %


def test_leaf_dice_by_area_bins_each_leaf_once():
    t = truth_map()
    p = np.zeros_like(t)
    p[:8, 0:10] = 1
    out = leaf_dice_by_area(p, t, bins=(0, 50, 10**9))
    assert out == {"50-max": [1.0, 0.0, 0.0]}


def test_roc_auc_matches_the_pair_count_definition():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 200).astype(float)  # many ties
    labels = rng.random(200) < 0.4
    pos, neg = scores[labels], scores[~labels]
    brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert roc_auc(scores, labels) == pytest.approx(brute)
    with pytest.raises(ValueError, match="both"):
        roc_auc(scores, np.ones(200, bool))


def test_probe_separates_a_learnable_rule_and_not_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(800, 6, generator=g)
    y = x[:, 0] * x[:, 3] > 0  # a product: needs the hidden layer
    assert probe_auc(x[:400], y[:400], x[400:], y[400:]) > 0.9
    noise = torch.rand(800, generator=g) < 0.5
    assert abs(probe_auc(x[:400], noise[:400], x[400:], noise[400:]) - 0.5) < 0.1


def test_pairs_lie_on_the_foreground_at_the_asked_distance():
    labels = torch.from_numpy(truth_map())
    cells = sample_pairs(labels, 100, torch.Generator().manual_seed(0))
    assert len(cells) == 100
    d = (cells[:, :2] - cells[:, 2:]).abs().amax(1)
    assert bool(((d >= 2) & (d <= 4)).all())
    assert bool((labels[cells[:, 0], cells[:, 1]] > 0).all() and (labels[cells[:, 2], cells[:, 3]] > 0).all())


def test_diagnose_runs_on_a_model_and_reports_shares():
    torch.manual_seed(0)
    model = RIS(input_size=(48, 46))
    data = RosetteDataset("test", length=4, size=(48, 46))
    out = diagnose(model, data, max_steps=4, probe_plants=4)
    assert out["plants"] == 4
    assert sum(out["segment_kinds"].values()) == pytest.approx(1.0, abs=0.01) or out["segments"] == 0
    assert 0 <= out["duplicate_steps"] <= 1 and 0 <= out["untargeted_leaves"] <= 1
    assert set(out["probe_auc"]) == {"rgb", "features", "state"}
    assert all(0 <= v <= 1 for v in out["probe_auc"].values())
