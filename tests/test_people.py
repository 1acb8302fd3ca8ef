"""The people experiment: the stand-in scenes, FCN-8s, the 1x1 configuration, the two-phase
training option and the evaluation helpers (chapter 11)."""

import numpy as np
import pytest
import torch

from ris_lite.data.people import FlipLeftRight, PeopleDataset, make_people, make_people_scene
from ris_lite.evaluation.people_eval import (
    bootstrap_ci,
    components_detections,
    depth_rank_correlation,
    emission_vs_depth,
    label_detections,
)
from ris_lite.model.fcn8s import FCN8s, bilinear_upsampling_weight
from ris_lite.model.people import people_model_config
from ris_lite.model.ris import RIS, first_claim_labels
from ris_lite.training.config import TrainConfig
from ris_lite.training.curriculum import PEOPLE_CURRICULUM
from ris_lite.training.trainer import Trainer


def test_scenes_are_deterministic_and_sized():
    a, b = make_people_scene(5), make_people_scene(5)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert a.image.shape == (3, 128, 128) and a.image.dtype == torch.float32
    assert a.labels.dtype == torch.int64 and a.labels.shape == (128, 128)
    assert not torch.equal(make_people(6)[1], a.labels)
    n = int(a.labels.max())
    assert sorted(torch.unique(a.labels).tolist()) == list(range(n + 1))  # ids consecutive
    assert a.depth.shape == (n,) and a.amodal.shape == (n, 128, 128)


@pytest.mark.parametrize("seed", range(20))
def test_depth_order_matches_the_occlusions(seed):
    scene = make_people_scene(seed)
    assert torch.all(scene.depth[1:] >= scene.depth[:-1])  # id 1 nearest
    nearer = torch.zeros_like(scene.labels, dtype=torch.bool)
    for k, whole in enumerate(scene.amodal):
        # what is seen of figure k is its silhouette minus every nearer silhouette ...
        visible = whole & ~nearer
        assert torch.equal(scene.labels == k + 1, visible)
        # ... and where it is hidden, a nearer figure (a smaller id) is seen
        hidden = scene.labels[whole & nearer]
        assert torch.all((hidden >= 1) & (hidden <= k))
        nearer |= whole


def test_count_range_and_bad_options():
    counts = {int(make_people(s, n_people=(3, 3), min_visible=1)[1].max()) for s in range(10)}
    assert max(counts) <= 3 and 3 in counts
    with pytest.raises(ValueError, match="n_people"):
        make_people(0, n_people=(0, 2))
    with pytest.raises(ValueError, match="seed"):
        make_people(-1)
    with pytest.raises(TypeError):
        PeopleDataset("train", n_faces=3)
    with pytest.raises(ValueError, match="split"):
        PeopleDataset("dev")


def test_dataset_items_and_flip():
    ds = PeopleDataset("test", length=3)
    image, masks = ds[1]
    assert masks.dtype == torch.bool and masks.shape[1:] == image.shape[1:]
    assert torch.equal(masks.sum(0) > 0, ds.labels(1) > 0)
    assert ds.scene(1).depth.shape == (len(masks),)
    flip = FlipLeftRight(p=1.0)
    fi, fm = flip(image, masks)
    assert torch.equal(fi, image.flip(-1)) and torch.equal(fm, masks.flip(-1))


def test_fcn8s_gives_the_paper_grid_for_500():
    """500 is padded to 512 = 16 x 32, so pool3 (stride 8) and the fused output are 64 x 64."""
    assert FCN8s.frame_size(500, 500) == (512, 512)
    fcn = FCN8s(width=1 / 16)
    assert fcn.output_size(500, 500) == (64, 64)
    with torch.no_grad():
        out = fcn(torch.rand(1, 3, 500, 500))
    assert out.shape == (1, 100, 64, 64)


def test_people_configuration_state_and_gates():
    model = RIS(people_model_config(width=1 / 16, input_size=(500, 500)))
    cells = model.lstm.cells
    assert len(cells) == 2
    for cell in cells:  # every gate (i, f, o, g) of both layers is a 1x1 convolution
        assert cell.kernel_size == 1 and cell.conv.weight.shape[-2:] == (1, 1)
        assert cell.conv.out_channels == 4 * 100
    with torch.no_grad():
        masks, scores, st = model(torch.rand(1, 3, 500, 500), 2, return_stages=True)
    assert st["h"].shape == (1, 2, 100, 64, 64) and st["c_layers"].shape == (1, 2, 2, 100, 64, 64)
    assert masks.shape == (1, 2, 500, 500)  # upsampled to the 512 frame, cropped to the image


