"""Real data end to end (ris_lite.data.folder, the real-data Trainer, the CLI on real folders)."""

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ris_lite import CVPPP
from ris_lite.cli import main
from ris_lite.data.cvppp import write_label_png
from ris_lite.data.folder import (
    LabelledFolder,
    read_image,
    read_label_image,
    split_ids,
    upsample_labels,
)
from ris_lite.data.real import open_folder
from ris_lite.evaluation.evaluate import score_predictions, scoring_pair
from ris_lite.evaluation.metrics import consecutive_labels, evaluate_labels
from ris_lite.training.config import TrainConfig
from ris_lite.training.curriculum import real_curriculum
from ris_lite.training.trainer import Trainer

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"
FOLDER16 = FIXTURES / "folder16"
A1 = FIXTURES / "cvppp_a1"
A1_EDGE = FIXTURES / "cvppp_a1_edge"


@pytest.fixture
def folder(tmp_path):
    """A writable copy of the 16-bit fixture folder."""
    return Path(shutil.copytree(FOLDER16, tmp_path / "data"))


# ----- reading --------------------------------------------------------------------------------
def test_reads_16bit_png_and_tiff_labels_and_a_16bit_grey_image():
    ds = LabelledFolder(FOLDER16)
    assert ds.names == ["a", "b", "c"]
    assert [p.suffix for p in map(ds.label_path, range(3))] == [".png", ".tif", ".tif"]
    for i in range(3):
        image, masks = ds[i]
        assert image.shape == (3, 212, 200) and image.dtype == torch.float32
        assert 0 <= float(image.min()) and float(image.max()) <= 1
        assert masks.dtype == torch.bool and masks.shape[1:] == (212, 200)
        assert int(ds.original_labels(i).max()) > 255  # 16-bit ids survive
    grey = ds.image(2)
    assert float(grey.max()) == 1.0 and torch.equal(grey[0], grey[1])  # 12-bit data stretched, grey repeated


def test_the_cvppp_fixture_is_stored_as_a1_stores_it():
    ds = CVPPP(A1)
    assert len(ds) == 6 and ds.original_size(0) == (530, 500)
    assert Image.open(ds.image_path(0)).mode == "RGBA" and Image.open(ds.label_path(0)).mode == "P"
    ids = set(np.unique(ds.original_labels(0).numpy()))
    assert 3 not in ids and 4 in ids  # the gap real annotation files have
    assert (A1 / f"{ds.names[0]}_fg.png").is_file()


def _round_trip(ds, i):
    """Item i's working-size labels brought back to the file's size, and the file's labels."""
    return ds.to_original(ds.labels(i), i), ds.original_labels(i)


def test_the_whole_frame_is_read_at_the_models_scale():
    ds = CVPPP(A1, size=(106, 100), zoom=1.8)
    image, masks = ds[0]
    # the shipped model saw 1/1.8 of A1's frame in 106 x 100: the whole 530 x 500 frame at that scale
    assert image.shape == (3, 191, 180) and masks.shape[1:] == (191, 180) and ds.working_size(0) == (191, 180)
    assert ds.frame_box(0) == (0, 0, 530, 500)
    assert ds.scale(0) == pytest.approx((1.8 * 106 / 530, 1.8 * 100 / 500))
    for i in range(len(ds)):
        back, gt = _round_trip(ds, i)
        assert back.shape == (530, 500)
        assert evaluate_labels([consecutive_labels(back)], [consecutive_labels(gt)])["sbd"] > 0.9
        assert set(back.unique().tolist()) == set(gt.unique().tolist())  # every leaf survives the round trip


def test_no_leaf_is_lost_when_the_plant_reaches_the_frames_edge():
    truth = json.loads((A1_EDGE / "truth.json").read_text())["plant099"]
    assert truth["touches"] == {"top": True, "right": True} and truth["outside_central_crop"] > 0.3
    for frame in ("whole", "plant"):
        ds = CVPPP(A1_EDGE, size=(106, 100), zoom=1.8, frame=frame)
        back, gt = _round_trip(ds, 0)
        assert int((gt.unique() > 0).sum()) == truth["leaves"] == int((ds.labels(0).unique() > 0).sum())
        kept = float(((back > 0) & (gt > 0)).sum() / (gt > 0).sum())
        assert kept > 0.97, (frame, kept)  # the old central crop kept 1 - truth["outside_central_crop"]
        for leaf in gt.unique()[1:]:  # each leaf comes back as itself, edge leaves included
            a, b = back == leaf, gt == leaf
            assert 2 * float((a & b).sum()) / float(a.sum() + b.sum()) > 0.8, (frame, int(leaf))


