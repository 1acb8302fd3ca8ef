"""The training loop's small objects on their own: the curriculum, the plateau rule, the lr
rules, the data sources; and that checkpoints name no module path."""

import math

import pytest
import torch

from ris_lite.pretrained import PRETRAINED, pretrained_path
from ris_lite.training.config import TrainConfig
from ris_lite.training.curriculum import Curriculum
from ris_lite.training.schedule import PlateauRule, cosine_lr, cut_lr
from ris_lite.training.sources import PeopleSource, SyntheticSource, open_source


def test_curriculum_stages_lengths_and_advance():
    c = Curriculum([[2, 2, 4], [4, 2, 6]])
    assert c.spec == (2, 2, 4) and not c.at_last
    assert c.lengths(torch.tensor([0, 1, 5])).tolist() == [2, 2, 2]
    c.stage_step = 7
    assert c.advance() == "advance to stage 1 (4, 2, 6)" and c.stage_step == 0 and c.at_last
    assert c.lengths(torch.tensor([0, 1, 5])).tolist() == [2, 3, 4]
    with pytest.raises(ValueError, match="last curriculum stage"):
        c.advance()
    with pytest.raises(ValueError, match="at least one stage"):
        Curriculum([])


def test_plateau_rule_on_a_fake_validation_sequence():
    rule = PlateauRule(patience=2, min_delta=0.01, stage_max_steps=100)
    # 1.0 new best; 0.5 better by > 1 %; 0.499 better by < 1 % (bad 1); 0.6 worse (bad 2) -> converged
    seen = [rule.update(v, stage_step=10, at_last=False) for v in (1.0, 0.5, 0.499, 0.6)]
    assert seen == [False, False, False, True] and rule.best == 0.5 and rule.bad == 2
    rule.reset()
    assert rule.best == math.inf and rule.bad == 0
    assert rule.update(3.0, stage_step=100, at_last=False)      # the step cap moves the curriculum on
    rule.reset()
    assert not rule.update(3.0, stage_step=100, at_last=True)   # but never cuts the lr at the last stage


def test_cut_lr_stops_at_the_floor():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
    assert cut_lr(opt, 0.1, 2e-4) == "lr -> 2.00e-04"
    assert cut_lr(opt, 0.1, 2e-4) is None and opt.param_groups[0]["lr"] == 2e-4


def test_cosine_lr_warms_up_then_spans_the_run():
    lrs = [cosine_lr(k, 1e-3, 1e-5, 100, warmup_steps=10) for k in range(101)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[55] == pytest.approx((1e-3 + 1e-5) / 2) and lrs[100] == pytest.approx(1e-5)
    assert TrainConfig(lr=1e-3, min_lr=1e-5, schedule="cosine", max_steps=100, warmup_steps=10).lr_at(55) == lrs[55]


def test_sources_serve_the_stage_asked_for():
    synthetic = open_source(TrainConfig(train_images=6, val_images=3), (106, 100))
    assert isinstance(synthetic, SyntheticSource) and synthetic.split is None
    train, val = synthetic.dataset("train", 2, 4, None), synthetic.dataset("val", 2, 4, None)
    assert (len(train), len(val)) == (6, 3)
    assert all(2 <= len(train[i][1]) <= 4 for i in range(len(train)))
    people = open_source(TrainConfig(source="people", train_images=4, data={"size": [64, 64]}), (64, 64))
    assert isinstance(people, PeopleSource)
    assert all(1 <= len(people.dataset("train", 1, 2, None)[i][1]) <= 2 for i in range(4))


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _strings(v)


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_shipped_checkpoints_hold_no_module_path(name):
    """Plain data only (they load with weights_only=True), so moving modules cannot break them."""
    state = torch.load(pretrained_path(name), map_location="cpu", weights_only=True)
    assert not [s for s in _strings(state) if "ris_lite." in s or ".py" in s]
