"""``--frame plant`` over a folder whose plant boxes differ in size (data/fixtures/cvppp_sizes):
evaluate, predict and score take the plants one size at a time, and predict and score show
progress."""

import json
from pathlib import Path

import torch

from ris_lite import CVPPP, load_pretrained
from ris_lite.cli import main
from ris_lite.data.folder import read_label_image
from ris_lite.evaluation.evaluate import predict_dataset, same_size_batches
from ris_lite.evaluation.metrics import consecutive_labels

SIZES = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "cvppp_sizes"


def plant_boxes():
    return CVPPP(SIZES, size=(106, 100), zoom=1.8, frame="plant")


def test_the_fixtures_plant_boxes_differ_in_size():
    ds = plant_boxes()
    sizes = [tuple(ds[i][0].shape[1:]) for i in range(len(ds))]
    assert len(set(sizes)) == len(ds) == 3, sizes
    truth = json.loads((SIZES / "truth.json").read_text())
    assert [list(ds.original_size(i)) for i in range(len(ds))] == [truth[n]["size"] for n in ds.names]


def test_batches_hold_one_size_in_order():
    ds = plant_boxes()
    batches = list(same_size_batches(ds, batch_size=8))
    assert [i for chunk, _ in batches for i in chunk] == list(range(len(ds)))
    for chunk, images in batches:
        assert images.shape[0] == len(chunk) and all(torch.equal(images[k], ds[i][0]) for k, i in enumerate(chunk))
    whole = CVPPP(SIZES, size=(106, 100), zoom=1.8)  # whole frames: one size, batched up to batch_size
    assert [chunk for chunk, _ in same_size_batches(whole, batch_size=2)] == [[0, 1], [2]]


def test_predict_dataset_batched_by_size_equals_one_at_a_time():
    model, ds = load_pretrained("rosettes"), plant_boxes()
    preds, gts = predict_dataset(model, ds, max_steps=4)
    for i in range(len(ds)):
        alone = consecutive_labels(ds.to_original(model.predict(ds[i][0], max_steps=4)[0], i))
        assert torch.equal(preds[i], alone)
        assert torch.equal(gts[i], consecutive_labels(ds.original_labels(i)))


def test_cli_evaluate_predict_score_with_plant_frames(tmp_path, capsys):
    data = ["--data", f"cvppp:{SIZES}", "--frame", "plant"]
    assert main(["evaluate", *data, "--max-steps", "6", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["n_images"] == 3
    assert main(["evaluate", *data, "--max-steps", "6", "--crf", "--json"]) == 0  # RIS+CRF at each box's size
    assert json.loads(capsys.readouterr().out)["n_images"] == 3
    out = tmp_path / "preds"
    assert main(["predict", *data, "--max-steps", "6", "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == 3
    for name in ("plant001", "plant002", "plant003"):  # each at its file's own size
        label = read_label_image(out / f"{name}_label.png")
        assert label.shape == read_label_image(SIZES / f"{name}_label.png").shape and label.max() > 0
    assert main(["score", *data, "--predictions", str(out)]) == 0
    from_files = json.loads(capsys.readouterr().out)
    assert from_files["n_images"] == 3
    assert abs(from_files["sbd"] - scored["sbd"]) < 1e-9  # the written files score as evaluate did


def test_predict_and_score_show_progress_unless_quiet(tmp_path, capsys):
    data = ["--data", f"cvppp:{SIZES}", "--frame", "plant", "--limit", "1"]
    out = str(tmp_path / "p")
    for quiet in ([], ["--quiet"]):
        assert main(["predict", *data, "--max-steps", "2", "--out", out, *quiet]) == 0
        captured = capsys.readouterr()
        assert ("predict: 100%" in captured.err) != bool(quiet), captured.err
        json.loads(captured.out)  # stdout stays one JSON object
        assert main(["score", *data, "--predictions", out, *quiet]) == 0
        captured = capsys.readouterr()
        assert ("score: 100%" in captured.err) != bool(quiet), captured.err
        json.loads(captured.out)
