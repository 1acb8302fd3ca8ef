"""Options of issue #24 (ours, off by default): the boundary skip, the overlap penalty, the
held lr of the last stage; each off reproduces the paper's path."""

import pytest
import torch
from test_train import tiny_config

from ris_lite import Trainer
from ris_lite.model.checkpoint import load_checkpoint
from ris_lite.model.ris import RIS, RISConfig
from ris_lite.training.loss import overlap_penalty, ris_loss
from ris_lite.training.schedule import PlateauRule


def test_a_zero_initialised_skip_starts_as_the_model_without_it():
    torch.manual_seed(0)
    base = RIS(fcn_dilations=(1, 2, 4, 8), input_size=(40, 38))
    assert base.skip is None and not any(k.startswith("skip.") for k in base.state_dict())
    x = torch.rand(2, 3, 40, 38)
    m0, s0 = base(x, 4)
    for kind in ("input", "mask", "both"):
        skip = RIS(fcn_dilations=(1, 2, 4, 8), input_size=(40, 38), skip=kind)
        missing, unexpected = skip.load_state_dict(base.state_dict(), strict=False)
        assert not unexpected and all(k.startswith("skip.") for k in missing)
        m1, s1 = skip(x, 4)
        assert torch.equal(m0, m1) and torch.equal(s0, s1)
        with torch.no_grad():  # switched on, the skip changes the masks as documented
            for head in (skip.skip.to_input, skip.skip.to_mask):
                if head is not None:
                    head.weight.normal_(0, 0.5)
        m2, _ = skip(x, 4)
        assert (m2 - m0).abs().max() > 1e-3


def test_skip_is_validated_and_stored():
    with pytest.raises(ValueError, match="skip must be"):
        RIS(skip="sideways")
    with pytest.raises(ValueError, match="no canvas"):
        RIS(skip="both", canvas=True)
    config = RISConfig(skip="mask")
    assert RISConfig.from_dict(config.to_dict()).skip == "mask"
    old = config.to_dict()
    del old["skip"]  # a checkpoint from before the option
    assert RISConfig.from_dict(old).skip == "none"


def test_overlap_penalty_is_the_share_on_taken_pixels():
    masks = torch.zeros(1, 3, 4, 4)
    masks[0, 0, :2] = 1.0          # step 1: top half
    masks[0, 1, 2:] = 1.0          # step 2: bottom half, disjoint: 0
    masks[0, 2, :2] = 0.5          # step 3: repeats step 1 at half strength: all its mass is taken
    assert float(overlap_penalty(masks)) == pytest.approx(1.0, abs=1e-5)
    assert float(overlap_penalty(masks, lengths=[2])) == pytest.approx(0.0)
    assert float(overlap_penalty(masks[:, :1])) == 0.0
    masks.requires_grad_(True)
    overlap_penalty(masks).backward()
    assert masks.grad[0, 0].abs().sum() == 0  # earlier steps are not pushed: the union is detached
    assert masks.grad[0, 2].abs().sum() > 0 or masks.grad[0, 2].sum() == 0
    with pytest.raises(ValueError, match="B,T,H,W"):
        overlap_penalty(torch.zeros(3, 4, 4))


def test_overlap_weight_zero_is_the_papers_loss(tmp_path):
    t = Trainer(tiny_config(precision="fp32"), tmp_path / "a")
    images, targets, counts = t._batch()
    with torch.no_grad():
        loss_trainer = t._loss(images, targets, counts)
        lengths = t.lengths(counts)
        masks, logits = t.model(images, int(lengths.max()), score_logits=True)
        ref = ris_loss(masks, logits, targets, counts, lengths=lengths, scores_are_logits=True)
    assert float(loss_trainer) == pytest.approx(float(ref), abs=1e-5)
    w = Trainer(tiny_config(overlap_weight=2.0, precision="fp32"), tmp_path / "b")
    with torch.no_grad():
        loss_w, parts = w._loss(images, targets, counts, return_parts=True)
        pen = overlap_penalty(masks, lengths)
    assert parts["overlap"] == pytest.approx(2.0 * float(pen), abs=1e-5)
    assert float(loss_w) == pytest.approx(float(ref) + 2.0 * float(pen), abs=1e-4)


