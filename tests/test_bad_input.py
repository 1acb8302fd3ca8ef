"""Issue 42: nothing a user has is lost, and every bad input gets one clear line. One test (or
case) per row of the issue's table, each failing on the code before the change (the row
"torch.stack of unequal plant boxes with --frame plant" is tested with the batching)."""

import json
import os
import shutil
import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

import ris_lite
from ris_lite.cli import main
from ris_lite.data.folder import read_label_image
from ris_lite.evaluation.metrics import best_dice, count_labels, symmetric_best_dice
from ris_lite.model.ris import RISConfig
from ris_lite.pretrained import pretrained_path
from ris_lite.training.config import TrainConfig
from ris_lite.training.trainer import Trainer

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"
A1, FOLDER16 = FIXTURES / "cvppp_a1", FIXTURES / "folder16"
TINY_RUN = ["--max-steps", "2", "--quiet", "--train-images", "4", "--curriculum", "2,1,3", "--val-images", "2",
            "--channels", "8"]


def one_line_error(argv, capsys, *words) -> str:
    """Run the CLI; it must exit 2 with one stderr line holding every word."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


def a1_copy(tmp_path, names=("plant003", "plant010")) -> Path:
    """A CVPPP folder of a few of the A1 fixture's plants, to damage at will."""
    root = tmp_path / "a1"
    root.mkdir()
    for name in names:
        for part in ("rgb", "label", "fg"):
            shutil.copy(A1 / f"{name}_{part}.png", root / f"{name}_{part}.png")
    return root