def test_vgg16_weights_load_and_fc_layers_become_convolutions():
    """A state dict with torchvision vgg16's names and shapes (no torchvision needed)."""
    fcn = FCN8s(width=1)
    g = torch.Generator().manual_seed(0)
    sd = {f"features.{k}": torch.randn(v.shape, generator=g) for k, v in fcn.features.state_dict().items()}
    sd.update({"classifier.0.weight": torch.randn(4096, 512 * 7 * 7, generator=g) * 0.01,
               "classifier.0.bias": torch.randn(4096, generator=g),
               "classifier.3.weight": torch.randn(4096, 4096, generator=g) * 0.01,
               "classifier.3.bias": torch.randn(4096, generator=g),
               "classifier.6.weight": torch.zeros(1000, 4096), "classifier.6.bias": torch.zeros(1000)})
    fcn.load_vgg16(sd)
    assert torch.equal(fcn.features[0].weight, sd["features.0.weight"])
    pool5 = torch.randn(1, 512, 7, 7, generator=g)
    with torch.no_grad():  # at the centre of a 7x7 map, fc6-as-conv is the linear layer
        conv = fcn.fc6(pool5)[0, :, 3, 3]
    linear = sd["classifier.0.weight"] @ pool5.flatten() + sd["classifier.0.bias"]
    assert torch.allclose(conv, linear, atol=1e-3)
    with pytest.raises(ValueError, match="vgg16"):
        fcn.load_vgg16({"features.0.weight": sd["features.0.weight"]})
    with pytest.raises(ValueError, match="width=1"):
        FCN8s(width=0.5).load_vgg16(sd)


def test_bilinear_upsampling_keeps_a_constant():
    up = torch.nn.ConvTranspose2d(2, 2, 4, stride=2, padding=1, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_upsampling_weight(2, 2))
        out = up(torch.ones(1, 2, 5, 5))
    assert out.shape == (1, 2, 10, 10)
    assert torch.allclose(out[..., 1:-1, 1:-1], torch.ones(1, 2, 8, 8))


def test_freeze_fcn_trains_only_the_last_layer_and_after(tmp_path):
    cfg = TrainConfig(model=people_model_config(width=1 / 16, input_size=(64, 64)).to_dict(), source="people",
                      data={"size": [64, 64]}, curriculum=[list(PEOPLE_CURRICULUM[0])], batch_size=2,
                      train_images=4, val_images=2, freeze_fcn=True, lr=1e-2)
    trainer = Trainer(cfg, tmp_path, "cpu")
    assert isinstance(trainer._dataset("train", 0).transform, FlipLeftRight)  # people are never rotated
    fcn = trainer.model.fcn
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train_step()
    after = dict(trainer.model.named_parameters())
    last = {id(p) for p in fcn.last_layer_parameters()}
    for name, p in after.items():
        moved = not torch.equal(before[name], p)
        if name.startswith("fcn.") and id(p) not in last:
            assert not moved and not p.requires_grad, name
    assert not torch.equal(before["fcn.score_fr.weight"], after["fcn.score_fr.weight"])
    assert not torch.equal(before["lstm.cells.1.conv.weight"], after["lstm.cells.1.conv.weight"])
    trainer.save()
    resumed = Trainer.resume(tmp_path / "last.pt")
    assert not resumed.model.fcn.features[0].weight.requires_grad


def test_emission_order_against_depth():
    gt = np.zeros((3, 8, 8), bool)
    gt[0, :, :2], gt[1, :, 3:5], gt[2, :, 6:] = True, True, True
    depth = [0.1, 0.5, 0.9]
    front_first = torch.zeros(8, 8, dtype=torch.int64)
    front_first[:, :2], front_first[:, 3:5], front_first[:, 6:] = 1, 2, 3
    r = emission_vs_depth(front_first, gt, depth)
    assert r == {"tau": pytest.approx(1.0), "matched": 3, "front_first": True}
    back_first = torch.where(front_first > 0, 4 - front_first, 0)
    r = emission_vs_depth(back_first, gt, depth)
    assert r["tau"] == pytest.approx(-1.0) and r["front_first"] is False
    assert np.isnan(emission_vs_depth(torch.zeros(8, 8, dtype=torch.int64), gt, depth)["tau"])
    assert np.isnan(depth_rank_correlation([0], [0.3]))


