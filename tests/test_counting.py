"""Issue #38 (ours, off by default): the union of emitted masks into the ConvLSTM and the stop score,
the monotonic score loss, the score loss's start, label assembly, and the count report."""

import numpy as np
import pytest
import torch
from test_train import tiny_config

from ris_lite import Trainer
from ris_lite.evaluation.count_report import (
    best_constant,
    count_correlation,
    count_report,
    late_step_kinds,
)
from ris_lite.model.assembly import argmax_labels, assemble, drop_small, first_claim_labels
from ris_lite.model.checkpoint import load_checkpoint
from ris_lite.model.counting import score_statistics
from ris_lite.model.ris import RIS
from ris_lite.pretrained import load_model
from ris_lite.training.loss import monotonic_score_penalty, ris_loss

SMALL = dict(fcn_dilations=(1, 2, 4, 8), input_size=(40, 38), channels=6)


def _switched_on(model: RIS) -> RIS:
    with torch.no_grad():
        for p in list(model.union_input.parameters()) + list(model.union_score.parameters()):
            p.normal_(0, 0.5)
    return model


def test_zero_initialised_union_options_start_as_the_papers_model():
    base = RIS(**SMALL)
    x = torch.rand(2, 3, 40, 38)
    m0, s0 = base(x, 5)
    counted = RIS(**SMALL, union_input=True, score_sees_union=True)
    missing, unexpected = counted.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("union_input.", "union_score.")) for k in missing)
    m1, s1 = counted(x, 5)
    assert torch.equal(m0, m1) and torch.equal(s0, s1)
    m2, s2 = _switched_on(counted)(x, 5)  # switched on, both change what they feed
    assert (m2 - m0).abs().max() > 1e-4 and (s2 - s0).abs().max() > 1e-4
    assert torch.equal(m2[:, 0], m0[:, 0])  # step 1 reads an empty union: its mask is the paper's


def test_each_step_reads_exactly_the_detached_union_of_the_earlier_steps():
    model = _switched_on(RIS(**SMALL, union_input=True, score_sees_union=True))
    x = torch.rand(2, 3, 40, 38)
    masks, scores, st = model(x, 5, return_stages=True)
    union = st["union"]
    assert union.shape == st["log_softmax_b"].shape and not union.requires_grad
    small = torch.sigmoid(st["log_softmax_b"]).detach()  # each step's mask at the feature grid
    expected = torch.zeros_like(small[:, 0])
    for t in range(5):  # recomputed step by step, independently of the model's running max
        assert torch.allclose(union[:, t], expected)
        expected = torch.maximum(expected, small[:, t])
    # no gradient flows through the union: the mask head's parameters shape a later step's
    # score and mask only through the union (the ConvLSTM never reads the masks otherwise)
    head = [model.inhibition.conv.weight, model.inhibition.b]
    grads = torch.autograd.grad(scores[:, 3].sum(), head, allow_unused=True, retain_graph=True)
    assert all(g is None or g.abs().sum() == 0 for g in grads)
    grads = torch.autograd.grad(scores[:, 3].sum(), list(model.union_score.parameters()))
    assert grads[0].abs().sum() > 0  # while the score head itself learns from the union


def test_score_statistics_on_a_hand_made_grid():
    h = torch.zeros(1, 2, 4, 4)
    h[0, 0, 0, 0], h[0, 1, 3, 3] = 5.0, 2.0
    union = torch.zeros(1, 4, 4)
    union[0, :2] = 1.0  # the top half is done
    mask = torch.zeros(1, 4, 4)
    mask[0, 1:3] = 1.0  # half of it on done pixels
    stats = score_statistics(h, mask, union)[0]
    # h * (1 - U): channel 0's 5 is on a done pixel -> its max over the free half is 0
    assert stats.tolist() == pytest.approx([0.0, 2.0, 0.5, float(np.log1p(8)), 0.5])


def test_monotonic_penalty_is_zero_on_non_increasing_scores_and_the_rises_otherwise():
    falling = torch.tensor([[0.9, 0.9, 0.5, 0.1], [1.0, 0.2, 0.2, 0.0]])
    assert float(monotonic_score_penalty(falling)) == 0.0
    rising = torch.tensor([[0.9, 0.5, 0.7, 0.1], [0.2, 0.6, 0.3, 0.9]])
    # rises: 0.2 in image 0; 0.4 and 0.6 in image 1 -> (0.2 + 1.0) / B
    assert float(monotonic_score_penalty(rising)) == pytest.approx(0.6)
    assert float(monotonic_score_penalty(rising, lengths=[4, 2])) == pytest.approx(0.3)  # only 0.2 + 0.4
    logits = torch.logit(rising)
    assert float(monotonic_score_penalty(logits, scores_are_logits=True)) == pytest.approx(0.6, abs=1e-5)
    with pytest.raises(ValueError, match="B,T"):
        monotonic_score_penalty(torch.zeros(4))


