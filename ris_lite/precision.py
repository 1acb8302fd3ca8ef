"""Numeric precision: one setting, ``auto | fp32 | bf16 | fp16``, for training and inference.

Explained in the book chapter ``book/06_training`` (section "How fast, and why").

Mixed precision only pays where the hardware computes in it. On a CPU, bf16 autocast is fast
where the processor has bf16 instructions (AVX512-BF16 or AMX) and several times *slower*
than fp32 where oneDNN has to emulate it (AVX2-only CPUs: most laptops, many cloud machines).
So ``auto`` means:

* CUDA: bf16 autocast where the GPU computes bf16 natively (compute capability 8 and up:
  Ampere and newer), else fp16 autocast with a ``torch.amp.GradScaler``. A T4 (7.5, Colab's
  free GPU) emulates bf16, slowly, and ``torch.cuda.is_bf16_supported()`` counts emulation by
  default: it says True there, so the rule asks the compute capability itself;
* CPU: bf16 autocast only where it runs natively -- the CPU flags name ``avx512_bf16`` or
  ``amx_bf16`` *and* a one-off micro-timing at the model's own convolution shape shows bf16
  faster than fp32 (about 0.1 s, once per process) -- else fp32.

``resolve_precision`` turns a setting into the one used (``"fp32"``, ``"bf16"`` or
``"fp16"``); ``autocast`` opens the matching context. fp32 never autocasts.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import time
import warnings
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_flags() -> Optional[set]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (Linux), or ``None`` where unknown."""
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return None
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.partition(":")[2].split())
    return None


def cpu_name(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's model name from ``cpuinfo`` (Linux), else what ``platform`` knows: the
    machine a benchmark's JSON records beside its timings."""
    path = Path(cpuinfo)
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def bf16_speedup(repeats: int = 3) -> float:
    """fp32 time / bf16-autocast time of a 3x3 convolution at RIS's shapes (batch 4, 30 -> 120
    channels, 53 x 50: one ConvLSTM gate convolution), forward and backward, on this CPU.
    Above 1 where bf16 is native; well below 1 where it is emulated."""
    def timed(enabled: bool) -> float:
        best = float("inf")
        for _ in range(repeats + 1):  # the first call warms oneDNN's kernel cache up
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
                y = F.conv2d(x, w, padding=1)
            y.float().sum().backward()
            best = min(best, time.perf_counter() - t0)
        return best

    # the first caller may be inference code (no_grad / inference_mode): time with autograd on
    with torch.inference_mode(False), torch.enable_grad():
        g = torch.Generator().manual_seed(0)
        x = torch.randn(4, 60, 53, 50, generator=g, requires_grad=True)
        w = torch.randn(120, 60, 3, 3, generator=g, requires_grad=True)
        return timed(False) / timed(True)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True where bf16 autocast runs natively on this CPU (cached for the process)."""
    flags = cpu_flags()
    if flags is not None and platform.machine() in ("x86_64", "AMD64"):
        if not flags & {"avx512_bf16", "amx_bf16"}:
            return False  # AVX2 / plain AVX512: oneDNN emulates bf16, no need to time it
    return bf16_speedup() > 1.1


def cuda_has_native_bf16(device: torch.device | str | None = None) -> bool:
    """True where the GPU ``device`` computes bf16 natively: compute capability 8 or more
    (``torch.cuda.is_bf16_supported(including_emulation=False)``'s rule)."""
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


def native_bf16(device: torch.device | str) -> bool:
    """Whether bf16 runs natively, so faster than fp32, on ``device``: the one rule behind
    ``auto`` here and the CRF's kernel choice (``ris_lite.model.crf_kernels``)."""
    device = torch.device(device)
    if device.type == "cuda":
        return cuda_has_native_bf16(device)
    return device.type == "cpu" and cpu_has_native_bf16()


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``precision`` (one of ``PRECISIONS``) on ``device`` -> the precision used: ``"fp32"``,
    ``"bf16"`` or ``"fp16"``. Raises ``ValueError`` for an unknown name or fp16 on a CPU."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    if device.type == "cuda":
        if precision == "auto":
            return "bf16" if native_bf16(device) else "fp16"
        return precision
    if precision == "fp16":
        raise ValueError("precision 'fp16' is for CUDA (with a gradient scaler); on a CPU use fp32, bf16 or auto")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


@functools.cache
def warn_if_emulated(precision: str, device_type: str) -> None:
    """One warning per process when bf16 was asked for on a CPU or GPU that emulates it."""
    if precision != "bf16" or device_type not in ("cpu", "cuda") or native_bf16(device_type):
        return
    if device_type == "cpu":
        warnings.warn("bf16 on this CPU is emulated (no AVX512-BF16/AMX) and runs several times slower "
                      "than fp32; use --precision auto or fp32", RuntimeWarning, stacklevel=3)
    else:
        warnings.warn("bf16 on this GPU is emulated (compute capability below 8, e.g. a T4) and runs slower "
                      "than fp16; use --precision auto (fp16 with a gradient scaler)", RuntimeWarning, stacklevel=3)


def autocast(precision: str, device: torch.device | str):
    """The autocast context of a *resolved* precision (``resolve_precision``'s result)."""
    device = torch.device(device)
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in DTYPES:
        raise ValueError(f"autocast needs a resolved precision (fp32, bf16, fp16), got {precision!r}")
    return torch.autocast(device.type, dtype=DTYPES[precision])


def grad_scaler(precision: str, device: torch.device | str) -> Optional[torch.amp.GradScaler]:
    """A ``GradScaler`` for fp16 on CUDA (its small exponent range underflows gradients), else None."""
    device = torch.device(device)
    if precision == "fp16" and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None
