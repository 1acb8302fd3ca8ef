"""Issue 49, part three: what the Python API is given -- images, label maps, options, sizes --
is checked, and a wrong one is an error that says what to do, never a quiet wrong answer. One
case per row of the issue's table, each failing on the code before the change."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from test_bad_input import A1, FOLDER16

import ris_lite
from ris_lite.data.cvppp import write_label_png
from ris_lite.data.folder import LabelledFolder, read_label_image
from ris_lite.evaluation.metrics import failure_kinds, symmetric_best_dice


@pytest.fixture(scope="module")
def models():
    return {name: ris_lite.load_pretrained(name) for name in ("rosettes", "rosettes_set", "rosettes_embedding")}


@pytest.fixture(scope="module")
def plant():
    image, labels = ris_lite.make_rosette(ris_lite.SPLITS["test"][0])
    return image, labels


# ----- SILENT WRONG ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["rosettes", "rosettes_set", "rosettes_embedding"])
@pytest.mark.parametrize("how", ["0..255", "shifted by -1"])
def test_float_images_outside_0_1_are_an_error(models, plant, name, how):
    image = plant[0] * 255 if how == "0..255" else plant[0] - 1
    with pytest.raises(ValueError, match="divide by 255"):
        models[name].predict(image, max_steps=2)


def test_float_images_a_hair_outside_0_1_are_fine(models, plant):
    image = plant[0].clone()
    image[0, 0, 0], image[1, 0, 0] = 1.001, -0.001  # a resize's overshoot
    assert models["rosettes"].predict(image, max_steps=1)[0].shape == image.shape[1:]


def test_an_id_with_two_image_files_is_an_error(tmp_path):
    root = tmp_path / "f16"
    shutil.copytree(FOLDER16, root)
    shutil.copy(root / "images" / "b.png", root / "images" / "b.jpg")
    with pytest.raises(ValueError, match=r"b\.jpg.*b\.png|b\.png.*b\.jpg"):
        LabelledFolder(root)


def test_an_id_with_two_label_files_is_an_error(tmp_path):
    root = tmp_path / "f16"
    shutil.copytree(FOLDER16, root)
    shutil.copy(root / "labels" / "b.tif", root / "labels" / "b.png")
    with pytest.raises(ValueError, match=r"b\.png.*b\.tif"):
        LabelledFolder(root)


def test_failure_kinds_take_background_as_0():
    gt = np.zeros((4, 4), np.int64)
    gt[:2, :2], gt[:2, 2:] = 1, 2  # two leaves on top, background below
    pred = np.ones_like(gt)  # one segment over both leaves, another over the background: no 0 anywhere
    pred[2:] = 2
    assert failure_kinds(pred, gt) == {"joined": [1], "missed": [], "hallucinated": [2]}  # IoU 0.5 each
    full = np.ones_like(gt)  # a truth without background: leaves 1 (left) and 2 (right)
    full[:, 2:] = 2
    guess = np.zeros_like(gt)
    guess[:, :2] = 1  # exactly leaf 1
    assert failure_kinds(guess, full) == {"joined": [], "missed": [2], "hallucinated": []}


@pytest.mark.parametrize("options,words", [
    (dict(crf=True, assembly="bogus"), "assembly"), (dict(crf=True, assembly="argmax"), "assembly"),
    (dict(assembly="bogus"), "assembly"), (dict(crf=True, mask_threshold=0.3), "mask_threshold"),
    (dict(mask_threshold=float("nan")), "mask_threshold"), (dict(mask_threshold=2.0), "mask_threshold"),
    (dict(score_threshold=float("nan")), "score_threshold"), (dict(score_threshold=-1.0), "score_threshold"),
    (dict(min_size=2.5), "min_size"), (dict(min_size=-1), "min_size"),
])
def test_every_option_of_predict_is_checked(models, plant, options, words):
    with pytest.raises(ValueError, match=words):
        models["rosettes"].predict(plant[0], max_steps=2, **options)


@pytest.mark.parametrize("options", [dict(mask_threshold=float("nan")), dict(score_threshold=2.0),
                                     dict(assembly="bogus")])
def test_the_set_model_checks_its_options(models, plant, options):
    with pytest.raises(ValueError, match=next(iter(options))):
        models["rosettes_set"].predict(plant[0], max_steps=2, **options)


@pytest.mark.parametrize("options", [dict(fg_threshold=float("nan")), dict(bandwidth=0.0), dict(min_size=-3)])
def test_the_embedding_model_checks_its_options(models, plant, options):
    with pytest.raises(ValueError, match=next(iter(options))):
        models["rosettes_embedding"].predict(plant[0], max_steps=2, **options)


def test_negative_ids_are_refused_by_every_reader_and_writer(tmp_path):
    root = tmp_path / "f16"
    shutil.copytree(FOLDER16, root)
    labels = np.asarray(Image.open(root / "labels" / "c.tif")).astype(np.int32)
    labels[0, 0] = -1
    (root / "labels" / "c.tif").unlink()
    Image.fromarray(labels).save(root / "labels" / "c.tif")  # 32-bit signed integer TIFF
    assert Image.open(root / "labels" / "c.tif").mode == "I"
    with pytest.raises(ValueError, match="negative"):
        read_label_image(root / "labels" / "c.tif")
    with pytest.raises(ValueError, match="negative"):
        LabelledFolder(root).instance_counts()
    with pytest.raises(ValueError, match="negative"):
        write_label_png(torch.tensor([[0, -1], [2, 3]]), tmp_path / "pred.png")
    assert not (tmp_path / "pred.png").exists()


@pytest.mark.parametrize("size", [(0, 0), (-5, 10), (10, 0)])
def test_sizes_must_be_positive(size):
    with pytest.raises(ValueError, match="size"):
        ris_lite.CVPPP(A1, size=size)


# ----- UNCLEAR: the API -----------------------------------------------------------------------
def test_a_list_of_images_of_unequal_sizes(models, plant):
    image = plant[0]
    with pytest.raises(ValueError, match="one size"):
        models["rosettes"].predict([image, image[:, :50, :60]], max_steps=1)
    assert len(models["rosettes"].predict([image, image], max_steps=1)) == 2  # equal sizes batch


def test_a_forward_pass_of_no_steps(models, plant):
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        models["rosettes"](plant[0][None], 0)


def test_a_float_label_map_with_halves(plant, tmp_path):
    labels = plant[1].double()
    labels[3, 4] = 0.5
    with pytest.raises(ValueError, match="0.5"):
        write_label_png(labels, tmp_path / "pred.png")
    with pytest.raises(TypeError, match="0.5"):
        symmetric_best_dice(labels, plant[1])
    write_label_png(plant[1].double(), tmp_path / "whole.png")  # whole numbers in floats are fine
