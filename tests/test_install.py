"""Regression guard for the install: no CUDA wheels on a machine that has no GPU (issue 18).

A hard-pinned torch that the machine does not keep locally makes pip fetch the CUDA build and
fifteen ``nvidia-*`` packages (GBs, 20 minutes). That must fail loudly, not pass slowly.
"""

import shutil
from importlib import metadata
from pathlib import Path

import pytest
import torch


def machine_has_nvidia_gpu() -> bool:
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


def cuda_packages() -> list:
    names = {(d.metadata["Name"] or "").lower() for d in metadata.distributions()}
    return sorted(n for n in names if n.startswith("nvidia-") or n in ("triton", "cuda-python"))


@pytest.mark.skipif(machine_has_nvidia_gpu(), reason="this machine has an NVIDIA GPU: CUDA packages belong here")
def test_no_cuda_packages_without_a_gpu():
    found = cuda_packages()
    assert not found, (f"this machine has no GPU, yet the environment holds CUDA packages {found} "
                       f"(torch {torch.__version__}): a torch pin that is not on local disk? See README, "
                       "'Which torch gets installed'")
    assert torch.version.cuda is None, f"torch {torch.__version__} is a CUDA build on a machine without a GPU"


def test_repository_pins_no_torch_version():
    root = Path(__file__).resolve().parents[1]
    for name in ("pyproject.toml", "Makefile", "environment.yml"):
        text = (root / name).read_text()
        assert "torch==" not in text, f"{name} pins a torch version"
    assert not (root / "constraints-cpu.txt").exists()
    assert "torchvision" not in (root / "pyproject.toml").read_text()
