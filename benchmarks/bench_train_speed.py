"""Training, inference and CRF speed on the machine at hand, against the machine's own peak.

Every figure comes from this one run, on this machine:

1. the CPU (torch's capability, the bf16 flags, what ``--precision auto`` resolves to);
2. a measured peak: a large 3x3 convolution at the ConvLSTM's own shape (60 -> 120 channels,
   53 x 50, batch 32) and a 2048^3 matrix product, in fp32 and bf16;
3. training images/s of the paper-faithful loop (batch 1, the eight convolutions of eq. 1 as
   written, the loss image by image) and of ours (batch 4, fused cell, batched loss), each at
   fp32, bf16 and auto; the work per image counted by ``torch.utils.flop_counter`` gives the
   achieved GFLOP/s and its share of the measured peak (the higher of conv and matmul) of the same precision;
4. the top 3 kernels of one training step (``torch.profiler``);
5. inference plants/s (the shipped model, 30 steps) and seconds per plant of the exact CRF
   (kernel in float32 / bfloat16), at each precision;
6. what was tried to go faster, each against its own baseline in this run: channels_last,
   ``torch.compile`` of the model (needs a C++ compiler: reported and skipped without one),
   one process of 2 threads vs 2 processes of 1 thread, and the share of a step spent
   preparing data (what overlapping it with compute could save at most).

    python benchmarks/bench_train_speed.py [--seconds 15] [--no-compile]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import ris_lite
from ris_lite.data.augment import collate_instances
from ris_lite.model.crf import refine
from ris_lite.precision import autocast, cpu_flags, resolve_precision
from ris_lite.training.trainer import clip_gradients

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


# ----- peaks ---------------------------------------------------------------------------------
def best_seconds(fn, repeats: int = 5) -> float:
    fn()  # warm-up: oneDNN picks and caches its kernels on the first call
    return min(_timed(fn) for _ in range(repeats))


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def conv_peak(precision: str) -> float:
    """GFLOP/s of a 3x3 convolution at the ConvLSTM's gate shape, forward."""
    x = torch.randn(32, 60, 53, 50, dtype=DTYPES[precision])
    w = torch.randn(120, 60, 3, 3, dtype=DTYPES[precision])
    flops = 2 * 32 * 120 * 53 * 50 * 60 * 9
    with torch.no_grad():
        return flops / best_seconds(lambda: F.conv2d(x, w, padding=1)) / 1e9


def matmul_peak(precision: str, n: int = 2048) -> float:
    a, b = torch.randn(n, n, dtype=DTYPES[precision]), torch.randn(n, n, dtype=DTYPES[precision])
    return 2 * n ** 3 / best_seconds(lambda: a @ b) / 1e9


# ----- training ------------------------------------------------------------------------------
def make_model(literal: bool, channels_last: bool = False) -> ris_lite.RIS:
    torch.manual_seed(0)
    model = ris_lite.RIS(fcn_dilations=(1, 2, 4, 8))
    if literal:
        fused = model.lstm.cells
        model.lstm = ris_lite.ConvLSTM(30, 30, 2, 3, cell=ris_lite.ConvLSTMCellEq1)
        for a, b in zip(model.lstm.cells, fused):
            a.load_from_fused(b)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def train_step(model, opt, chunk, precision: str, literal: bool, L: int = 22, channels_last: bool = False) -> None:
    """One optimiser step: the paper's loop takes the loss image by image, ours batched."""
    images, targets, counts = collate_instances(chunk)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    lengths = torch.clamp(counts + 2, max=L)
    with autocast(precision, "cpu"):
        masks, logits = model(images, int(lengths.max()), score_logits=True)
    masks, logits = masks.float(), logits.float()
    if literal:
        loss = sum(ris_lite.ris_loss(masks[i:i + 1], logits[i:i + 1], targets[i:i + 1], counts[i:i + 1],
                                     lengths=lengths[i:i + 1], scores_are_logits=True) for i in range(len(chunk)))
    else:
        loss = ris_lite.ris_loss(masks, logits, targets, counts, lengths=lengths, scores_are_logits=True)
    opt.zero_grad()
    loss.backward()
    clip_gradients(model, 5.0)
    opt.step()


