import numpy as np
import pytest

from ris_lite.evaluation.metrics import (
    average_precision_r,
    average_precision_r_mean,
    best_dice,
    best_dice_per_label,
    count_labels,
    diff_fg_labels,
    evaluate_labels,
    failure_kinds,
    fg_bg_dice,
    symmetric_best_dice,
)


def _two_leaves():
    gt = np.zeros((4, 4), int)
    gt[:2, :2] = 1
    gt[2:, 2:] = 2
    return gt


def test_identical_maps_are_perfect():
    gt = _two_leaves()
    assert symmetric_best_dice(gt, gt) == 1.0 and fg_bg_dice(gt, gt) == 1.0 and diff_fg_labels(gt, gt) == 0


def test_hand_computed_best_dice():
    gt = _two_leaves()
    pred = np.zeros((4, 4), int)
    pred[:2, :2] = 1
    pred[2:, 2:3] = 2  # half of leaf 2: Dice = 2*2/(2+4) = 2/3
    assert best_dice(pred, gt) == pytest.approx((1 + 2 / 3) / 2)
    assert best_dice(gt, pred) == pytest.approx((1 + 2 / 3) / 2)
    # one prediction covering both leaves: Dice with each = 2*4/(8+4) = 2/3
    merged = (gt > 0).astype(int)
    assert best_dice(merged, gt) == pytest.approx(2 / 3)
    assert best_dice(gt, merged) == pytest.approx(2 / 3)
    assert diff_fg_labels(merged, gt) == -1


def test_best_dice_per_label_says_which_leaf_loses():
    gt = _two_leaves()
    pred = np.zeros((4, 4), int)
    pred[:2, :2] = 1
    pred[2:, 2:3] = 2
    np.testing.assert_allclose(best_dice_per_label(gt, pred), [1.0, 2 / 3])
    gapped = gt.copy()
    gapped[gapped == 2] = 3  # id 2 skipped: a leaf with Dice 0, as the official code counts it
    np.testing.assert_allclose(best_dice_per_label(gapped, gt, keep_gaps=True), [1.0, 0.0, 1.0])
    np.testing.assert_allclose(best_dice_per_label(gapped, gt), [1.0, 1.0])  # by default: ranks
    np.testing.assert_allclose(best_dice_per_label(gt, np.zeros_like(gt)), [0.0, 0.0])
    assert best_dice_per_label(np.zeros_like(gt), gt).shape == (0,)


def test_label_gaps_count_as_zero_like_the_official_code():
    gt = _two_leaves()
    gapped = gt.copy()
    gapped[gapped == 2] = 4  # ids 1 and 4: count = 4, leaves 2 and 3 'exist' with Dice 0
    assert count_labels(gapped, keep_gaps=True) == 4
    assert best_dice(gapped, gt, keep_gaps=True) == pytest.approx(2 / 4)
    assert best_dice(gt, gapped, keep_gaps=True) == pytest.approx(1.0)
    assert symmetric_best_dice(gapped, gt, keep_gaps=True) == pytest.approx(0.5)
    assert diff_fg_labels(gapped, gt, keep_gaps=True) == 2


def test_label_gaps_are_renumbered_by_default():
    gt = _two_leaves()
    gapped = gt.copy()
    gapped[gapped == 2] = 4  # the same two leaves under ids 1 and 4
    assert count_labels(gapped) == 2 and diff_fg_labels(gapped, gt) == 0
    assert symmetric_best_dice(gapped, gt) == 1.0 and symmetric_best_dice(gapped, gapped) == 1.0


def test_lowest_value_is_background():
    gt = _two_leaves() + 10  # background 10, leaves 11, 12
    assert count_labels(gt) == 2 and symmetric_best_dice(gt, _two_leaves()) == 1.0


def test_empty_prediction():
    gt = _two_leaves()
    empty = np.zeros_like(gt)
    assert symmetric_best_dice(empty, gt) == 0.0
    assert fg_bg_dice(empty, gt) == 0.0 and diff_fg_labels(empty, gt) == -2
    assert fg_bg_dice(empty, empty) == 1.0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="differ in size"):
        best_dice(np.zeros((3, 3), int), np.zeros((3, 4), int))
    with pytest.raises(TypeError, match="integer"):
        best_dice(np.full((3, 3), 0.5), np.zeros((3, 3), int))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        best_dice(np.zeros((1, 3, 3), int), np.zeros((1, 3, 3), int))


def test_evaluate_labels_means_and_stds():
    gt = _two_leaves()
    r = evaluate_labels([gt, np.zeros_like(gt)], [gt, gt])
    assert r["sbd"] == pytest.approx(0.5) and r["dic"] == pytest.approx(-1.0) and r["abs_dic"] == pytest.approx(1.0)
    assert r["dic_std"] == pytest.approx(1.0) and r["n_images"] == 2


def test_ap_r_perfect_and_half():
    gt = np.zeros((2, 4, 4), bool)
    gt[0, :2], gt[1, 2:] = True, True
    assert average_precision_r([(gt, [0.9, 0.8], gt)]) == pytest.approx(1.0)
    # a confident hallucination ranked first, then one true positive of two gt: P=[0, .5], R=[0, .5]
    fake = np.zeros((1, 4, 4), bool)
    fake[0, 0, 0] = True
    preds = np.concatenate([fake, gt[:1]])
    assert average_precision_r([(preds, [0.9, 0.5], gt)]) == pytest.approx(0.25)
    # at IoU 0.1 the one-pixel fake (IoU 1/8 with leaf 1) counts as a hit: AP 0.5 there
    assert average_precision_r_mean([(preds, [0.9, 0.5], gt)]) == pytest.approx((0.5 + 8 * 0.25) / 9)


def test_failure_kinds():
    gt = np.zeros((6, 6), int)
    gt[:2, :2], gt[:2, 2:4], gt[4:, 4:] = 1, 2, 3
    pred = np.zeros((6, 6), int)
    pred[:2, :4] = 1          # joins leaves 1 and 2
    pred[3, 0] = 2            # on background: a hallucination
    kinds = failure_kinds(pred, gt)
    assert kinds["joined"] == [1] and kinds["hallucinated"] == [2] and 3 in kinds["missed"]
