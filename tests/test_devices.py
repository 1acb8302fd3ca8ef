"""Device hygiene without a GPU: every tensor a step creates must live on its inputs' device.

A CPU-only machine cannot run CUDA, but fake tensors on the ``meta`` device carry a device
and no data, and torch refuses to mix them with CPU tensors exactly as it refuses CUDA + CPU.
So each function below runs with its inputs on ``meta``: a tensor it builds on the CPU by
default and then combines with them raises here as it would on a GPU (the canvas split did, in
``_canvas_and_rest``). Data-dependent steps (the Hungarian matching's copy to scipy, ``int()``
of a tensor) cannot run on fake tensors; ``test_model.py`` and ``test_crf.py`` run those on
CUDA when a GPU is present.
"""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorDeviceMismatchError, FakeTensorMode

from ris_lite.model.ris import RIS, RISConfig
from ris_lite.training.canvas import remaining_after, split_done
from ris_lite.training.loss import overlap_penalty, pairwise_soft_iou

META = "meta"


@pytest.fixture
def fake():
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        yield mode


def _leaves(B=2, N=3, H=12, W=10):
    targets = torch.zeros(B, N, H, W, dtype=torch.bool, device=META)
    counts = torch.full((B,), 2, dtype=torch.long, device=META)
    return targets, counts


def test_the_check_catches_a_cpu_tensor_mixed_in(fake):
    targets, _ = _leaves()
    with pytest.raises(FakeTensorDeviceMismatchError):
        targets & torch.ones(3, dtype=torch.bool)[None, :, None, None].expand(2, 3, 1, 1).clone()


def test_canvas_split_stays_on_the_targets_device(fake):
    targets, counts = _leaves()
    canvas, rest, n_rest = split_done(targets, counts)
    assert canvas.device.type == META and rest.device.type == META
    assert n_rest.device.type == "cpu"  # counts are read on the host by the loss
    own = torch.zeros(2, 1, 12, 10, device=META)
    canvas2, rest2, _ = remaining_after(own, targets, counts)
    assert canvas2.device.type == META and rest2.device.type == META


@pytest.mark.parametrize("extra", [{}, {"skip": "both"}, {"feedback": True}, {"coords": True}])
def test_model_forward_stays_on_the_images_device(extra):
    model = RIS(RISConfig(channels=4, input_size=(24, 20), fcn_stride=2, **extra)).to(META)
    with FakeTensorMode(allow_non_fake_inputs=True):  # the weights become fake meta tensors
        masks, scores = model(torch.zeros(2, 3, 24, 20, device=META), steps=3)
    assert masks.device.type == META and scores.device.type == META
    assert masks.shape == (2, 3, 24, 20) and scores.shape == (2, 3)


def test_loss_terms_stay_on_the_masks_device(fake):
    masks = torch.zeros(2, 4, 12, 10, device=META)
    targets, _ = _leaves()
    assert pairwise_soft_iou(masks, targets.float()).device.type == META
    assert overlap_penalty(masks, torch.tensor([4, 3])).device.type == META
