"""Issue #47 (ours, off by default): the painted-leaf stop target, the plant FCN started from another
model's FCN (``--init-fcn``) and left untrained for the first stages (``--fcn-frozen-stages``)."""

import pytest
import torch
import torch.nn.functional as F
from test_train import tiny_config

from ris_lite import Trainer
from ris_lite.model.checkpoint import load_checkpoint
from ris_lite.model.embedding import EmbeddingModel
from ris_lite.model.ris import RIS
from ris_lite.training.checkpointing import copy_fcn
from ris_lite.training.loss import painted_leaf_targets, ris_loss


def _leaves():
    """Three leaves on a 6 x 12 grid: A columns 0-3, B columns 4-7, C columns 8-11."""
    t = torch.zeros(1, 3, 6, 12, dtype=torch.bool)
    for j in range(3):
        t[0, j, :, 4 * j:4 * j + 4] = True
    return t


def _steps(*paints):
    """One mask per step: 0.9 on the columns given (a slice), 0.1 elsewhere."""
    m = torch.full((1, len(paints), 6, 12), 0.1)
    for t, cols in enumerate(paints):
        if cols is not None:
            m[0, t, :, cols] = 0.9
    return m


def test_painted_target_rewards_a_new_leaf_only():
    leaves = _leaves()
    masks = _steps(slice(0, 4),   # A: new -> 1
                   slice(0, 4),   # A again: a repeat -> 0
                   slice(4, 8),   # B: new -> 1
                   slice(8, 9),   # a quarter of C: a fragment (IoU 0.25) -> 0
                   None,          # nothing painted -> 0
                   slice(8, 11))  # three quarters of C (IoU 0.75): new -> 1
    target = painted_leaf_targets(masks, leaves, torch.tensor([3]))
    assert target.tolist() == [[1.0, 0.0, 1.0, 0.0, 0.0, 1.0]]
    # eq. (5)'s target would reward the repeat at step 2 and punish the late leaf at step 6
    assert target.tolist() != [[1.0, 1.0, 1.0, 0.0, 0.0, 0.0]]
    # a leaf beyond the image's count is not a leaf
    assert painted_leaf_targets(masks, leaves, torch.tensor([2])).tolist() == [[1.0, 0.0, 1.0, 0.0, 0.0, 0.0]]
    assert painted_leaf_targets(masks, leaves, torch.tensor([0])).sum() == 0


def test_ris_loss_with_the_painted_target_is_the_bce_against_it():
    leaves, masks = _leaves(), _steps(slice(0, 4), slice(0, 4), slice(4, 8))
    logits = torch.tensor([[2.0, 1.5, -0.5]])
    counts = torch.tensor([3])
    loss, parts = ris_loss(masks, logits, leaves, counts, scores_are_logits=True, return_parts=True,
                           score_target="painted")
    by_hand = F.binary_cross_entropy_with_logits(logits, torch.tensor([[1.0, 0.0, 1.0]]), reduction="sum")
    assert parts["score_loss"] == pytest.approx(float(by_hand), rel=1e-6)
    _, paper = ris_loss(masks, logits, leaves, counts, scores_are_logits=True, return_parts=True)
    assert paper["score_loss"] != pytest.approx(parts["score_loss"])  # eq. (5): [1, 1, 1]
    assert paper["mask_loss"] == pytest.approx(parts["mask_loss"])  # the masks' term is unchanged
    with pytest.raises(ValueError, match="score_target"):
        ris_loss(masks, logits, leaves, counts, score_target="bogus")
    with pytest.raises(ValueError, match="score_target"):
        tiny_config(score_target="bogus")


def test_trainer_trains_the_score_toward_the_painted_target(tmp_path):
    t = Trainer(tiny_config(score_target="painted", precision="fp32"), tmp_path)
    images, targets, counts = t._batch()
    loss = t._loss(images, targets, counts).detach()
    with torch.no_grad():  # independent: the loss with the target computed here
        lengths = t.lengths(counts)
        masks, logits = t.model(images, int(lengths.max()), score_logits=True)
        ref = ris_loss(masks, logits, targets, counts, lengths=lengths, scores_are_logits=True,
                       score_target="painted")
        paper = ris_loss(masks, logits, targets, counts, lengths=lengths, scores_are_logits=True)
    assert float(loss) == pytest.approx(float(ref), rel=1e-5)
    assert float(loss) != pytest.approx(float(paper), rel=1e-5)


def _plant(**kw):
    return dict(fcn_dilations=(1, 2, 4, 8), input_size=(40, 38), channels=6, **kw)