def test_plateau_hold_follows_its_definition_on_a_fake_sequence():
    """patience 2, evaluations every 50 steps at the last stage, a flat validation loss."""
    flat = [1.0] * 8
    plain = PlateauRule(patience=2, min_delta=0.01, stage_max_steps=10**6)
    cuts_plain = [s for s, v in zip(range(50, 450, 50), flat) if plain.update(v, s, at_last=True)]
    assert cuts_plain[0] == 150  # best at 50, bad at 100 and 150: cut
    held = PlateauRule(patience=2, min_delta=0.01, stage_max_steps=10**6, hold_steps=200)
    verdicts = [held.update(v, s, at_last=True) for s, v in zip(range(50, 450, 50), flat)]
    # nothing counts before step 200; 200 and 250 are the two bad evaluations: cut at 250
    # (the trainer then resets the rule; here it keeps saying "converged")
    assert verdicts == [False, False, False, False, True, True, True, True]
    below = PlateauRule(patience=2, min_delta=0.01, stage_max_steps=10**6, hold_steps=200)
    assert [below.update(1.0, s, at_last=False) for s in (50, 100, 150)] == [False, False, True]


def test_held_lr_in_the_trainer_and_options_stored(tmp_path):
    cfg = tiny_config(curriculum=[[3, 1, 3]], eval_every=1, patience=1, lr_hold_steps=4,
                      overlap_weight=0.5, model={**tiny_config().model, "skip": "both"})
    t = Trainer(cfg, tmp_path)
    lrs = []
    for _ in range(8):
        t.train_step()
        t.after_validation(1.0)  # a flat validation loss
        lrs.append(t.optimizer.param_groups[0]["lr"])
    assert lrs[:3] == [1e-3] * 3 and lrs[3] == pytest.approx(1e-4)  # held for 4 steps, then cut
    state = load_checkpoint(t.save())
    assert state["config"]["lr_hold_steps"] == 4 and state["config"]["overlap_weight"] == 0.5
    assert state["config"]["model"]["skip"] == "both"
    back = Trainer.resume(tmp_path / "last.pt")
    assert back.model.skip is not None and back.config.overlap_weight == 0.5
    with pytest.raises(ValueError, match="lr_hold_steps"):
        tiny_config(lr_hold_steps=-1)


def test_fine_tuning_may_add_a_skip_but_not_change_the_model(tmp_path):
    base = Trainer(tiny_config(), tmp_path / "base")
    path = base.save()
    t = Trainer(tiny_config(model={**tiny_config().model, "skip": "both"}), tmp_path / "skip")
    t.load_weights(str(path))
    images = torch.rand(1, 3, 32, 30)
    with torch.no_grad():
        assert torch.equal(t.model(images, 3)[0], base.model(images, 3)[0])
    other = Trainer(tiny_config(model={**tiny_config().model, "channels": 6}), tmp_path / "wide")
    with pytest.raises(ValueError, match="differs"):
        other.load_weights(str(path))


def test_cli_options_reach_the_checkpoint_and_init_may_add_a_skip(tmp_path, capsys):
    from ris_lite.cli import main

    base = tmp_path / "base"
    assert main(["train", "--out", str(base), "--max-steps", "1", "--quiet", "--train-images", "2",
                 "--curriculum", "2,1,3", "--val-images", "4", "--channels", "8", "--precision", "fp32"]) == 0
    run = tmp_path / "skip"
    assert main(["train", "--out", str(run), "--max-steps", "1", "--quiet", "--train-images", "2",
                 "--init", str(base / "last.pt"), "--skip", "mask", "--overlap-weight", "0.3",
                 "--lr-hold-steps", "500", "--val-images", "4", "--curriculum", "2,1,3"]) == 0
    cfg = load_checkpoint(run / "last.pt")["config"]
    assert cfg["model"]["skip"] == "mask" and cfg["model"]["channels"] == 8
    assert (cfg["overlap_weight"], cfg["lr_hold_steps"]) == (0.3, 500)
    assert main(["train", "--out", str(tmp_path / "bad"), "--lr-hold-steps", "-1", "--max-steps", "1"]) == 2
    assert "--lr-hold-steps" in capsys.readouterr().err
