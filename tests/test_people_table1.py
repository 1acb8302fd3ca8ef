"""Table 1 on the people stand-in (chapter 11, issue #51): RIS+CRF under region AP, the learned
baseline's instances and scores, crowd groups and visible occlusions, and the stored JSON."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ris_lite.data.people import PeopleDataset, PeopleScene
from ris_lite.evaluation.people_baseline import (
    components_instances,
    pack_labels,
    split_instances,
    unpack_labels,
    watershed_instances,
)
from ris_lite.evaluation.people_crowds import (
    crowd_group,
    depth_order_visible,
    hidden_share,
    occluding_pairs_order,
    pairs_summary,
    region_ap_by_crowd,
)
from ris_lite.evaluation.people_eval import (
    crf_detections,
    refined_detections,
    ris_detections,
    score_people,
)
from ris_lite.model.crf import CRFConfig
from ris_lite.model.people import people_model_config
from ris_lite.model.people_segmenter import PersonSegmenter
from ris_lite.model.ris import RIS
from ris_lite.training.segmenter import train_person_segmenter

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "ris_lite" / "pretrained"
EXACT = CRFConfig(backend="exact", iterations=5)  # the tests' images are tiny: no lattice needed


def two_blocks():
    """A 16 x 16 image with a red and a green block, and RIS-like coarse masks: step 0 one pixel
    too wide around the red block, step 1 inside step 0 (claims nothing), step 2 around green."""
    image = torch.zeros(3, 16, 16)
    image[0, 2:8, 2:8] = 1
    image[1, 8:14, 9:15] = 1
    masks = torch.zeros(3, 16, 16)
    masks[0, 1:9, 1:9] = 0.9
    masks[1, 3:6, 3:6] = 0.95
    masks[2, 7:15, 8:16] = 0.8
    return image, masks, torch.tensor([0.9, 0.8, 0.6])


class FakeRIS:
    """``kept_masks`` of a model that emits the given masks and scores on every image."""

    crf_config = None

    def __init__(self, masks, scores):
        self.masks, self.scores = masks, scores

    def kept_masks(self, images, max_steps, return_scores=False):
        return [(self.masks, self.scores) for _ in images]


def test_crf_detections_keep_the_steps_scores_and_order():
    image, masks, scores = two_blocks()
    model = FakeRIS(masks, scores)
    (ris_labels, ris_scores), = ris_detections(model, image[None])
    (crf_labels, crf_scores), = crf_detections(model, image[None], EXACT)
    # step 1 owns no pixel in RIS's map, so neither method reports it; both keep steps 0 and 2's scores
    np.testing.assert_array_equal(crf_scores, ris_scores)
    assert crf_scores.tolist() == pytest.approx([0.9, 0.6])
    # the CRF snaps each coarse mask to its block, and id j is still RIS's id j (the order emitted)
    assert torch.equal(crf_labels == 1, image[0] > 0) and torch.equal(crf_labels == 2, image[1] > 0)
    for j in (1, 2):
        assert (ris_labels[crf_labels == j] == j).all()
    assert (ris_labels == 1).sum() == 64 and (crf_labels == 1).sum() == 36  # 8 x 8 -> 6 x 6


def test_an_instance_the_crf_drops_takes_its_score_with_it():
    image, _, _ = two_blocks()
    masks = torch.zeros(2, 16, 16)
    masks[0, 0, 0:2] = 0.51  # a faint 2-pixel step on plain background: the CRF removes it
    masks[1, 8:14, 9:15] = 0.95
    config = CRFConfig(backend="exact", keep_count=False, appearance_weight=20.0, smoothness_weight=5.0)
    labels, scores = refined_detections(image, masks, torch.tensor([0.9, 0.7]), config)
    assert int(labels.max()) == 1 and scores.tolist() == pytest.approx([0.7])  # not step 0's 0.9
    labels, scores = refined_detections(image, masks, torch.tensor([0.9, 0.7]), EXACT)  # keep_count: both stay
    assert int(labels.max()) == 2 and scores.tolist() == pytest.approx([0.9, 0.7])


def test_score_people_scores_ris_crf_on_a_tiny_model():
    torch.manual_seed(0)
    model = RIS(people_model_config(width=1 / 16, input_size=(64, 64), batch_norm=True)).eval()
    ds = PeopleDataset("test", length=3, size=(64, 64))
    out = score_people(model, ds, {"threshold": 0.3, "min_area": 10}, max_steps=3, oracle=False, crf=EXACT)
    assert 0 <= out["ris_crf"]["ap50"] <= 1 and 0 <= out["ris_crf"]["ap_mean"] <= 1
    assert len(out["ris_crf_labels"]) == len(out["ris_crf_scores"]) == 3
    for labels, scores, ris_scores in zip(out["ris_crf_labels"], out["ris_crf_scores"], out["ris_scores"]):
        assert int(labels.max()) == len(scores) == len(ris_scores)  # keep_count: as many as RIS
        np.testing.assert_array_equal(scores, ris_scores)


def touching_discs():
    """Two discs of radius 6 (113 pixels each, Gauss's circle count) whose centres lie 11 pixels
    apart on row 10 (columns 9 and 20): they share 2 pixels, on columns 14-15. Probability 0.9
    left of the bisector (x = 14.5), 0.7 right of it, 0.3 (below threshold) elsewhere, and a
    2 x 2 speck of 0.95."""
    yy, xx = np.mgrid[0:20, 0:30]
    union = ((yy - 10) ** 2 + (xx - 9) ** 2 <= 36) | ((yy - 10) ** 2 + (xx - 20) ** 2 <= 36)
    p = np.full((20, 30), 0.3)
    p[union & (xx <= 14)], p[union & (xx >= 15)] = 0.9, 0.7
    p[0:2, 27:29] = 0.95
    return p, union & (xx <= 14), union & (xx >= 15)


def test_components_join_touching_people_and_score_by_mean_probability():
    p, left, right = touching_discs()
    labels, scores = components_instances(p, threshold=0.5, min_area=10)
    assert int(labels.max()) == 1 and torch.equal(labels == 1, torch.from_numpy(left | right))
    assert (left | right).sum() == 2 * 113 - 2
    assert scores.tolist() == pytest.approx([(112 * 0.9 + 112 * 0.7) / 224])  # = 0.8
    labels, scores = components_instances(p, threshold=0.5, min_area=1)  # the speck is kept, and ranked first
    assert scores.tolist() == pytest.approx([0.95, 0.8]) and (labels == 1).sum() == 4


def test_watershed_cuts_two_touching_discs_along_their_neck():
    p, left, right = touching_discs()
    labels, scores = watershed_instances(p, threshold=0.5, min_area=10, min_distance=5)
    assert scores.tolist() == pytest.approx([0.9, 0.7])  # ranked by mean probability
    assert torch.equal(labels == 1, torch.from_numpy(left)) and torch.equal(labels == 2, torch.from_numpy(right))
    assert (labels == 1).sum() == (labels == 2).sum() == 112
    params = {"threshold": 0.5, "min_area": 10, "min_distance": 5}
    assert torch.equal(split_instances(p, "watershed", params)[0], labels)


def test_the_instance_split_refuses_what_is_no_probability_map():
    p, _, _ = touching_discs()
    for bad in (p * 2, np.where(p > 0.5, np.nan, p), p[None]):
        with pytest.raises(ValueError, match="probability map"):
            components_instances(bad)
        with pytest.raises(ValueError, match="probability map"):
            watershed_instances(bad)
    with pytest.raises(ValueError, match="split"):
        split_instances(p, "boxes", {"threshold": 0.5, "min_area": 10})


def test_packed_labels_round_trip():
    p, _, _ = touching_discs()
    labels, _ = watershed_instances(p)
    assert torch.equal(unpack_labels(pack_labels(labels), labels.shape), labels)
    with pytest.raises(ValueError):
        pack_labels(torch.full((4, 4), 300))


def test_person_segmenter_has_the_people_fcn_and_trains_reproducibly():
    config = people_model_config(width=1 / 16, input_size=(64, 64), batch_norm=True)
    net = PersonSegmenter(config)
    assert net.eval()(torch.rand(2, 3, 50, 70)).shape == (2, 50, 70)  # cropped back from the 64 x 96 frame
    assert sum(p.numel() for p in net.fcn.parameters()) == sum(p.numel() for p in RIS(config).fcn.parameters())
    ds = PeopleDataset("train", length=4, size=(64, 64))
    before = torch.random.get_rng_state()
    a, losses = train_person_segmenter(config, ds, steps=2, batch_size=2, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global RNG is left alone
    b, _ = train_person_segmenter(config, ds, steps=2, batch_size=2, seed=3)
    assert len(losses) == 2 and all(np.isfinite(losses)) and not a.training
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    probs = a.foreground_probability(torch.rand(3, 3, 64, 64), batch_size=2)
    assert len(probs) == 3 and probs[0].shape == (64, 64) and 0 <= float(probs[0].min()) <= float(probs[0].max()) <= 1
    with pytest.raises(ValueError, match="fcn8s"):
        PersonSegmenter(RIS().config)


def occluding_scene():
    """Figure 1 (front) covers the right half of figure 2's 4 x 4 silhouette; figure 3 stands apart."""
    amodal = torch.zeros(3, 8, 12, dtype=torch.bool)
    amodal[0, 2:6, 4:7] = True
    amodal[1, 2:6, 2:6] = True
    amodal[2, 2:6, 8:12] = True
    labels = torch.zeros(8, 12, dtype=torch.int64)
    for k in (2, 1, 0):  # back to front
        labels[amodal[k]] = k + 1
    return PeopleScene(torch.zeros(3, 8, 12), labels, torch.tensor([0.1, 0.5, 0.9]), amodal)


def test_hidden_share_and_the_order_of_occluding_pairs():
    scene = occluding_scene()
    share = hidden_share(scene.labels, scene.amodal)
    assert share[0, 1] == pytest.approx(8 / 16) and share[0, 2] == 0 and share[1, 2] == 0 and share[1, 0] == 0
    assert depth_order_visible(scene.labels, scene.amodal, 0.5) and not depth_order_visible(scene.labels,
                                                                                           scene.amodal, 0.51)
    front_first = scene.labels.clone()  # emitted in depth order
    back_first = torch.where(scene.labels == 1, 2, torch.where(scene.labels == 2, 1, scene.labels))
    assert occluding_pairs_order(front_first, scene) == {"pairs": 1, "front_first": 1}
    assert occluding_pairs_order(back_first, scene) == {"pairs": 1, "front_first": 0}
    missed = torch.where(scene.labels == 2, 0, scene.labels)  # the hidden figure is not found: no pair
    assert occluding_pairs_order(missed, scene) == {"pairs": 0, "front_first": 0}
    summary = pairs_summary([{"pairs": 1, "front_first": 1}, {"pairs": 1, "front_first": 0}])
    assert summary["pairs"] == 2 and summary["front_first"] == 0.5 and summary["low"] <= 0.5 <= summary["high"]


def test_crowd_groups_follow_the_papers_figures():
    assert [crowd_group(n) for n in range(7)] == ["1-2", "1-2", "1-2", "3", "4+", "4+", "4+"]
    one = np.ones((1, 4, 4), bool)
    three = np.zeros((3, 4, 4), bool)
    three[0, 0], three[1, 1], three[2, 2] = True, True, True
    labels = torch.zeros(4, 4, dtype=torch.int64)
    labels[0], labels[3] = 1, 2
    by = region_ap_by_crowd([(torch.ones(4, 4, dtype=torch.int64), np.array([0.9])), (labels, np.array([0.8, 0.7]))],
                            [one, three])
    assert by["1-2"] == {"scenes": 1, "people": 1, "predicted": 1, "ap50": 1.0, "ap_mean": 1.0}
    assert by["3"]["people"] == 3 and by["3"]["predicted"] == 2 and by["3"]["ap50"] == pytest.approx(1 / 3)
    assert "4+" not in by


# --------------------------------------------------------------------------------------------
# The stored Table 1 (benchmarks/people_table1.py)

TABLE1_ROWS = ("learned_baseline_components", "learned_baseline_watershed", "ris", "ris_crf",
               "row_median_baseline", "oracle_foreground")
PAPER = {"RIS": (0.467, 0.419), "RIS+CRF": (0.501, 0.437), "baseline (FCN-8s + Faster R-CNN proposals)": (0.458, 0.396)}


def check_table1(report: dict) -> None:
    """Every measured row with both numbers in [0, 1], the paper's rows quoted as printed, the
    retrained arm's spread consistent with its seeds, every method split by crowd over all test
    scenes, the occlusion shares in range, and how the file was made."""
    assert report["command"].startswith("OMP_NUM_THREADS=1 python benchmarks/people_table1.py")
    assert report["test_scenes"] == 200 and report["val_scenes"] == 64
    for row in TABLE1_ROWS:
        for metric in ("ap50", "ap_mean"):
            assert 0.0 <= report["table1"][row][metric] <= 1.0, (row, metric)
    paper = report["paper_table1"]
    assert paper["quoted"] is True
    for name, (ap50, ap_mean) in PAPER.items():
        assert (paper["rows"][name]["ap50"], paper["rows"][name]["ap_mean"]) == (ap50, ap_mean), name
    lb = report["learned_baseline"]
    assert len(lb["seeds"]) >= 2 and [r["seed"] for r in lb["per_seed"]] == lb["seeds"]
    for split in ("components", "watershed"):
        assert lb["per_seed"][0][split]["ap50"] == report["table1"][f"learned_baseline_{split}"]["ap50"]
        for metric in ("ap50", "ap_mean"):
            values = [r[split][metric] for r in lb["per_seed"]]
            s = lb["spread"][split][metric]
            assert s["min"] == min(values) and s["max"] == max(values) and s["min"] <= s["mean"] <= s["max"]
    for name in ("ris", "ris_crf", "learned_baseline_components", "learned_baseline_watershed"):
        groups = report["by_crowd"][name]
        assert set(groups) == {"1-2", "3", "4+"} and sum(g["scenes"] for g in groups.values()) == 200, name
        assert all(0.0 <= g[m] <= 1.0 for g in groups.values() for m in ("ap50", "ap_mean")), name
        for scenes in report["figures"]["scenes"].values():
            for i in scenes:
                assert unpack_labels(report["figures"]["labels"][name][str(i)], (128, 128)).shape == (128, 128)
    occ = report["occlusion"]
    assert all(0.0 <= v <= 1.0 for v in occ["visible_order_share"].values())
    assert -1.0 <= occ["ris"]["tau_low"] <= occ["ris"]["tau"] <= occ["ris"]["tau_high"] <= 1.0
    assert occ["pairs"]["ris"]["pairs"] <= occ["occluding_pairs_in_test"]
    assert report["machine"] and report["date"] and report["seconds"]["total"] > 0


@pytest.fixture(scope="module")
def table1():
    return json.loads((PRETRAINED / "people_table1.json").read_text())


def test_the_stored_table1_is_complete_and_in_range(table1):
    check_table1(table1)
    # RIS's row is the number bench_people.py stored for the same model and scenes
    stored = json.loads((PRETRAINED / "people_test.json").read_text())
    assert table1["table1"]["ris"]["ap50"] == pytest.approx(stored["ris"]["ap50"], abs=1e-9)
    # it is remade by the command the pretrained README gives
    assert table1["command"] in (PRETRAINED / "README.md").read_text()
    assert table1["crf"]["backend"] == "auto" and table1["crf"] == {
        **CRFConfig.load(PRETRAINED / "people_crf.json").to_dict(), "backend_used": table1["crf"]["backend_used"]}


@pytest.mark.parametrize("corrupt", ["ap_out_of_range", "row_missing", "paper_not_quoted", "one_seed", "crowd_short"])
def test_the_table1_check_fails_on_a_wrong_file(table1, corrupt):
    bad = copy.deepcopy(table1)
    if corrupt == "ap_out_of_range":
        bad["table1"]["ris_crf"]["ap50"] = 50.1  # percent where a fraction belongs
    elif corrupt == "row_missing":
        del bad["table1"]["learned_baseline_watershed"]
    elif corrupt == "paper_not_quoted":
        bad["paper_table1"]["quoted"] = False
    elif corrupt == "one_seed":
        bad["learned_baseline"]["seeds"] = bad["learned_baseline"]["seeds"][:1]
    else:
        bad["by_crowd"]["ris"]["4+"]["scenes"] -= 1
    with pytest.raises((AssertionError, KeyError)):
        check_table1(bad)


def test_the_cli_scores_ris_crf_for_people(capsys):
    from ris_lite.cli import main

    assert main(["evaluate", "--data", "people", "--crf", "--limit", "4", "--max-steps", "10", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_images"] == 4 and 0 <= result["ris+crf"]["ap50"] <= 1 and 0 <= result["ris+crf"]["ap_mean"] <= 1
    tuned = CRFConfig.load(PRETRAINED / "people_crf.json").to_dict()
    assert {k: v for k, v in result["crf"].items() if k != "backend"} == {k: v for k, v in tuned.items() if k != "backend"}
    assert main(["evaluate", "--data", "people", "--crf-config", str(PRETRAINED / "people_crf.json")]) == 2  # needs --crf