def test_copy_fcn_copies_exactly_the_fcn_and_nothing_else():
    torch.manual_seed(0)
    emb = EmbeddingModel(**_plant())
    with torch.no_grad():  # every weight, biases included, unlike the fresh RIS's
        for p in emb.parameters():
            p.normal_()
    ris = RIS(**_plant())
    before = {k: v.clone() for k, v in ris.state_dict().items()}
    copy_fcn(ris, emb, "emb")
    src = emb.features.fcn.state_dict()
    for k, v in ris.state_dict().items():
        if k.startswith("fcn."):
            assert torch.equal(v, src[k[len("fcn."):]])
            assert not torch.equal(v, before[k])
        else:
            assert torch.equal(v, before[k])
    with pytest.raises(ValueError, match=r"fcn_dilations \[1, 1, 1, 1\]") as e:
        copy_fcn(RIS(**_plant()), EmbeddingModel(fcn_dilations=(1, 1, 1, 1), input_size=(40, 38), channels=6), "e")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="channels 8"):
        copy_fcn(RIS(**_plant()), EmbeddingModel(fcn_dilations=(1, 2, 4, 8), input_size=(40, 38), channels=8), "e")


def test_frozen_stages_leave_the_fcn_as_it_is_then_train_it(tmp_path):
    t = Trainer(tiny_config(fcn_frozen_stages=1, precision="fp32"), tmp_path)
    fcn0 = [p.detach().clone() for p in t.model.fcn.parameters()]
    lstm0 = [p.detach().clone() for p in t.model.lstm.parameters()]
    for _ in range(2):
        t.train_step()
    assert all(torch.equal(a, b) for a, b in zip(fcn0, t.model.fcn.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(lstm0, t.model.lstm.parameters()))
    t.curriculum.advance()
    t.train_step()
    assert any(not torch.equal(a, b) for a, b in zip(fcn0, t.model.fcn.parameters()))


def test_cli_init_fcn_reaches_the_run_and_refuses_another_fcn(tmp_path, capsys):
    from ris_lite.cli import main

    emb = Trainer(tiny_config(model_kind="embedding", model={"channels": 4, "input_size": [32, 30]},
                              curriculum=[[2, 1, 3]]), tmp_path / "emb")
    path = emb.save()
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--max-steps", "1", "--quiet", "--train-images", "2",
                 "--curriculum", "2,1,3", "--val-images", "4", "--channels", "4", "--input-size", "32,30",
                 "--precision", "fp32", "--init-fcn", str(path), "--fcn-frozen-stages", "1",
                 "--score-target", "painted"]) == 0
    state = load_checkpoint(run / "last.pt")
    assert state["config"]["init_fcn"] == str(path)
    assert (state["config"]["fcn_frozen_stages"], state["config"]["score_target"]) == (1, "painted")
    for k, v in emb.model.features.fcn.state_dict().items():  # frozen at stage 0: still the copy
        assert torch.equal(state["model"][f"fcn.{k}"], v)
    capsys.readouterr()
    assert main(["train", "--out", str(tmp_path / "w"), "--max-steps", "1", "--channels", "6",
                 "--input-size", "32,30", "--init-fcn", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "its FCN differs" in err and "channels 4" in err and len(err.splitlines()) == 1
    assert main(["train", "--out", str(tmp_path / "x"), "--init", "rosettes", "--init-fcn", str(path)]) == 2
    assert "--init-fcn" in capsys.readouterr().err


def test_the_default_model_and_its_assembly_come_from_the_package(monkeypatch, tmp_path):
    import json

    import ris_lite.pretrained as pretrained
    from ris_lite import RosetteDataset, load_pretrained

    name = json.loads(pretrained.DEFAULT_FILE.read_text())["name"]
    assert pretrained.default_name() == name == pretrained.DEFAULT_MODEL["name"]
    default, named = load_pretrained(), load_pretrained(name)
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), named.state_dict().values()))
    # a stored rule becomes predict's default; an explicit argument still wins
    rule = tmp_path / "rosettes_assembly.json"
    rule.write_text(json.dumps({"assembly": "argmax", "min_size": 120}))
    monkeypatch.setattr(pretrained, "assembly_path", lambda n: rule if n == "rosettes" else tmp_path / "none.json")
    model = load_pretrained("rosettes")
    assert model.assembly_rule == {"assembly": "argmax", "min_size": 120}
    image = RosetteDataset("test")[0][0]
    stored = model.predict(image)[0]
    assert torch.equal(stored, model.predict(image, assembly="argmax", min_size=120)[0])
    paper = model.predict(image, assembly="first", min_size=0)[0]
    assert int(stored.max()) < int(paper.max())  # the size filter dropped segments
    assert model.predict(image, crf=False, assembly="first", min_size=0)[0].equal(paper)


def test_rosettes_is_still_the_papers_model():
    from ris_lite import load_pretrained

    model = load_pretrained("rosettes")
    assert model.assembly_rule is None  # the paper's first claim, no size filter
    c = model.config
    assert not (c.union_input or c.score_sees_union or c.canvas or c.feedback) and c.skip == "none"


def test_the_cli_names_the_model_it_used(capsys):
    import json

    from ris_lite.cli import main
    from ris_lite.pretrained import default_name

    assert main(["evaluate", "--data", "synthetic", "--split", "test", "--limit", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == default_name()
    assert main(["evaluate", "--data", "synthetic", "--split", "test", "--limit", "2", "--json",
                 "--model", "rosettes_styles"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "rosettes_styles"
