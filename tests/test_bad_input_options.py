"""Issue 49, part two: every option of ``ris-lite`` checked, each refusal one line naming the flag,
its value and the valid range, before anything is read at a huge size or written. One case per
row of the issue's table, each failing on the code before the change."""

import json
import shutil

import pytest
import torch
from test_bad_input import A1, FOLDER16, TINY_RUN, a1_copy, one_line_error

from ris_lite.cli import main


# ----- CRASH: sizes checked before a resize or an allocation ----------------------------------
@pytest.mark.parametrize("command,zoom", [("evaluate", "inf"), ("evaluate", "nan"), ("predict", "1000"),
                                          ("evaluate", "-inf")])
def test_zoom_is_checked_before_the_resize(tmp_path, capsys, command, zoom):
    extra = ["--out", str(tmp_path / "out"), "--quiet"] if command == "predict" else ["--json"]
    one_line_error([command, "--data", f"cvppp:{A1}", f"--zoom={zoom}", "--limit", "1", "--max-steps", "1", *extra],
                   capsys, "--zoom", zoom)
    assert not (tmp_path / "out").exists()


def test_crf_config_that_is_a_folder(tmp_path, capsys):
    one_line_error(["evaluate", "--crf", "--crf-config", str(tmp_path), "--limit", "1"], capsys, "--crf-config",
                   "folder")


@pytest.mark.parametrize("field,value", [("iterations", 2.5), ("iterations", "3"), ("appearance_xy", "wide"),
                                         ("iterations", True)])
def test_crf_config_fields_are_checked(tmp_path, capsys, field, value):
    path = tmp_path / "crf.json"
    path.write_text(json.dumps({field: value}))
    one_line_error(["evaluate", "--crf", "--crf-config", str(path), "--limit", "1"], capsys, "--crf-config",
                   field)


def test_crf_config_fields_are_checked_in_python():
    from ris_lite.model.crf import CRFConfig

    with pytest.raises(ValueError, match="iterations must be an integer >= 0, got 2.5"):
        CRFConfig(iterations=2.5)
    assert CRFConfig(iterations=3, appearance_xy=8).iterations == 3  # ints where floats go are fine


# ----- UNCLEAR and MINOR: train's options -----------------------------------------------------
@pytest.mark.parametrize("bad,words", [
    (["--channels", "100000"], ["--channels", "100000", "1024"]),
    (["--fcn-width", "nan"], ["--fcn-width", "nan"]),
    (["--fcn-stride", "1000"], ["--fcn-stride", "1000", "106x100"]),
    (["--snapshot-minutes", "nan"], ["--snapshot-minutes", "nan"]),
    (["--val-images", "1000"], ["--val-images", "1000", "64"]),
    (["--score-from-stage", "99"], ["--score-from-stage", "99", "0..1"]),  # TINY_RUN has one stage
    (["--zoom", "nan"], ["--zoom", "nan"]), (["--zoom", "1000"], ["--zoom", "1000", "10"]),
    (["--sampling-start", "nan"], ["--sampling-start", "nan"]),
])
def test_train_options_are_checked_before_anything_is_written(tmp_path, capsys, bad, words):
    out = tmp_path / "run"
    one_line_error(["train", "--out", str(out), *TINY_RUN, *bad], capsys, *words)
    assert not out.exists()


def test_fcn_width_of_the_people_model(tmp_path, capsys):
    out = tmp_path / "run"
    one_line_error(["train", "--data", "people", "--out", str(out), "--fcn-width", "nan", "--max-steps", "1"],
                   capsys, "--fcn-width", "nan", "(0, 1]")
    assert not out.exists()


def test_train_out_inside_the_data_folder(tmp_path, capsys):
    root = a1_copy(tmp_path)
    before = {p.name: p.read_bytes() for p in root.iterdir()}
    one_line_error(["train", "--data", f"cvppp:{root}", "--out", str(root), "--curriculum", "22,0,25",
                    "--max-steps", "1", "--channels", "8", "--quiet"], capsys, "--out", str(root))
    assert {p.name: p.read_bytes() for p in root.iterdir()} == before


def test_init_of_the_other_kind_needs_the_flag(tmp_path, capsys):
    out = tmp_path / "run"
    one_line_error(["train", "--out", str(out), "--init", "people", "--data", "synthetic", "--max-steps", "1",
                    "--quiet"], capsys, "--allow-other-kind", "people")
    assert not out.exists()


def test_init_takes_the_model_kind_from_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--init", "rosettes_embedding", "--max-steps", "1", "--quiet",
                 "--train-images", "2", "--val-images", "2", "--curriculum", "2,1,3"]) == 0
    assert torch.load(out / "last.pt", weights_only=True)["config"]["model_kind"] == "embedding"


# ----- UNCLEAR: evaluate, predict, score ------------------------------------------------------
def test_predict_out_that_is_a_file(tmp_path, capsys):
    out = tmp_path / "a_file"
    out.write_text("mine\n")
    one_line_error(["predict", "--data", f"cvppp:{A1}", "--out", str(out), "--limit", "1", "--max-steps", "1",
                    "--quiet"], capsys, "--out", str(out), "file")
    assert out.read_text() == "mine\n"


def test_score_pattern_needs_an_id(tmp_path, capsys):
    one_line_error(["score", "--data", f"cvppp:{A1}", "--predictions", str(tmp_path), "--pattern", "pred.png"],
                   capsys, "--pattern", "pred.png", "{id}")


def test_score_predictions_that_is_a_file(capsys):
    path = A1 / "plant003_label.png"
    one_line_error(["score", "--data", f"cvppp:{A1}", "--predictions", str(path)], capsys, "--predictions",
                   "is a file")


def test_the_baseline_with_an_empty_validation_split(tmp_path, capsys):
    root = a1_copy(tmp_path, names=("plant003",))  # one image: no validation side
    one_line_error(["evaluate", "--data", f"cvppp:{root}", "--baseline", "--max-steps", "1", "--json"], capsys,
                   "--baseline", "validation", "1 image")


def test_the_baseline_on_all_images_says_it_tuned_on_some_of_them(capsys):
    assert main(["evaluate", "--data", f"cvppp:{A1}", "--baseline", "--split", "all", "--max-steps", "1",
                 "--json"]) == 0
    assert "not a fair test" in json.loads(capsys.readouterr().out)["watershed"]["tuned_on"]


def test_a_jpeg_label_is_named(tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "f16"
    shutil.copytree(FOLDER16, root)
    Image.open(root / "labels" / "a.png").convert("L").save(root / "labels" / "a.jpg")
    (root / "labels" / "a.png").unlink()
    one_line_error(["evaluate", "--data", f"folder:{root}", "--max-steps", "1", "--json"], capsys, "a.jpg",
                   "JPEG")


def test_an_ambiguous_id_lists_both_files(tmp_path, capsys):
    root = tmp_path / "f16"
    shutil.copytree(FOLDER16, root)
    shutil.copy(root / "images" / "a.png", root / "images" / "a.jpg")
    one_line_error(["evaluate", "--data", f"folder:{root}", "--max-steps", "1", "--json"], capsys, "a.png",
                   "a.jpg")


def test_a_voc_split_list_naming_a_missing_file(tmp_path, capsys):
    root = tmp_path / "voc"
    shutil.copytree(A1.parent / "VOCdevkit", root)
    listing = root / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt"
    gone = listing.read_text().split()[0]
    (root / "VOC2012" / "JPEGImages" / f"{gone}.jpg").unlink()
    one_line_error(["evaluate", "--data", f"voc:{root}", "--max-steps", "1", "--json"], capsys, "val.txt", gone,
                   "missing")