def test_score_loss_starts_at_its_stage_and_options_are_stored(tmp_path):
    cfg = tiny_config(score_from_stage=1, monotonic_weight=2.0, precision="fp32",
                      model={**tiny_config().model, "union_input": True, "score_sees_union": True})
    t = Trainer(cfg, tmp_path)
    images, targets, counts = t._batch()
    loss, parts = t._loss(images, targets, counts, return_parts=True)
    assert "monotonic" not in parts  # stage 0: the masks' term only
    with torch.no_grad():  # independent: eq. (5) with lambda = 0, and with lambda = 1
        masks, logits = t.model(images, int(t.lengths(counts).max()), score_logits=True)
        ref0, ref1 = (ris_loss(masks, logits, targets, counts, lam, lengths=t.lengths(counts),
                               scores_are_logits=True) for lam in (0.0, 1.0))
    assert float(loss) == pytest.approx(float(ref0), rel=1e-5) and float(ref1) > float(ref0) + 1e-3
    t.curriculum.advance()
    _, parts = t._loss(images, targets, counts, return_parts=True)
    assert "monotonic" in parts
    t.train_step()
    state = load_checkpoint(t.save())
    assert (state["config"]["score_from_stage"], state["config"]["monotonic_weight"]) == (1, 2.0)
    back = load_model(tmp_path / "last.pt")
    assert back.config.union_input and back.config.score_sees_union
    x = torch.rand(1, 3, 32, 30)
    with torch.no_grad():
        assert torch.equal(back(x, 3)[1], t.model.eval()(x, 3)[1])
    with pytest.raises(ValueError, match="monotonic_weight"):
        tiny_config(monotonic_weight=-1)
    with pytest.raises(ValueError, match="canvas"):
        RIS(canvas=True, union_input=True)