def log_steps(run: Path):
    with open(run / "log.csv") as f:
        return [int(line.split(",")[0]) for line in f.read().splitlines()[1:]]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A two-step training run (a copy of it for a test that changes it: ``shutil.copytree``)."""
    out = tmp_path_factory.mktemp("bad_input") / "run"
    assert main(["train", "--out", str(out), *TINY_RUN]) == 0
    return out


@pytest.fixture
def run_copy(run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()  # reaped: no process has this id now
    return p.pid


# ----- DATA LOSS ----------------------------------------------------------------------------
def test_predict_never_writes_into_the_data_folder(tmp_path, capsys):
    root = a1_copy(tmp_path)
    before = {p.name: p.read_bytes() for p in root.iterdir()}
    one_line_error(["predict", "--data", f"cvppp:{root}", "--out", str(root), "--max-steps", "1", "--quiet"],
                   capsys, "--out", "overwrite")
    assert {p.name: p.read_bytes() for p in root.iterdir()} == before


def test_predict_never_writes_into_a_folders_label_directory(tmp_path, capsys):
    root = tmp_path / "f16"
    shutil.copytree(FOLDER16, root)
    one_line_error(["predict", "--data", f"folder:{root}", "--out", str(root / "labels"), "--max-steps", "1"],
                   capsys, "--out")
    assert sorted(p.name for p in (root / "labels").iterdir()) == ["a.png", "b.tif", "c.tif"]


def test_score_refuses_the_data_root_as_predictions(capsys):
    one_line_error(["score", "--data", f"cvppp:{A1}", "--predictions", str(A1)], capsys, "--predictions",
                   "against themselves")


def test_a_run_folder_has_one_writer(run_copy, capsys):
    from ris_lite.training.run_lock import RunLock

    with RunLock(run_copy):  # a live run holds it (issue 49: the lock says which, so it is this process)
        before = {p.name: p.read_bytes() for p in run_copy.iterdir()}
        one_line_error(["train", "--out", str(run_copy), "--resume", "auto", "--max-steps", "3", "--quiet"],
                       capsys, "in use by another training run", str(os.getpid()))
        assert {p.name: p.read_bytes() for p in run_copy.iterdir()} == before


def test_two_locks_on_one_folder(tmp_path):
    from ris_lite.training.run_lock import RunFolderBusy, RunLock  # new with the issue

    with RunLock(tmp_path / "run") as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()  # issue 49: and who it is
        with pytest.raises(RunFolderBusy, match="in use"):
            RunLock(tmp_path / "run").acquire()
    assert not (tmp_path / "run").exists()  # released, and the folder it made (left empty) removed


def test_a_stale_lock_is_taken_over_with_a_note(run_copy, capsys):
    (run_copy / "train.lock").write_text(f"{dead_pid()}\n")  # a killed run's
    # --batch-size repeats the stored value: no difference, so allowed with --resume
    assert main(["train", "--out", str(run_copy), "--resume", "auto", "--max-steps", "3", "--batch-size", "1",
                 "--quiet"]) == 0
    assert "took over the stale lock" in capsys.readouterr().err
    assert not (run_copy / "train.lock").exists()
    assert torch.load(run_copy / "last.pt", weights_only=True)["trainer"]["step"] == 3


# ----- CRASH ----------------------------------------------------------------------------------
def test_predict_reads_no_label_file(tmp_path, capsys):
    root = a1_copy(tmp_path)
    (root / "plant003_label.png").write_bytes(b"not a png")
    from PIL import Image

    Image.open(A1 / "plant010_label.png").resize((100, 90)).save(root / "plant010_label.png")  # wrong size
    assert main(["predict", "--data", f"cvppp:{root}", "--out", str(tmp_path / "out"), "--max-steps", "1",
                 "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == 2
    assert Image.open(tmp_path / "out" / "plant003_label.png").size == (500, 530)


def test_huge_ids_cost_no_memory_beyond_the_map():
    gt = np.zeros((40, 40), np.int64)
    gt[:20, :20], gt[20:, 20:] = 40_000, 10**12  # two leaves, ids far apart
    pred = np.zeros_like(gt)
    pred[:20, :20], pred[20:, 20:30] = 65_535, 3  # the first leaf, and half of the second
    tracemalloc.start()
    sbd = symmetric_best_dice(pred, gt)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # hand-computed: Dice 1 and 2*200/(200+400) = 2/3 (``test_metrics.test_hand_computed_best_dice``)
    assert sbd == pytest.approx((1 + 2 / 3) / 2)
    assert peak < 100 * gt.nbytes  # not (40_000 x 10**12) counters: a few copies of the map


# ----- SILENT WRONG ---------------------------------------------------------------------------
@pytest.mark.parametrize("path", [FOLDER16 / "labels" / "a.png", FOLDER16 / "labels" / "c.tif",
                                  A1 / "plant003_label.png"], ids=lambda p: p.name)
def test_a_raw_label_file_against_itself_is_perfect(path):
    labels = read_label_image(path)
    ids = np.unique(labels)
    assert ids[-1] - ids[0] > len(ids) - 1  # the file has gaps in its ids (the case of the issue)
    assert symmetric_best_dice(labels, labels) == 1.0
    assert count_labels(labels) == len(ids) - 1
    # the official semantics, asked for: every skipped id a leaf of Dice 0
    assert best_dice(labels, labels, keep_gaps=True) == pytest.approx((len(ids) - 1) / (ids[-1] - ids[0]))


def test_negative_ids_are_an_error():
    labels = np.zeros((4, 4), np.int64)
    labels[0, 0] = -1
    with pytest.raises(ValueError, match="negative ids"):
        symmetric_best_dice(labels, np.abs(labels))


def test_resume_refuses_flags_it_would_ignore(run_copy, capsys):
    err = one_line_error(["train", "--out", str(run_copy), "--resume", "auto", "--batch-size", "8", "--lr", "5",
                          "--data", f"cvppp:{A1}", "--channels", "8", "--quiet"], capsys)
    for difference in ("--batch-size 8 (the run's: 1)", "--lr 5.0 (the run's: 0.002)", "(the run's: synthetic)"):
        assert difference in err
    assert "--channels" not in err  # the stored value, repeated


@pytest.fixture(scope="module")
def rosettes():
    return ris_lite.load_pretrained("rosettes")


@pytest.fixture(scope="module")
def plant():
    image, _ = ris_lite.make_rosette(ris_lite.SPLITS["test"][0])
    return image


def test_uint8_images_are_read_as_0_to_255(rosettes, plant):
    u8 = (plant * 255).round().to(torch.uint8)
    as_float = rosettes.predict(u8.float() / 255, max_steps=20)[0]
    assert as_float.max() > 5
    assert torch.equal(rosettes.predict(u8, max_steps=20)[0], as_float)
    with pytest.raises(ValueError, match="only 0 and 1"):
        rosettes.predict(u8.long(), max_steps=2)  # 0..255 in int64: no scale to guess
    assert rosettes.predict((plant > 0.5).long(), max_steps=2)[0].shape == plant.shape[1:]  # 0/1 is fine


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_images_are_an_error(rosettes, plant, value):
    image = plant.clone()
    image[1, 5, 7] = value
    with pytest.raises(ValueError, match="NaN or infinite"):
        rosettes.predict(image, max_steps=2)
    with pytest.raises(ValueError, match="NaN or infinite"):
        rosettes.kept_masks(image, max_steps=2)


def test_the_people_model_on_plants_needs_a_flag(capsys):
    argv = ["evaluate", "--model", "people", "--data", f"cvppp:{A1}", "--limit", "1", "--max-steps", "1", "--json"]
    one_line_error(argv, capsys, "--allow-other-kind", "people", "plants")
    assert main([*argv, "--allow-other-kind"]) == 0
    assert json.loads(capsys.readouterr().out)["n_images"] == 1


# ----- UNUSABLE FOLDER ------------------------------------------------------------------------
@pytest.mark.parametrize("bad,flag", [
    (["--batch-size", "0"], "--batch-size"), (["--eval-every", "0"], "--eval-every"),
    (["--train-images", "0"], "--train-images"), (["--curriculum", "0,0,0"], "--curriculum"),
    (["--curriculum", "3,9,2"], "--curriculum"),
    # MINOR: accepted before, training nothing or never moving on
    (["--max-steps", "-5"], "--max-steps"), (["--budget-minutes", "-1"], "--budget-minutes"),
    (["--stage-max-steps", "0"], "--stage-max-steps"), (["--patience", "-1"], "--patience"),
])
def test_bad_numbers_are_refused_before_anything_is_written(tmp_path, capsys, bad, flag):
    out = tmp_path / "run"
    one_line_error(["train", "--out", str(out), *TINY_RUN, *bad], capsys, flag)
    assert not out.exists()  # so the corrected command is no "last.pt exists" case


def test_a_run_that_fails_before_its_first_step_leaves_no_checkpoint(tmp_path):
    cfg = TrainConfig(model=RISConfig(channels=4, input_size=(32, 30)).to_dict(), data=dict(size=[32, 30]),
                      curriculum=[[2, 1, 3]], batch_size=1, train_images=2, val_images=2)
    trainer = Trainer(cfg, tmp_path / "run")

    def broken_step():
        raise RuntimeError("out of memory")

    trainer.train_step = broken_step
    with pytest.raises(RuntimeError, match="out of memory"):
        trainer.run(max_steps=3, progress=False)
    assert not (tmp_path / "run" / "last.pt").exists()


# ----- TRACEBACK ------------------------------------------------------------------------------
@pytest.mark.parametrize("command,damage", [("evaluate", "truncated image"), ("predict", "truncated image"),
                                            ("evaluate", "label of the wrong size")])  # predict reads no label
def test_data_errors_are_one_line(tmp_path, capsys, command, damage):
    root = a1_copy(tmp_path)
    if damage == "truncated image":
        data = (root / "plant010_rgb.png").read_bytes()
        (root / "plant010_rgb.png").write_bytes(data[:len(data) // 2])
        word = "truncated"
    else:
        from PIL import Image

        Image.open(A1 / "plant010_label.png").resize((100, 90)).save(root / "plant010_label.png")
        word = "(90, 100)"
    extra = ["--out", str(tmp_path / "out"), "--quiet"] if command == "predict" else ["--json"]
    one_line_error([command, "--data", f"cvppp:{root}", "--max-steps", "1", *extra], capsys, "plant010", word)


@pytest.mark.parametrize("argv,flag", [
    (["evaluate", "--data", f"cvppp:{A1}", "--limit", "0"], "--limit"),
    (["evaluate", "--max-steps", "0"], "--max-steps"),
    (["predict", "--max-steps", "-1"], "--max-steps"),
    (["evaluate", "--data", f"cvppp:{A1}", "--val-fraction", "1.5", "--split", "val"], "--val-fraction"),
    # MINOR: --limit -1 dropped the last image
    (["evaluate", "--data", f"cvppp:{A1}", "--limit", "-1", "--max-steps", "1", "--json"], "--limit"),
])
def test_bad_numbers_of_evaluate_and_predict(argv, flag, capsys):
    one_line_error(argv, capsys, flag)


def test_score_limit_minus_one(tmp_path, capsys):
    for p in A1.glob("*_label.png"):  # the labels as predictions: every file there
        shutil.copy(p, tmp_path / p.name)
    one_line_error(["score", "--data", f"cvppp:{A1}", "--predictions", str(tmp_path), "--limit", "-1"], capsys,
                   "--limit")


def test_predict_needs_a_step(rosettes, plant):
    with pytest.raises(ValueError, match="max_steps must be an integer >= 1"):
        rosettes.predict(plant, max_steps=0)


def test_an_empty_image_is_named(rosettes):
    with pytest.raises(ValueError, match="empty"):
        rosettes.predict(torch.zeros(3, 0, 0))


def test_an_exported_model_cannot_be_resumed(run, tmp_path, capsys):
    assert main(["export", "--run", str(run), "--out", str(tmp_path), "--name", "slim"]) == 0
    capsys.readouterr()
    one_line_error(["train", "--out", str(tmp_path / "again"), "--resume", str(tmp_path / "slim.pt")], capsys,
                   "cannot be resumed", "--init")


def test_a_crafted_checkpoint_is_one_line(tmp_path, capsys):
    state = torch.load(pretrained_path("rosettes"), weights_only=True)
    del state["config"]["model"]["gate_bias"]
    torch.save(state, tmp_path / "crafted.pt")
    one_line_error(["evaluate", "--checkpoint", str(tmp_path / "crafted.pt")], capsys, "crafted.pt", "gate_bias")


# ----- MINOR ----------------------------------------------------------------------------------
def test_resume_drops_log_rows_past_the_checkpoint(run_copy, capsys):
    """A run killed after its last checkpoint had logged steps that the resumed run repeats."""
    row = ",0,0,2,0.5,0.5,,2.000e-03,1.00,0.01\n"  # the columns after the step
    with open(run_copy / "log.csv", "a") as f:  # step 2 is in the checkpoint; 5, 7 and 9 (cut short) are not
        f.write(f"2{row}5{row}7{row}9,9,0")
    assert main(["train", "--out", str(run_copy), "--resume", "auto", "--max-steps", "3", "--quiet"]) == 0
    steps = log_steps(run_copy)
    assert steps[0] == 2 and all(s <= 3 for s in steps) and steps == sorted(steps)


def test_a_file_given_as_data_is_called_a_file(capsys):
    one_line_error(["evaluate", "--data", f"cvppp:{A1 / 'plant003_rgb.png'}"], capsys, "is a file")


def test_a_far_too_large_image_warns(rosettes):
    h, w = rosettes.config.input_size
    with pytest.warns(UserWarning, match="times the model's input"):
        rosettes.predict(torch.rand(3, 3 * h, 3 * w), max_steps=1)