def images_per_second(model, items, batch, precision, literal, seconds, channels_last=False) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    train_step(model, opt, items[:batch], precision, literal, channels_last=channels_last)  # warm-up
    done, k, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        train_step(model, opt, [items[(k + j) % len(items)] for j in range(batch)], precision, literal,
                   channels_last=channels_last)
        k += batch
        done += batch
    return done / (time.perf_counter() - t0)


def gflop_per_image(literal: bool, items, batch: int) -> float:
    """Forward + backward GFLOP per image over the first 8 plants, batched as in training."""
    model = make_model(literal)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with FlopCounterMode(display=False) as counter:
        for k in range(0, 8, batch):
            train_step(model, opt, items[k:k + batch], "fp32", literal)
    return counter.get_total_flops() / 8 / 1e9


def top_kernels(items, precision: str, n: int = 3) -> list:
    from torch.profiler import ProfilerActivity, profile

    model = make_model(False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    train_step(model, opt, items[:4], precision, False)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_step(model, opt, items[4:8], precision, False)
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in rows)
    return [(e.key, round(100 * e.self_cpu_time_total / total, 1)) for e in rows[:n]]


def data_share(items_ds, batch: int, seconds: float) -> float:
    """Share of a training step (ours, fp32) spent drawing and collating its batch."""
    model = make_model(False)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    prep = comp = 0.0
    k, t_end = 0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        chunk = [items_ds[(k + j) % len(items_ds)] for j in range(batch)]  # plants drawn now, not cached
        collate_instances(chunk)
        t1 = time.perf_counter()
        train_step(model, opt, chunk, "fp32", False)
        prep, comp = prep + t1 - t0, comp + time.perf_counter() - t1
        k += batch
    return prep / (prep + comp)


def _worker(seconds: float, queue) -> None:
    torch.set_num_threads(1)
    data = ris_lite.RosetteDataset("train", length=32)
    items = [data[i] for i in range(len(data))]
    queue.put(images_per_second(make_model(False), items, 4, "fp32", False, seconds))