def test_the_plant_frame_is_a_padded_box_that_holds_the_whole_plant():
    for root in (A1, A1_EDGE):
        ds = CVPPP(root, size=(106, 100), zoom=1.8, frame="plant")
        for i in range(len(ds)):
            top, left, h, w = ds.frame_box(i)
            fg = ds.original_labels(i) > 0
            inside = torch.zeros_like(fg)
            inside[top:top + h, left:left + w] = True
            assert not (fg & ~inside).any()  # no plant pixel outside the box
            sy, sx = ds.scale(i)
            assert ds.working_size(i) == (round(h * sy), round(w * sx)) == tuple(ds.image(i).shape[1:])
            back, gt = _round_trip(ds, i)
            assert evaluate_labels([consecutive_labels(back)], [consecutive_labels(gt)])["sbd"] > 0.9
    centred = CVPPP(A1, size=(106, 100), zoom=1.8, frame="plant")
    assert all(centred.frame_box(i)[2] * centred.frame_box(i)[3] < 530 * 500 for i in range(len(centred)))


def test_frame_options_are_checked():
    with pytest.raises(ValueError, match="frame must be one of whole, plant"):
        CVPPP(A1, size=(106, 100), zoom=1.8, frame="centre")
    with pytest.raises(ValueError, match="needs the model's input size"):
        CVPPP(A1, zoom=1.8)
    ds = CVPPP(A1, size=(106, 100), zoom=1.8)
    with pytest.raises(ValueError, match=r"must be \(191, 180\)"):
        ds.to_original(torch.zeros(106, 100, dtype=torch.int64), 0)


def test_upsample_labels_keeps_ids_and_is_smooth():
    lab = torch.zeros(10, 10, dtype=torch.int64)
    lab[2:6, 2:6] = 7
    lab[6:9, 5:9] = 1002
    up = upsample_labels(lab, (50, 50))
    assert up.shape == (50, 50) and set(up.unique().tolist()) == {0, 7, 1002}
    assert abs(int((up == 7).sum()) - 16 * 25) < 40


def test_consecutive_labels_renumbers_without_changing_instances():
    lab = torch.tensor([[0, 1000, 1000], [0, 7, 3]])
    out = consecutive_labels(lab)
    assert out.tolist() == [[0, 3, 3], [0, 2, 1]]
    assert consecutive_labels(torch.tensor([[5, 9]])).tolist() == [[1, 2]]  # no background pixel


# ----- the split ------------------------------------------------------------------------------
def test_split_is_deterministic_disjoint_and_complete():
    ids = [f"plant{i:03d}" for i in range(0, 300, 3)]
    s = split_ids(ids, 0.2)
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    assert split_ids(shuffled, 0.2) == s
    assert not set(s["train"]) & set(s["val"]) and sorted(s["train"] + s["val"]) == sorted(ids)
    assert len(s["val"]) == 20
    assert split_ids(["a", "b"], 0.2) == split_ids(["b", "a"], 0.2) and len(split_ids(["a", "b"], 0.2)["val"]) == 1
    with pytest.raises(ValueError, match="val_fraction"):
        split_ids(ids, 1.0)


# ----- scoring --------------------------------------------------------------------------------
def test_folder_round_trip_scores_one_against_itself(tmp_path):
    ds = LabelledFolder(FOLDER16)
    for i, name in enumerate(ds.names):
        write_label_png(ds.original_labels(i), tmp_path / f"{name}_label.png")
    r = score_predictions(tmp_path, ds)
    assert r["sbd"] == 1.0 and r["dic"] == 0.0 and r["fgbg_dice"] == 1.0 and r["n_images"] == 3


