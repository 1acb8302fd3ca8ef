"""The GPU path, run wherever a CUDA device is present (skipped on CPU-only machines).

Covers what ``test_devices.py`` cannot on fake tensors: the loss with its Hungarian matching,
training steps of the paper's and the canvas models under ``--precision auto`` (bf16, or fp16
with a GradScaler where the GPU lacks bf16), predict and the CRF, each against the CPU result
at a tolerance derived from the precision used.
"""

import pytest
import torch

from ris_lite import Trainer, ris_loss
from ris_lite.model.crf import CRFConfig, refine
from ris_lite.model.ris import RIS, RISConfig
from ris_lite.training.config import TrainConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _problem(B=2, T=4, N=3, H=16, W=14):
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(B, T, H, W, generator=g)
    scores = torch.rand(B, T, generator=g)
    targets = torch.rand(B, N, H, W, generator=g) > 0.7
    return masks, scores, targets, torch.tensor([3, 2])


def test_loss_on_cuda_equals_the_cpu_loss():
    masks, scores, targets, counts = _problem()
    cpu = ris_loss(masks, scores, targets, counts)
    gpu = ris_loss(masks.cuda(), scores.cuda(), targets.cuda(), counts.cuda())
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-5)  # fp32 both: the same matching


@pytest.mark.parametrize("model", [
    dict(),                                                    # the paper's model
    dict(skip="both"),                                         # ours: boundary skip
    dict(canvas=True),                                         # ours: single-step canvas
    dict(canvas=True, canvas_memory=True),                     # ours: canvas with memory
])
def test_train_steps_run_on_cuda_and_checkpoint(tmp_path, model):
    cfg = TrainConfig(model=RISConfig(input_size=(40, 40), channels=8, **model).to_dict(),
                      data={"size": (40, 40)}, curriculum=[[3, 2, 3]], batch_size=2,
                      train_images=4, val_images=2, eval_every=2, precision="auto")
    t = Trainer(cfg, tmp_path, device="cuda")
    assert t.device.type == "cuda" and next(t.model.parameters()).is_cuda
    for _ in range(3):
        out = t.train_step()
        assert torch.isfinite(torch.tensor(out["loss"]))
    t.save()
    resumed = Trainer.resume(tmp_path / "last.pt", device="cuda")
    assert resumed.step == t.step


def test_predict_on_cuda_matches_the_cpu():
    torch.manual_seed(0)
    model = RIS(RISConfig(input_size=(40, 40), channels=8))
    images = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        cpu_masks, _ = model(images, 3)
        gpu_masks, _ = model.cuda()(images.cuda(), 3)
    # fp32 on both, TF32 allowed in cuDNN convolutions: ~1e-3 relative per layer
    torch.testing.assert_close(gpu_masks.cpu(), cpu_masks, rtol=1e-2, atol=1e-2)
    labels = model.predict(images, max_steps=3)
    assert all(lab.device.type == "cpu" and lab.dtype == torch.int64 for lab in labels)


def test_crf_on_cuda_matches_the_cpu():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 30, 28, generator=g)
    masks = torch.rand(3, 30, 28, generator=g) ** 2
    config = CRFConfig(appearance_xy=4.0, appearance_rgb=0.2, kernel_dtype="float32")
    cpu, gpu = refine(image, masks, config), refine(image.cuda(), masks.cuda(), config)
    agree = (cpu == gpu.cpu()).float().mean()
    assert agree >= 0.99, agree  # float32 kernels; a few ties may flip


def test_auto_precision_follows_torchs_native_bf16_rule():
    """bf16 where this GPU computes it natively (torch's own answer without emulation), else fp16."""
    from ris_lite.precision import resolve_precision

    native = torch.cuda.is_bf16_supported(including_emulation=False)
    assert resolve_precision("auto", "cuda") == ("bf16" if native else "fp16")