def test_fine_tuning_may_add_the_union_options(tmp_path):
    base = Trainer(tiny_config(), tmp_path / "base")
    path = base.save()
    t = Trainer(tiny_config(model={**tiny_config().model, "union_input": True, "score_sees_union": True}),
                tmp_path / "u")
    t.load_weights(str(path))
    x = torch.rand(1, 3, 32, 30)
    with torch.no_grad():
        a, b = t.model(x, 3), base.model(x, 3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    plain = Trainer(tiny_config(), tmp_path / "plain")
    with pytest.raises(ValueError, match="differs"):  # removing an option is not allowed
        plain.load_weights(str(t.save()))


def _hand_masks():
    masks = torch.zeros(3, 4, 6)
    masks[0, :, :3] = 0.9   # step 1: left half, score 0.6
    masks[1, :, 2:5] = 0.8  # step 2: overlaps step 1 on column 2, score 0.95
    masks[2, 0, 5] = 0.7    # step 3: one pixel, score 0.7
    return masks, torch.tensor([0.6, 0.95, 0.7])


def test_first_claim_argmax_and_size_filter_on_hand_made_masks():
    masks, scores = _hand_masks()
    first = first_claim_labels(masks)
    assert first[:, :3].eq(1).all() and first[:, 3:5].eq(2).all() and first[0, 5] == 3 and first[1:, 5].eq(0).all()
    arg = argmax_labels(masks, scores)
    # column 2: 0.95 * 0.8 = 0.76 beats 0.6 * 0.9 = 0.54 -> step 2 takes it
    assert arg[:, :2].eq(1).all() and arg[:, 2:5].eq(2).all() and arg[0, 5] == 3
    assert torch.equal(drop_small(arg, 2), torch.where(arg == 3, torch.zeros_like(arg), arg))
    assert drop_small(first, 9).max() == 1 and drop_small(first, 9)[:, 3:].eq(0).all()  # 8-pixel step 2 goes
    assert torch.equal(assemble(masks, scores), first)  # the paper's rule is the default
    assert torch.equal(assemble(masks, scores, "argmax", min_size=2), drop_small(arg, 2))
    with pytest.raises(ValueError, match="assembly"):
        assemble(masks, scores, "vote")
    with pytest.raises(ValueError, match="min_size"):
        drop_small(first, -1)
    with pytest.raises(ValueError, match="scores"):
        argmax_labels(masks, scores[:2])


def test_predict_passes_assembly_and_size_through():
    model = RIS(**SMALL).eval()
    x = torch.rand(3, 40, 38)
    (m, s), = model.kept_masks(x, 6, return_scores=True)
    assert torch.equal(model.predict(x, 6)[0], first_claim_labels(m))
    assert torch.equal(model.predict(x, 6, assembly="argmax", min_size=30)[0],
                       drop_small(argmax_labels(m, s), 30))


def test_best_constant_and_correlation():
    assert best_constant([14, 16, 16, 17, 20]) == 16
    assert best_constant([1, 2, 3, 4]) == 2  # every c in [2, 3] ties: the smallest
    assert count_correlation([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert count_correlation([5, 5, 5], [1, 2, 3]) is None
    with pytest.raises(ValueError):
        best_constant([])


def test_late_step_kinds_on_hand_made_leaves():
    leaves = torch.zeros(2, 4, 6, dtype=torch.bool)
    leaves[0, :, :3] = True
    leaves[1, :, 3:] = True
    masks = torch.zeros(4, 4, 6)
    masks[0, :, :3] = 1.0   # leaf 0, whole
    masks[1, :, :3] = 1.0   # leaf 0 again: duplicate
    masks[2, :1, 3:] = 1.0  # a quarter of leaf 1: fragment
    masks[3, :, 3:] = 1.0   # leaf 1 whole, but step 3 targeted it already: duplicate
    assert late_step_kinds(masks, leaves, n=1) == ["duplicate", "fragment", "duplicate"]
    masks[2] = 0
    masks[2, :, 3:] = 1.0
    assert late_step_kinds(masks[:3], leaves, n=2) == ["new"]


class _FakeRIS(torch.nn.Module):
    """Returns fixed masks and scores: a count report whose answer is known."""

    def __init__(self, masks, scores):
        super().__init__()
        self.masks, self.scores = masks, scores
        self.w = torch.nn.Parameter(torch.zeros(()))

    @property
    def device(self):
        return self.w.device

    def forward(self, images, steps):
        return self.masks[: images.shape[0], :steps], self.scores[: images.shape[0], :steps]


def test_count_report_on_a_hand_made_case():
    H, W = 4, 6
    data = []
    for n in (2, 3):
        leaves = torch.zeros(n, H, W, dtype=torch.bool)
        for k in range(n):
            leaves[k, :, 2 * k:2 * k + 2] = True
        data.append((torch.zeros(3, H, W), leaves))
    masks = torch.zeros(2, 5, H, W)
    for k in range(3):
        masks[:, k, :, 2 * k:2 * k + 2] = 1.0
    masks[:, 3] = masks[:, 0]  # step 4 repeats leaf 1
    # plant 1 (2 leaves): stops after 4 steps -> 3 segments (step 4 is hidden by first claim)
    # plant 2 (3 leaves): stops after 3 steps -> 3 segments
    scores = torch.tensor([[0.9, 0.9, 0.8, 0.6, 0.1], [0.9, 0.8, 0.7, 0.2, 0.1]])
    r = count_report(_FakeRIS(masks, scores), data, constant=2, max_steps=5)
    assert r["true_counts"] == [2, 3] and r["predicted_counts"] == [3, 3]
    assert r["abs_dic"] == 0.5 and r["dic"] == 0.5 and r["constant_abs_dic"] == 0.5
    assert r["stop_minus_true"]["mean"] == 1.0  # +2 and 0
    assert r["steps_after_true_count"] == 2  # plant 1's steps 3 (leaf 3 is background there) and 4
    assert r["after_true_count"]["background"] == 0.5 and r["after_true_count"]["duplicate"] == 0.5
    # mean score at the true count (offset 0): step 2 of plant 1 (0.9), step 3 of plant 2 (0.7)
    assert r["score_by_offset"]["0"] == pytest.approx(0.8)
    assert r["score_by_offset"]["1"] == pytest.approx((0.8 + 0.2) / 2)
    assert r["histogram"] == {"2,3": 1, "3,3": 1}


def test_interpolated_masks_in_the_count_report_match_the_input_size():
    model = RIS(**{**SMALL, "upsample": False}).eval()
    data = [(torch.rand(3, 40, 38), torch.ones(1, 40, 38, dtype=torch.bool))]
    r = count_report(model, data, constant=1, max_steps=3)
    assert r["plants"] == 1 and len(r["predicted_counts"]) == 1


def test_cli_counting_options_reach_the_checkpoint(tmp_path, capsys):
    from ris_lite.cli import main

    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--max-steps", "1", "--quiet", "--train-images", "2",
                 "--curriculum", "2,1,3", "--val-images", "4", "--channels", "4", "--precision", "fp32",
                 "--union-input", "--score-sees-union", "--monotonic-weight", "0.5", "--score-from-stage", "1"]) == 0
    cfg = load_checkpoint(run / "last.pt")["config"]
    assert cfg["model"]["union_input"] and cfg["model"]["score_sees_union"]
    assert (cfg["monotonic_weight"], cfg["score_from_stage"]) == (0.5, 1)
    assert main(["train", "--out", str(tmp_path / "p"), "--data", "people", "--union-input", "--max-steps", "1"]) == 2
    assert "--union-input" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "c"), "--canvas", "--union-input", "--max-steps", "1"]) == 2
    assert "canvas" in capsys.readouterr().err