def test_official_resolution_scoring_differs_from_low_resolution_where_it_must():
    """Fixture ``b`` holds a one-pixel instance that the resize to 106 x 100 never samples."""
    ds = LabelledFolder(FOLDER16, size=(106, 100))
    b = ds.names.index("b")
    assert 999 in ds.original_labels(b).unique() and 999 not in ds.labels(b).unique()
    perfect_at_input = ds.labels(b)
    low = evaluate_labels(*map(lambda x: [x], scoring_pair(ds, b, perfect_at_input, "input")))
    official = evaluate_labels(*map(lambda x: [x], scoring_pair(ds, b, perfect_at_input, "original")))
    assert low["sbd"] == 1.0 and low["dic"] == 0
    assert official["dic"] == -1 and official["sbd"] < 1.0


def test_scoring_errors_name_the_file(tmp_path):
    ds = LabelledFolder(FOLDER16)
    with pytest.raises(FileNotFoundError, match="a_label.png"):
        score_predictions(tmp_path, ds)
    for i, name in enumerate(ds.names):
        write_label_png(ds.original_labels(i)[:100], tmp_path / f"{name}_label.png")
    with pytest.raises(ValueError, match="a_label.png.*must be at the label file's resolution"):
        score_predictions(tmp_path, ds)


# ----- bad input ------------------------------------------------------------------------------
def test_missing_label_names_the_file(folder):
    (folder / "labels" / "b.tif").unlink()
    with pytest.raises(FileNotFoundError, match=r"labels/b\.\*.*images/b.png"):
        LabelledFolder(folder)
    assert len(LabelledFolder(folder, require_labels=False)) == 3


def test_size_mismatch_names_both_files(folder):
    Image.fromarray(np.zeros((50, 50), np.uint16)).save(folder / "labels" / "a.png")
    with pytest.raises(ValueError, match=r"images/a.png is \(212, 200\) but .*labels/a.png is \(50, 50\)"):
        LabelledFolder(folder)[0]


def test_corrupt_png_names_the_file(folder):
    (folder / "images" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match=r"cannot read image file .*images/a.png"):
        LabelledFolder(folder)[0]


