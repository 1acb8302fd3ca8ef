"""VOC 2012 and COCO person readers on fixtures in the exact on-disk formats, and region AP
under the VOC/SDS protocol: by hand, and against pycocotools where the protocols agree."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ris_lite.data.people import make_people
from ris_lite.data.people_readers import COCOPeople, VOCPeople, letterbox
from ris_lite.evaluation.metrics import (
    ImageDetections,
    average_precision_r,
    mask_iou,
    match_detections,
)

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "fixtures"
VOC = FIXTURES / "VOCdevkit"
COCO_DIR = FIXTURES / "coco_people"
COCO_JSON = COCO_DIR / "annotations" / "instances_fixture.json"


# ----- VOC ------------------------------------------------------------------------------------
def test_voc_reads_people_not_dogs_and_excludes_void():
    truth = json.loads((VOC / "VOC2012" / "truth.json").read_text())
    ds = VOCPeople(VOC, split="trainval")
    assert ds.names == ["2007_000001", "2007_000002", "2007_000003"]
    for i, name in enumerate(ds.names):
        image, masks = ds[i]
        t = truth[name]
        assert image.shape == (3, 500, 500) and masks.shape[1:] == (500, 500)
        assert masks.flatten(1).sum(1).tolist() == t["person_areas"]  # the dog is no person
        h, w = t["size"]
        void = ds.void(i)
        assert int(void[:h, :w].sum()) == t["void_pixels"]  # VOC's 255 band (and hard region)
        assert bool(void[h:].all()) and bool(void[:, w:].all())  # padding is void
        assert not (masks & void).any()  # void pixels belong to no instance
        assert len(ds.crowd(i)) == 0


def test_voc_split_files_and_people_only():
    assert VOCPeople(VOC / "VOC2012", split="val").names == ["2007_000001", "2007_000002"]
    assert VOCPeople(VOC, split="val", with_people_only=True).names == ["2007_000001"]
    with pytest.raises(FileNotFoundError, match="split file"):
        VOCPeople(VOC, split="test")
    with pytest.raises(FileNotFoundError, match="no JPEGImages"):
        VOCPeople(FIXTURES / "cvppp_a1")


def test_voc_label_files_must_be_palette_indices(tmp_path):
    root = tmp_path / "VOC2012"
    for sub in ("JPEGImages", "SegmentationObject", "SegmentationClass"):
        (root / sub).mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "JPEGImages" / "x.jpg")
    Image.new("RGB", (8, 8)).save(root / "SegmentationObject" / "x.png")  # colours, not indices
    Image.new("P", (8, 8)).save(root / "SegmentationClass" / "x.png")
    with pytest.raises(ValueError, match="palette"):
        VOCPeople(root, ids=["x"])[0]


def test_letterbox_shrinks_only_what_is_too_big():
    image, masks = torch.rand(3, 100, 400), torch.zeros(1, 100, 400, dtype=torch.bool)
    masks[0, 10:50, 100:300] = True
    out, m, void, box = letterbox(image, masks, torch.zeros(100, 400, dtype=torch.bool), 200)
    assert box.scale == 0.5 and box.placed == (50, 200) and out.shape == (3, 200, 200)
    assert int(m.sum()) == 20 * 100 and bool(void[50:].all()) and not void[:50].any()
    _, _, _, same = letterbox(image[:, :50, :60], masks[:, :50, :60], torch.zeros(50, 60, dtype=torch.bool), 200)
    assert same.scale == 1.0 and same.placed == (50, 60)


# ----- COCO -----------------------------------------------------------------------------------
def test_coco_reads_polygons_rle_and_crowds():
    pytest.importorskip("pycocotools")
    truth = json.loads((COCO_DIR / "truth.json").read_text())
    ds = COCOPeople(COCO_JSON, COCO_DIR / "images")
    assert ds.ids == [1, 2]  # image 3 holds only a dog
    image, masks = ds[0]
    t = truth["1"]
    assert len(masks) == t["people"] and len(ds.crowd(0)) == t["crowds"]
    _, labels = make_people(900_010, size=(120, 160), n_people=(2, 2))
    assert torch.equal(masks[0, :120, :160], labels == 1)  # the compressed RLE, exactly
    assert int(masks[1].sum()) == t["polygon_area"]  # a 40 x 80 box polygon
    assert int(ds.crowd(0).sum()) == t["crowd_area"]  # the iscrowd RLE is a region, not a person
    image2, masks2 = ds[1]  # 320 x 640 shrunk by 500 / 640 into the frame
    assert ds.record(1).box.scale == pytest.approx(truth["2"]["scale"])
    assert int(masks2.sum()) == pytest.approx(truth["2"]["polygon_area"] * truth["2"]["scale"] ** 2, rel=0.02)
    assert bool(ds.void(1)[250:].all()) and not ds.void(1)[:250].any()


def test_coco_errors_name_the_file(tmp_path):
    pytest.importorskip("pycocotools")
    with pytest.raises(FileNotFoundError, match="annotation"):
        COCOPeople(tmp_path / "nope.json", COCO_DIR / "images")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        COCOPeople(bad, COCO_DIR / "images")
    with pytest.raises(ValueError, match="giraffe"):
        COCOPeople(COCO_JSON, COCO_DIR / "images", category="giraffe")


# ----- region AP ------------------------------------------------------------------------------
def _boxes(shape, *boxes):
    out = np.zeros((len(boxes), *shape), bool)
    for k, (y0, y1, x0, x1) in enumerate(boxes):
        out[k, y0:y1, x0:x1] = True
    return out


def test_ap_by_hand_and_where_voc_and_coco_differ():
    """Two people A (cols 0-9) and B (cols 8-17) side by side, 10 x 10 each, overlapping in
    two columns. Detection 1 (0.9) is A exactly. Detection 2 (0.8) covers cols 2-14: its IoU
    is 8/15 = 0.53 with A (its best) and 7/16 = 0.44 with B, so at threshold 0.4:
    VOC/SDS: its best instance A is taken -> false positive; AP = 1 * 1/2 = 0.5.
    COCO: it falls back to B (0.44 >= 0.4) -> true positive; AP = 1."""
    gt = _boxes((10, 20), (0, 10, 0, 10), (0, 10, 8, 18))
    det = _boxes((10, 20), (0, 10, 0, 10), (0, 10, 2, 15))
    iou = mask_iou(det, gt)
    assert iou[1, 0] == pytest.approx(80 / 150) and iou[1, 1] == pytest.approx(70 / 160)
    detections = [(det, [0.9, 0.8], gt)]
    _, tp_voc, _ = match_detections(detections, 0.4, "voc")
    _, tp_coco, _ = match_detections(detections, 0.4, "coco")
    assert tp_voc.tolist() == [True, False] and tp_coco.tolist() == [True, True]
    assert average_precision_r(detections, 0.4) == pytest.approx(0.5)
    assert average_precision_r(detections, 0.4, protocol="coco") == pytest.approx(1.0)
    # a false detection ranked first: precision 0, 1/2, 2/3 at recall 0, 1/2, 1; the envelope
    # (best precision at this recall or more) lifts the 1/2 to 2/3, so AP = 2/3
    extra = _boxes((10, 20), (0, 10, 0, 10), (0, 10, 8, 18), (0, 2, 0, 20))
    ap = average_precision_r([(extra, [0.5, 0.4, 0.95], gt)], 0.5)
    assert ap == pytest.approx(0.5 * 2 / 3 + 0.5 * 2 / 3)


def test_void_pixels_leave_the_iou():
    gt = _boxes((10, 10), (0, 10, 0, 5))
    det = _boxes((10, 10), (0, 10, 0, 8))  # 3 extra columns: IoU 50/80
    void = np.zeros((10, 10), bool)
    void[:, 5:8] = True  # ... all of them void (VOC's outline band): IoU 1
    assert mask_iou(det, gt)[0, 0] == pytest.approx(50 / 80)
    assert mask_iou(det, gt, void)[0, 0] == pytest.approx(1.0)
    assert average_precision_r([ImageDetections(det, [1.0], gt)], 0.7) == 0.0
    assert average_precision_r([ImageDetections(det, [1.0], gt, void)], 0.7) == 1.0


def test_a_detection_on_a_crowd_counts_neither_way():
    gt = _boxes((10, 20), (0, 10, 0, 5))
    crowd = _boxes((10, 20), (0, 10, 10, 20))
    det = _boxes((10, 20), (0, 10, 0, 5), (2, 8, 12, 18))
    scores = [0.5, 0.9]  # the crowd detection ranks first
    assert average_precision_r([ImageDetections(det, scores, gt)], 0.5) == pytest.approx(0.5)
    assert average_precision_r([ImageDetections(det, scores, gt, crowd=crowd)], 0.5) == pytest.approx(1.0)


def test_bad_detections_are_named():
    gt = _boxes((10, 10), (0, 5, 0, 5))
    with pytest.raises(ValueError, match="2 masks but 1 scores"):
        average_precision_r([(np.concatenate([gt, gt]), [1.0], gt)])
    with pytest.raises(ValueError, match="differ in size"):
        average_precision_r([(np.zeros((1, 4, 4), bool), [1.0], gt)])
    with pytest.raises(ValueError, match="protocol"):
        average_precision_r([(gt, [1.0], gt)], protocol="sds")


def _random_set(seed):
    """People-scene instances as ground truth; detections: each true instance shifted by a few
    pixels (some twice, as duplicates) plus random boxes, with random scores."""
    rng = np.random.default_rng(seed)
    out = []
    for s in range(6):
        _, labels = make_people(500 + s + 10 * seed, size=(64, 64))
        gt = np.stack([(labels == k).numpy() for k in range(1, int(labels.max()) + 1)])
        dets = []
        for g in gt:
            for _ in range(rng.integers(0, 3)):
                dets.append(np.roll(g, tuple(rng.integers(-4, 5, 2)), axis=(0, 1)))
        for _ in range(rng.integers(0, 3)):
            y, x = rng.integers(0, 48, 2)
            dets.append(_boxes((64, 64), (y, y + 16, x, x + 10))[0])
        dets = np.stack(dets) if dets else np.zeros((0, 64, 64), bool)
        out.append(ImageDetections(dets, rng.random(len(dets)), gt))
    return out


@pytest.mark.parametrize("seed", range(3))
def test_coco_protocol_equals_pycocotools(seed):
    """pycocotools' segm evaluation at one IoU threshold, every area, up to 100 detections,
    is our ``protocol="coco"`` with 101-point interpolation: the matches and the AP agree."""
    pytest.importorskip("pycocotools")
    import contextlib
    import io

    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    data = _random_set(seed)
    images, anns, results = [], [], []
    for img, d in enumerate(data, start=1):
        images.append({"id": img, "height": 64, "width": 64})
        for g in d.gt_masks:
            rle = mask_utils.encode(np.asfortranarray(g.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            anns.append({"id": len(anns) + 1, "image_id": img, "category_id": 1, "iscrowd": 0,
                         "segmentation": rle, "area": float(g.sum()), "bbox": [0, 0, 1, 1]})
        for m, s in zip(d.masks, d.scores):
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            results.append({"image_id": img, "category_id": 1, "segmentation": rle, "score": float(s)})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), "segm")
        ev.params.iouThrs = np.array([0.5])
        ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e10]], ["all"]
        ev.params.maxDets = [100]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][0, :, 0, 0, 0]
    theirs = float(precision[precision > -1].mean())
    ours = average_precision_r(data, 0.5, protocol="coco", interpolation="coco101")
    assert ours == pytest.approx(theirs, abs=1e-9)
    n_tp_theirs = sum(int((e["dtMatches"][0] > 0).sum()) for e in ev.evalImgs if e is not None)
    assert int(match_detections(data, 0.5, "coco")[1].sum()) == n_tp_theirs
    # the VOC/SDS rule never finds more true positives than COCO's fallback
    assert match_detections(data, 0.5, "voc")[1].sum() <= n_tp_theirs


# ----- the real-data path: train and evaluate on VOC -----------------------------------------
def test_train_and_evaluate_on_voc(tmp_path, capsys):
    import shutil

    from ris_lite.cli import main

    root = shutil.copytree(VOC / "VOC2012", tmp_path / "VOC2012")
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000001\n2007_000002\n2007_000003\n")
    out = tmp_path / "run"
    assert main(["train", "--data", f"voc:{root}", "--out", str(out), "--max-steps", "1", "--fcn-width", "0.0625",
                 "--batch-size", "1", "--val-images", "1", "--quiet"]) == 0
    split = json.loads((out / "split.json").read_text())
    assert sorted([*split["train"], *split["val"]]) == ["2007_000001", "2007_000003"]  # people only
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["config"]["model"]["input_size"] == [500, 500] and state["config"]["source"] == f"voc:{root}"
    capsys.readouterr()
    assert main(["evaluate", "--data", f"voc:{root}", "--checkpoint", str(out / "last.pt"), "--split", "val",
                 "--max-steps", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_images"] == 2 and 0.0 <= result["ris"]["ap50"] <= 1.0
    assert main(["train", "--data", f"voc:{tmp_path / 'nothing'}", "--out", str(tmp_path / "r2")]) == 2


def test_train_on_coco(tmp_path, capsys):
    """``coco:PATH`` trains like ``voc:``: the images with people (the dog-only one left out),
    split by image id; a crowd region is no training target."""
    pytest.importorskip("pycocotools")
    from ris_lite import Trainer
    from ris_lite.cli import main
    from ris_lite.data.people_readers import coco_image_folder

    truth = json.loads((COCO_DIR / "truth.json").read_text())
    out = tmp_path / "run"
    assert main(["train", "--data", f"coco:{COCO_JSON}", "--out", str(out), "--max-steps", "2", "--fcn-width",
                 "0.0625", "--batch-size", "1", "--val-images", "1", "--eval-every", "2", "--quiet"]) == 0
    split = json.loads((out / "split.json").read_text())
    assert sorted([*split["train"], *split["val"]]) == ["1", "2"]
    assert {**split["train"], **split["val"]} == {k: v["people"] for k, v in truth.items()}
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["trainer"]["step"] == 2 and state["config"]["source"] == f"coco:{COCO_JSON}"
    assert state["config"]["model"]["input_size"] == [500, 500]
    t = Trainer.resume(out / "last.pt")
    ds = t.source.dataset("train", 0, 10, None)
    assert [len(ds[i][1]) for i in range(len(ds))] == [truth[n]["people"] for n in ds.names]
    assert coco_image_folder(COCO_JSON) == COCO_DIR / "images"
    coco = tmp_path / "coco"  # COCO's own layout: annotations/instances_train2017.json beside train2017/
    (coco / "annotations").mkdir(parents=True)
    (coco / "train2017").mkdir()
    (coco / "annotations" / "instances_train2017.json").write_text("{}")
    assert coco_image_folder(coco / "annotations" / "instances_train2017.json") == coco / "train2017"
    capsys.readouterr()
    assert main(["train", "--data", f"coco:{tmp_path / 'instances_none.json'}", "--out", str(tmp_path / "r2")]) == 2
    assert "no COCO annotation file" in capsys.readouterr().err
