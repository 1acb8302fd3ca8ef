"""The shipped checkpoint loads as documented and still segments leaves."""

import json

import torch

import ris_lite
from ris_lite.pretrained import pretrained_path


def test_load_pretrained_is_an_eval_model_on_the_cpu():
    model = ris_lite.load_pretrained()
    assert isinstance(model, ris_lite.RIS) and not model.training
    assert model.device.type == "cpu"
    assert tuple(model.config.input_size) == (106, 100)
    assert model.data_options == {}  # trained on the benchmark's default rosettes


def test_shipped_files_are_complete():
    path = pretrained_path()
    assert path.stat().st_size < 5_000_000
    for extra in ("rosettes_log.csv", "rosettes_config.json", "README.md"):
        assert (path.parent / extra).is_file(), extra
    config = json.loads((path.parent / "rosettes_config.json").read_text())
    assert config["config"]["curriculum"][-1] == [22, 11, 20]


def test_unknown_name_is_a_clear_error():
    import pytest
    with pytest.raises(ValueError, match="unknown pretrained model 'giraffes'"):
        ris_lite.load_pretrained("giraffes")


def test_it_segments_test_plants_as_well_as_its_stored_scores_say():
    """On the first 8 test plants the shipped model scores what ``rosettes_test.json`` (all 100
    plants, the README's command) says, within 3 standard errors of the stored spread: a
    changed checkpoint, data or metric fails here, and so does a stale score file."""
    model = ris_lite.load_pretrained()
    stored = json.loads((pretrained_path().parent / "rosettes_test.json").read_text())
    assert stored["n_images"] == 100
    test = ris_lite.RosetteDataset("test", length=8)
    preds, gts = ris_lite.predict_dataset(model, test)
    r = ris_lite.metrics.evaluate_labels(preds, gts)
    for key in ("sbd", "fgbg_dice"):
        assert abs(r[key] - stored[key]) < 3 * stored[f"{key}_std"] / 8 ** 0.5, (key, r[key], stored[key])
    assert all(p.dtype == torch.int64 for p in preds)


def test_the_canvas_model_is_shipped_with_its_scores():
    """The stored test score agrees with a live one on the first 8 plants (within 3 standard
    errors of the stored spread), so a changed checkpoint, data or metric fails here."""
    model = ris_lite.load_pretrained("rosettes_canvas")
    assert model.config.canvas and model.config.canvas_memory and not model.training
    folder = pretrained_path("rosettes_canvas").parent
    assert (folder / "rosettes_canvas_curve.csv").is_file() and (folder / "ablation_learning.csv").is_file()
    stored = json.loads((folder / "rosettes_canvas_test.json").read_text())
    assert stored["n_images"] == 100
    test = ris_lite.RosetteDataset("test", length=8, **model.data_options)
    preds, gts = ris_lite.predict_dataset(model, test)
    live = ris_lite.metrics.evaluate_labels(preds, gts)["sbd"]
    assert abs(live - stored["sbd"]) < 3 * stored["sbd_std"] / 8 ** 0.5, (live, stored["sbd"])


def test_crf_parameters_and_scores_are_shipped():
    from dataclasses import replace

    from ris_lite.evaluation.evaluate import ground_truth_labels
    from ris_lite.evaluation.metrics import symmetric_best_dice
    from ris_lite.model.crf import CRFConfig, refine
    from ris_lite.model.ris import first_claim_labels
    from ris_lite.pretrained import crf_config_path

    model = ris_lite.load_pretrained()
    assert model.crf_config == CRFConfig.load(crf_config_path("rosettes"))
    bench = json.loads((pretrained_path().parent / "crf_test.json").read_text())
    for name, row in bench["models"].items():
        assert row["ris"]["n_images"] == row["ris_crf"]["n_images"] == 100, name
        assert len(row["sbd_per_plant"]["ris_crf"]) == 100
        assert set(row["seconds_per_plant"]) == {"ris_forward", "crf_float32", "crf_bfloat16", "pydensecrf2_lattice"}
    # recomputed live on the first two plants: the stored per-plant scores, and RIS deciding
    # the count (keep_count: the CRF relabels pixels, never adds or drops an instance)
    test = ris_lite.RosetteDataset("test", length=2)
    stored = bench["models"]["rosettes"]["sbd_per_plant"]
    for i in range(2):
        image, gt = test[i][0], ground_truth_labels(test, i)
        kept = model.kept_masks(image)[0]
        # the stored arm is the exact CRF; the library's default backend (auto) takes the lattice here
        ris, crf = first_claim_labels(kept), refine(image, kept, replace(model.crf_config, backend="exact"))
        assert abs(symmetric_best_dice(ris, gt) - stored["ris"][i]) < 1e-4
        assert abs(symmetric_best_dice(crf, gt) - stored["ris_crf"][i]) < 1e-3
        assert len(crf.unique()) == len(ris.unique())


def test_the_people_model_is_shipped_with_its_scores(capsys):
    """The people configuration (1 x 1 gates, FCN-8s at 1/8 width) and people_test.json; the
    CLI's region AP on a few test scenes agrees with the benchmark's measure."""
    from ris_lite.cli import main
    from ris_lite.model.crf import CRFConfig
    from ris_lite.pretrained import crf_config_path

    model = ris_lite.load_pretrained("people")
    c = model.config
    assert c.fcn_variant == "fcn8s" and c.lstm_kernel == 1 and c.channels == 100 and not model.training
    bench = json.loads((pretrained_path("people").parent / "people_test.json").read_text())
    assert bench["test_scenes"] == 200
    # the stored scores recomputed live on all 200 test scenes (a few seconds), RIS above the baseline
    assert main(["evaluate", "--data", "people", "--limit", "200", "--baseline", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_images"] == 200 and "baseline_params" in result
    assert abs(result["ris"]["ap50"] - bench["ris"]["ap50"]) < 1e-3, (result["ris"], bench["ris"])
    assert result["ris"]["ap50"] > result["baseline"]["ap50"]
    # RIS+CRF's parameters for people, tuned on the validation scenes (benchmarks/tune_people_crf.py)
    assert model.crf_config == CRFConfig.load(crf_config_path("people")) and model.crf_config.backend == "auto"


def test_the_styles_model_is_shipped_with_its_transfer_scores():
    """``rosettes_styles`` (ours) trained on the random looks; the stored held-out-look scores of
    both models agree with live ones on 8 plants (3 standard errors), and the held-out look
    costs the shipped model SBD."""
    styles = ris_lite.load_pretrained("rosettes_styles")
    assert styles.data_options.get("style") == "random"
    folder = pretrained_path("rosettes_styles").parent
    transfer = json.loads((folder / "transfer_test.json").read_text())
    for name in ("rosettes", "rosettes_styles"):
        stored = transfer["styles"][name]["heldout"]
        test = ris_lite.RosetteDataset("test", length=8, style="heldout")
        preds, gts = ris_lite.predict_dataset(ris_lite.load_pretrained(name), test)
        live = ris_lite.metrics.evaluate_labels(preds, gts)["sbd"]
        assert abs(live - stored["sbd"]) < 3 * stored["sbd_std"] / 8 ** 0.5, (name, live, stored["sbd"])
    shipped = transfer["styles"]["rosettes"]
    assert shipped["heldout"]["sbd"] < shipped["a1"]["sbd"]