def test_empty_folder_and_bad_patterns(tmp_path):
    with pytest.raises(FileNotFoundError, match="no images matching 'images/{id}.\\*'"):
        LabelledFolder(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        LabelledFolder(tmp_path / "nope")
    with pytest.raises(ValueError, match="exactly one"):
        LabelledFolder(FOLDER16, image_pattern="images/a.png")
    with pytest.raises(ValueError, match="zoom"):
        LabelledFolder(FOLDER16, zoom=0.5)
    with pytest.raises(ValueError, match="real data spec"):
        open_folder("nuclei:/x")


def test_colour_and_one_bit_label_files_are_refused(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="rgb.png has mode RGB"):
        read_label_image(tmp_path / "rgb.png")
    Image.fromarray(np.zeros((4, 4), bool)).save(tmp_path / "fg.png")
    with pytest.raises(ValueError, match="1-bit foreground mask"):
        read_label_image(tmp_path / "fg.png")
    assert read_image(tmp_path / "rgb.png").shape == (3, 4, 4)


# ----- training on real data ------------------------------------------------------------------
def test_real_curriculum_ends_at_max_count_plus_two():
    assert real_curriculum([5, 9, 7]) == [[2, 5, 9], [4, 5, 9], [6, 5, 9], [8, 5, 9], [10, 5, 9], [11, 5, 9]]
    assert real_curriculum([5, 9, 7], fine_tune=True) == [[11, 5, 9]]


def _cfg(source, **kw):
    model = {**TrainConfig().model, "input_size": [40, 38]}
    return TrainConfig(source=source, model=model, data={"zoom": 1.0}, batch_size=2, eval_every=2,
                       curriculum=[[4, 0, 10], [9, 0, 10]], **kw)


def test_trainer_reads_real_batches_and_records_the_split(tmp_path):
    t = Trainer(_cfg(f"folder:{FOLDER16}"), tmp_path / "run")
    assert t.split == split_ids(["a", "b", "c"], 0.2)
    images, targets, counts = t._batch()
    assert images.shape == (2, 3, 40, 38) and targets.shape[-2:] == (40, 38) and (counts > 0).all()
    t.run(max_steps=2, progress=False)
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert sorted(split["train"]) == t.split["train"] and list(split["val"]) == t.split["val"]


def test_too_many_instances_for_the_curriculum_names_the_label_file(tmp_path):
    cfg = _cfg(f"folder:{FOLDER16}")
    cfg.curriculum = [[3, 0, 10]]
    with pytest.raises(ValueError, match=r"labels/.* has \d+ instances but the curriculum unrolls at most 3"):
        Trainer(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_curriculum_stage_without_training_images_is_refused(tmp_path):
    cfg = _cfg(f"folder:{FOLDER16}")
    cfg.curriculum = [[4, 30, 40], [9, 0, 10]]
    with pytest.raises(ValueError, match=r"stage \(4, 30, 40\) has no training image with 30..40 instances"):
        Trainer(cfg, tmp_path / "run")


def test_init_loads_the_weights_and_refuses_another_architecture(tmp_path):
    from ris_lite import load_pretrained

    shipped = load_pretrained("rosettes")
    t = Trainer(TrainConfig(model=shipped.config.to_dict()), tmp_path / "run")
    t.load_weights("rosettes")
    ref = shipped.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in t.model.state_dict().items()) and t.config.init == "rosettes"
    other = Trainer(TrainConfig(model={**TrainConfig().model, "channels": 8}), tmp_path / "run2")
    with pytest.raises(ValueError, match="model config differs"):
        other.load_weights("rosettes")
    with pytest.raises(FileNotFoundError, match="no such checkpoint file, nor a shipped model name"):
        other.load_weights("nope")


# ----- the CLI end to end ---------------------------------------------------------------------
SMALL = ["--input-size", "40,38", "--quiet", "--eval-every", "2"]


def test_cli_train_resume_evaluate_predict_score_on_a_folder(folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", f"folder:{folder}", "--out", str(out), "--max-steps", "2", *SMALL]) == 0
    assert {"last.pt", "log.csv", "split.json"} <= {p.name for p in out.iterdir()}
    assert main(["train", "--out", str(out), "--resume", "auto", "--max-steps", "3", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 3
    ckpt = ["--checkpoint", str(out / "last.pt"), "--max-steps", "3"]
    assert main(["evaluate", "--data", f"folder:{folder}", "--json", *ckpt]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n_images"] == 3 and r["resolution"] == "original"
    assert main(["evaluate", "--data", f"folder:{folder}", "--split", "val", "--json", "--baseline", *ckpt]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["ris"]["n_images"] == 1 and "params" in r["watershed"] and "not a fair test" in r["watershed"]["tuned_on"]
    preds = tmp_path / "preds"
    assert main(["predict", "--data", f"folder:{folder}", "--out", str(preds), *ckpt]) == 0
    assert Image.open(preds / "a_label.png").size == (200, 212)  # the file's own size
    capsys.readouterr()
    assert main(["score", "--data", f"folder:{folder}", "--predictions", str(preds)]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "--data", f"folder:{folder}", "--json", *ckpt]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert scored["sbd"] == pytest.approx(evaluated["sbd"]) and scored["dic"] == evaluated["dic"]


def test_cli_resume_refuses_a_folder_that_changed(folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", f"folder:{folder}", "--out", str(out), "--max-steps", "1", *SMALL]) == 0
    for sub, name in (("images", "d.png"), ("labels", "d.png")):
        shutil.copy(folder / sub / "a.png", folder / sub / name)
    assert main(["train", "--out", str(out), "--resume", "auto", "--max-steps", "2", "--quiet"]) == 2
    assert "no longer splits" in capsys.readouterr().err


@pytest.mark.parametrize("damage,message", [
    (lambda f: (f / "labels" / "c.tif").unlink(), "labels/c.* is missing"),
    (lambda f: (f / "images" / "b.png").write_bytes(b"not a png"), "cannot read image file"),
    (lambda f: Image.fromarray(np.zeros((9, 9), np.uint16)).save(f / "labels" / "a.png"), "but"),
    (lambda f: [p.unlink() for p in (f / "images").iterdir()], "no images matching"),
])
def test_cli_bad_folders_fail_in_one_line_before_writing(folder, tmp_path, capsys, damage, message):
    damage(folder)
    out = tmp_path / "run"
    assert main(["train", "--data", f"folder:{folder}", "--out", str(out), "--max-steps", "1", *SMALL]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()  # nothing half-written


def test_cli_curriculum_too_short_names_the_file(tmp_path, capsys):
    argv = ["train", "--data", f"folder:{FOLDER16}", "--out", str(tmp_path / "r"), "--curriculum", "3,0,9", *SMALL]
    assert main(argv) == 2
    assert "instances but the curriculum unrolls at most 3" in capsys.readouterr().err


def test_cli_fine_tunes_from_the_shipped_model_at_its_scale(tmp_path, capsys):
    out = tmp_path / "ft"
    assert main(["train", "--data", f"cvppp:{A1}", "--init", "rosettes", "--out", str(out), "--max-steps", "1",
                 "--quiet", "--eval-every", "100"]) == 0
    cfg = json.loads((out / "last.json").read_text())["config"]
    assert cfg["init"] == "rosettes" and cfg["data"]["zoom"] == 1.8 and len(cfg["curriculum"]) == 1
    assert cfg["lr"] == 5e-4  # the fine-tuning default
    split = json.loads((out / "split.json").read_text())
    counts = [*split["train"].values(), *split["val"].values()]
    assert cfg["curriculum"] == [[max(counts) + 2, min(counts), max(counts)]]
    assert main(["train", "--data", f"cvppp:{A1}", "--init", "rosettes", "--feedback", "--out",
                 str(tmp_path / "x")]) == 2
    assert "--feedback does not combine with --init" in capsys.readouterr().err


def test_real_folder_has_no_test_split(capsys):
    assert main(["evaluate", "--data", f"folder:{FOLDER16}", "--split", "test"]) == 2
    assert "no test split" in capsys.readouterr().err


# ----- whole frames and plant boxes through the CLI --------------------------------------------
def test_cli_predicts_and_scores_the_edge_plant_whole_or_boxed(tmp_path, capsys):
    scored = {}
    for frame in ("whole", "plant"):
        preds = tmp_path / frame
        assert main(["predict", "--data", f"cvppp:{A1_EDGE}", "--frame", frame, "--out", str(preds)]) == 0
        label = read_label_image(preds / "plant099_label.png")
        assert label.shape == (530, 500) and label.max() > 0
        capsys.readouterr()
        assert main(["evaluate", "--data", f"cvppp:{A1_EDGE}", "--frame", frame, "--json"]) == 0
        scored[frame] = json.loads(capsys.readouterr().out)
        assert main(["score", "--data", f"cvppp:{A1_EDGE}", "--predictions", str(preds)]) == 0
        from_files = json.loads(capsys.readouterr().out)
        assert abs(from_files["sbd"] - scored[frame]["sbd"]) < 1e-9  # the written files score as evaluate did
    # the shipped model finds the edge plant's leaves whole-frame or boxed (the old central crop kept 29 %)
    assert min(r["fgbg_dice"] for r in scored.values()) > 0.8


def test_cli_refuses_a_plant_box_for_training_and_styles_for_real_data(tmp_path, capsys):
    assert main(["train", "--data", f"cvppp:{A1}", "--frame", "plant", "--init", "rosettes",
                 "--out", str(tmp_path / "a")]) == 2
    assert "--frame plant is for predict" in capsys.readouterr().err
    assert main(["train", "--data", f"cvppp:{A1}", "--style", "random", "--out", str(tmp_path / "b")]) == 2
    assert "--style draws the synthetic plants' look" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert main(["evaluate", "--data", f"cvppp:{A1}", "--style", "heldout"]) == 2
    assert "it needs --data synthetic" in capsys.readouterr().err


def test_cli_evaluates_a_held_out_style(capsys):
    looks = {}
    for style in ("a1", "heldout"):
        assert main(["evaluate", "--data", "synthetic", "--split", "test", "--limit", "2", "--style", style,
                     "--json"]) == 0
        looks[style] = json.loads(capsys.readouterr().out)
    assert looks["a1"]["n_images"] == looks["heldout"]["n_images"] == 2
    assert looks["a1"]["sbd"] != looks["heldout"]["sbd"]  # the same plants, another look