def test_components_baseline_and_detections():
    fg = np.zeros((10, 10), bool)
    fg[1:5, 1:5] = True  # 16 pixels
    fg[6:9, 6:9] = True  # 9 pixels
    labels, scores = components_detections(fg, min_area=1)
    assert labels.max() == 2 and (labels == 1).sum() == 16 and scores[0] > scores[1]
    det = label_detections(labels, scores, np.stack([labels == 1]))
    assert det.masks.shape == (2, 10, 10) and det.gt_masks.shape == (1, 10, 10)


def test_bootstrap_interval_brackets_the_mean():
    mean, lo, hi = bootstrap_ci([0.1, 0.5, float("nan"), 0.9, 0.3])
    assert mean == pytest.approx(0.45) and lo <= mean <= hi
    with pytest.raises(ValueError):
        bootstrap_ci([float("nan")])


def test_first_claim_labels_reports_the_steps():
    masks = torch.zeros(3, 4, 4)
    masks[0, :2] = 1
    masks[1, :2] = 1  # fully claimed already: no id
    masks[2, 2:] = 1
    labels, steps = first_claim_labels(masks, return_steps=True)
    assert steps.tolist() == [0, 2] and labels.max() == 2


def test_batch_norm_variant_keeps_the_geometry():
    fcn = FCN8s(width=1 / 16, batch_norm=True)
    norms = [m for m in fcn.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 13 + 3  # after each 3x3 conv (vgg16_bn), fc6, fc7 and the output
    with torch.no_grad():
        assert fcn.eval()(torch.rand(2, 3, 100, 70)).shape == (2, 100, 16, 12)  # 128 x 96 frame / 8


def test_frozen_batch_norm_keeps_its_statistics():
    model = RIS(people_model_config(width=1 / 16, input_size=(64, 64), batch_norm=True))
    model.trainable_parameters(freeze_fcn=True)
    model.train()
    bn = model.fcn.features[1]
    before = bn.running_mean.clone()
    model(torch.rand(2, 3, 64, 64), 1)
    assert torch.equal(bn.running_mean, before) and not bn.training
    assert model.fcn.out_norm.training  # the last layer still trains


def test_cli_trains_the_people_configuration(tmp_path):
    from ris_lite.cli import main

    out = tmp_path / "run"
    assert main(["train", "--data", "people", "--out", str(out), "--max-steps", "2", "--fcn-width", "0.0625",
                 "--input-size", "64,64", "--batch-size", "2", "--val-images", "2", "--quiet"]) == 0
    state = torch.load(out / "last.pt", weights_only=True)
    cfg = state["config"]
    assert cfg["source"] == "people" and cfg["model"]["lstm_kernel"] == 1
    assert cfg["model"]["fcn_variant"] == "fcn8s" and cfg["model"]["fcn_batch_norm"] is True
    assert main(["train", "--data", "synthetic", "--freeze-fcn", "--out", str(tmp_path / "x")]) == 2


def test_score_people_end_to_end_on_a_tiny_model():
    from ris_lite.evaluation.people_eval import occlusion_summary, score_people

    torch.manual_seed(0)
    model = RIS(people_model_config(width=1 / 16, input_size=(64, 64), batch_norm=True)).eval()
    ds = PeopleDataset("test", length=3, size=(64, 64))
    out = score_people(model, ds, {"threshold": 0.3, "min_area": 10}, max_steps=3)
    for key in ("ris", "baseline", "oracle_foreground"):
        assert 0.0 <= out[key]["ap50"] <= 1.0 and 0.0 <= out[key]["ap_mean"] <= 1.0
    assert out["oracle_foreground"]["ap50"] > 0  # isolated figures are found by the oracle
    assert len(out["occlusion"]) == 3 and len(out["ris_labels"]) == 3
    with pytest.raises(ValueError, match="two figures"):
        occlusion_summary([{"tau": float("nan"), "matched": 1, "front_first": None}])


def test_cli_refuses_people_data_where_it_has_no_meaning(tmp_path):
    from ris_lite.cli import main

    assert main(["predict", "--data", "people", "--out", str(tmp_path)]) == 2
    assert main(["score", "--data", "people", "--predictions", str(tmp_path)]) == 2
    assert main(["evaluate", "--data", "people", "--crf-backend", "exact"]) == 2  # needs --crf
