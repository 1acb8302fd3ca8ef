import json

import pytest
import torch

from ris_lite import TrainConfig, Trainer
from ris_lite.model.checkpoint import export, load_checkpoint, model_from_checkpoint
from ris_lite.training.hooks import Snapshots
from ris_lite.training.trainer import clip_gradients


def tiny_config(**kw):
    base = dict(model=dict(channels=4, input_size=[32, 30], fcn_stride=2, instance_fraction=0.05,
                           in_channels=3, fcn_variant="downsample", lstm_layers=2, lstm_kernel=3,
                           gate_bias=[0.0, 1.0, 0.0, 0.0], bias_init=None, confidence="maxpool",
                           upsample=True, extra={}),
                data=dict(size=[32, 30]), curriculum=[[2, 1, 3], [4, 2, 4]], batch_size=2,
                train_images=8, val_images=2, eval_every=2, stage_max_steps=100, lr=1e-3)
    base.update(kw)
    return TrainConfig(**base)


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    straight = Trainer(tiny_config(), tmp_path / "a")
    losses_a = [straight.train_step()["loss"] for _ in range(6)]

    first = Trainer(tiny_config(), tmp_path / "b")
    losses_b = [first.train_step()["loss"] for _ in range(3)]
    path = first.save()
    torch.manual_seed(1234)  # disturb the global RNG: the checkpoint must restore it
    resumed = Trainer.resume(path)
    losses_b += [resumed.train_step()["loss"] for _ in range(3)]
    assert losses_a == pytest.approx(losses_b, abs=1e-6)
    assert resumed.step == 6


def test_run_writes_log_and_checkpoint_and_resumes(tmp_path):
    Trainer(tiny_config(), tmp_path).run(max_steps=4, progress=False)
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,images,stage,length,loss,iou") and len(rows) >= 3
    assert json.loads((tmp_path / "last.json").read_text())["step"] == 4
    t2 = Trainer.resume(tmp_path / "last.pt").run(max_steps=6, progress=False)
    assert t2.step == 6 and len((tmp_path / "log.csv").read_text().splitlines()) > len(rows)


def test_clipping_covers_every_parameter():
    model = Trainer(tiny_config(), "/nonexistent").model
    for p in model.parameters():
        p.grad = torch.full_like(p, 100.0)
    clip_gradients(model, 5.0)
    fcn = list(model.fcn.parameters())
    assert fcn and all(torch.all(p.grad == 5.0) for p in fcn)  # the CNN too (the authors' code missed it)
    assert all(torch.all(p.grad == 5.0) for p in model.parameters())


def test_train_step_clips(tmp_path, monkeypatch):
    seen = []
    import ris_lite.training.trainer as tr
    monkeypatch.setattr(tr, "clip_gradients", lambda m, c: seen.append(c))
    Trainer(tiny_config(clip=3.0), tmp_path).train_step()
    assert seen == [3.0]


def test_curriculum_advances_by_its_rule(tmp_path):
    t = Trainer(tiny_config(patience=2, min_delta=0.01), tmp_path)
    assert t.after_validation(1.0) is None          # first value: an improvement
    assert t.after_validation(0.5) is None          # improves by > 1 %
    assert t.after_validation(0.499) is None        # < 1 %: one bad evaluation
    event = t.after_validation(0.6)                 # second bad one -> converged
    assert event.startswith("advance to stage 1") and t.stage == 1 and t.stage_step == 0
    assert t.after_validation(0.4) is None
    t.after_validation(0.4)
    lr_event = t.after_validation(0.4)              # converged at the last stage -> lr x 0.1
    assert lr_event.startswith("lr ->") and t.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert [e["event"][:3] for e in t.events] == ["adv", "lr "]


def test_stage_max_steps_forces_advance(tmp_path):
    t = Trainer(tiny_config(stage_max_steps=2), tmp_path)
    t.stage_step = 2
    assert t.after_validation(1.0).startswith("advance")
    t.stage_step = 5                                # last stage: the cap does not cut the lr
    assert t.after_validation(0.9) is None and t.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_sequence_length_is_min_of_stage_and_n_plus_2(tmp_path):
    t = Trainer(tiny_config(), tmp_path)
    t.stage = 1  # L = 4
    assert t.lengths(torch.tensor([0, 1, 2, 5])).tolist() == [2, 3, 4, 4]


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    t = Trainer(tiny_config(), tmp_path)
    t.train_step()
    path = t.save()
    before = load_checkpoint(path)["trainer"]["step"]
    t.train_step()

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        t.save()
    monkeypatch.undo()
    assert load_checkpoint(path)["trainer"]["step"] == before


def test_different_config_is_a_clear_error(tmp_path):
    t = Trainer(tiny_config(), tmp_path)
    path = t.save()
    with pytest.raises(ValueError, match="different config.*lr"):
        Trainer.resume(path, config=tiny_config(lr=0.5))


def test_foreign_and_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a ris_lite checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_export_makes_a_loadable_slim_model(tmp_path):
    t = Trainer(tiny_config(), tmp_path)
    slim = export(t.save(), tmp_path / "slim.pt")
    model = model_from_checkpoint(slim)
    assert not model.training and model.data_options == {"size": [32, 30]}
    assert "optimizer" not in load_checkpoint(slim)


def test_no_lr_event_once_at_min_lr(tmp_path):
    t = Trainer(tiny_config(curriculum=[[2, 1, 3]], patience=1, lr=1e-3, min_lr=1e-4), tmp_path)
    t.after_validation(1.0)
    assert t.after_validation(1.0).startswith("lr ->")   # 1e-3 -> 1e-4
    t.after_validation(1.0)
    assert t.after_validation(1.0) is None                # already at min_lr: nothing happens
    assert len(t.events) == 1
    assert json.loads((t.save().with_suffix(".json")).read_text())["best_val"] is None


def test_snapshots_follow_the_training_clock(tmp_path):
    t = Trainer(tiny_config(), tmp_path)
    snapshots = Snapshots(t, 5)
    assert snapshots.next_due() == 300
    t.elapsed = 610.0  # 10 min 10 s of training: the 10-minute snapshot is due (5 was missed)
    path = snapshots.save()
    assert path == tmp_path / "snapshots" / "min_0010.00.pt" and snapshots.next_due() == 900
    stored = load_checkpoint(path)
    assert stored["trainer"]["elapsed"] == 610.0 and "optimizer" not in stored
    assert not model_from_checkpoint(path).training
    assert Trainer.resume(t.save()).snapshots_kept == 2  # a resumed run does not repeat snapshots


def test_run_keeps_snapshots(tmp_path, monkeypatch):
    import itertools

    import ris_lite.training.trainer as train_module

    clock = itertools.count(0.0, 0.5)  # every reading of the clock advances half a second
    monkeypatch.setattr(train_module.time, "time", lambda: next(clock))
    t = Trainer(tiny_config(), tmp_path).run(max_steps=3, progress=False, snapshot_minutes=0.01)
    kept = sorted(p.name for p in (tmp_path / "snapshots").glob("min_*.pt"))
    # each step takes over 0.6 s here, so each crosses a due time; missed multiples are skipped
    assert len(kept) == 3 and kept[-1] == f"min_{t.snapshots_kept * 0.01:07.2f}.pt"
    with pytest.raises(ValueError, match="snapshot_minutes"):
        Trainer(tiny_config(), tmp_path / "x").run(max_steps=1, progress=False, snapshot_minutes=0)