def two_processes(seconds: float) -> float:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(seconds, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    rates = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


# ----- inference and CRF ---------------------------------------------------------------------
def plants_per_second(model, images, precision: str, seconds: float) -> float:
    model.kept_masks(images[:8], precision=precision)  # warm-up
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        model.kept_masks(images[done % len(images):][:8], precision=precision)
        done += 8
    return done / (time.perf_counter() - t0)


def crf_seconds(model, images, kernel_dtype: str) -> float:
    from dataclasses import replace

    # the exact CRF, whose kernel the dtype stores (the library's default backend, auto, takes
    # the lattice at this size)
    config = replace(model.crf_config, kernel_dtype=kernel_dtype, backend="exact")
    kept = [model.kept_masks(im)[0] for im in images]
    refine(images[0], kept[0], config)  # warm-up
    return sorted(_timed(lambda i=i: refine(images[i], kept[i], config)) for i in range(len(images)))[len(images) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=15.0, help="measuring time per training arm")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile arm")
    p.add_argument("--json", default=None, help="also write every figure to this JSON file")
    a = p.parse_args()
    out: dict = {}
    flags = cpu_flags() or set()
    auto = resolve_precision("auto", "cpu")
    out["cpu"] = {"capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
                  "bf16_flags": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile"}), "auto": auto,
                  "torch": torch.__version__}
    print(f"CPU: torch capability {out['cpu']['capability']}, bf16 flags {out['cpu']['bf16_flags'] or 'none'}, "
          f"{out['cpu']['threads']} threads, torch {torch.__version__}; --precision auto -> {auto}")

    peak = {pr: {"conv": conv_peak(pr), "matmul": matmul_peak(pr)} for pr in ("fp32", "bf16")}
    out["peak_gflops"] = peak
    for pr, v in peak.items():
        print(f"measured peak {pr}: conv (ConvLSTM gate shape, batch 32) {v['conv']:.0f} GFLOP/s, "
              f"matmul 2048^3 {v['matmul']:.0f} GFLOP/s")

    data = ris_lite.RosetteDataset("train", length=32)
    items = [data[i] for i in range(len(data))]
    work = {"paper": gflop_per_image(True, items, 1), "ours": gflop_per_image(False, items, 4)}
    out["gflop_per_image"] = work
    print(f"work per image (forward + backward): paper {work['paper']:.1f} GFLOP, ours {work['ours']:.1f} GFLOP")

    train = {}
    print(f"{'training loop':<34} {'images/s':>9} {'x fp32':>7} {'GFLOP/s':>8} {'% of peak':>10}  (peak: the higher of conv and matmul)")
    for loop, literal, batch in (("paper", True, 1), ("ours", False, 4)):
        for pr in ("fp32", "bf16", "auto"):
            used = auto if pr == "auto" else pr
            rate = images_per_second(make_model(literal), items, batch, used, literal, a.seconds)
            gflops = rate * work[loop]
            top = max(peak[used].values())
            train[f"{loop}_{pr}"] = {"images_per_s": rate, "gflops": gflops, "peak_share": gflops / top}
            ratio = rate / train[f"{loop}_fp32"]["images_per_s"]
            print(f"{loop + ' (batch ' + str(batch) + '), ' + pr + (' = ' + used if pr == 'auto' else ''):<34} "
                  f"{rate:>9.2f} {ratio:>7.2f} {gflops:>8.0f} {100 * gflops / top:>11.0f}%")
    out["train"] = train
    print(f"auto / fp32 (ours): {train['ours_auto']['images_per_s'] / train['ours_fp32']['images_per_s']:.2f} "
          "(goal >= 0.95 everywhere, >= 1.3 where bf16 is native)")

    kernels = {pr: top_kernels(items, pr) for pr in dict.fromkeys(("fp32", auto))}
    out["top_kernels"] = kernels
    for pr, rows in kernels.items():
        print(f"top kernels of one training step ({pr}, self CPU time): "
              + "; ".join(f"{k} {s} %" for k, s in rows))

    model = ris_lite.load_pretrained()
    test = ris_lite.RosetteDataset("test", length=16)
    images = torch.stack([test[i][0] for i in range(len(test))])
    infer = {pr: plants_per_second(model, images, pr, a.seconds / 2) for pr in ("fp32", "bf16", "auto")}
    out["inference_plants_per_s"] = infer
    print("inference (shipped model, 30 steps, batch 8): "
          + ", ".join(f"{pr} {v:.1f} plants/s" for pr, v in infer.items()))
    crf = {k: crf_seconds(model, images[:5], k) for k in ("float32", "bfloat16")}
    out["crf_seconds_per_plant"] = crf
    print("exact CRF, seconds per plant (median of 5): " + ", ".join(f"kernel {k} {v:.3f}" for k, v in crf.items()))

    tried = {}
    base = train["ours_fp32"]["images_per_s"]
    cl = images_per_second(make_model(False, channels_last=True), items, 4, "fp32", False, a.seconds, True)
    tried["channels_last_fp32"] = cl / base
    print(f"tried: channels_last (ours, fp32) {cl:.2f} images/s = {cl / base:.2f}x")
    if a.no_compile:
        tried["compile"] = "skipped (--no-compile)"
    elif shutil.which("cc") is None and shutil.which("gcc") is None:
        tried["compile"] = "skipped: no C++ compiler on this machine"
    else:
        try:
            compiled = make_model(False)
            compiled.lstm = torch.compile(compiled.lstm)
            t0 = time.perf_counter()
            rate = images_per_second(compiled, items, 4, "fp32", False, a.seconds)
            tried["compile"] = rate / base
            print(f"tried: torch.compile of the ConvLSTM (ours, fp32) {rate:.2f} images/s = {rate / base:.2f}x "
                  f"(compiling included in the warm-up: {time.perf_counter() - t0 - a.seconds:.0f} s)")
        except Exception as e:  # a missing compiler or an unsupported op: say so, keep going
            tried["compile"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
    if isinstance(tried["compile"], str):
        print(f"tried: torch.compile: {tried['compile']}")
    procs = two_processes(a.seconds)
    tried["two_processes_vs_two_threads"] = procs / base
    print(f"tried: 2 processes x 1 thread (ours, fp32, summed) {procs:.2f} images/s = {procs / base:.2f}x "
          f"one process x {torch.get_num_threads()} threads")
    fresh = ris_lite.RosetteDataset("train", count_sampling="uniform")  # 2,000 plants, drawn on first use
    share = data_share(fresh, 4, a.seconds)
    tried["data_share"] = share
    print(f"tried: drawing + collating the batch takes {100 * share:.1f} % of a step (ours, fp32): "
          f"overlapping it with compute could save at most that")
    out["tried"] = tried
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
