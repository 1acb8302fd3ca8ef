"""Training images/s: the batched, fused implementation vs a paper-faithful loop.

* fused: batch 4 through ``collate_instances``, ``ConvLSTMCell`` (one convolution for the
  four gates, input half precomputed once per sequence), one batched ``ris_loss``;
* the same with bf16 autocast on the CPU (``TrainConfig.cpu_bf16``; pays off on CPUs with
  AVX512-BF16 or AMX, costs on older ones);
* paper-faithful: batch 1, ``ConvLSTMCellEq1`` (eight convolutions per cell, eq. 1 as
  written), the loss computed image by image.

Same model size, same data, same sequence lengths (min(L, n+2) with L = 22, A1 plants).
Prints both rates and their ratio, measured in this run (goal >= 5x on CPU), and the
floating-point work per image counted by ``torch.utils.flop_counter`` (forward + backward),
which says how close each arm runs to the machine's arithmetic peak: both arms do the same
convolutions, so the speed-up can only come from running them more efficiently.

    python benchmarks/bench_train_speed.py
"""

from __future__ import annotations

import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import ris_lite
from ris_lite.augment import collate_instances
from ris_lite.train import clip_gradients


def make_model(literal: bool) -> ris_lite.RIS:
    torch.manual_seed(0)
    model = ris_lite.RIS()
    if literal:
        fused = model.lstm.cells
        model.lstm = ris_lite.ConvLSTM(30, 30, 2, 3, cell=ris_lite.ConvLSTMCellEq1)
        for a, b in zip(model.lstm.cells, fused):
            a.load_from_fused(b)
    return model


def train_step(model, opt, chunk, L: int = 22, bf16: bool = False) -> None:
    images, targets, counts = collate_instances(chunk)
    lengths = torch.clamp(counts + 2, max=L)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        masks, logits = model(images, int(lengths.max()), score_logits=True)
    loss = ris_lite.ris_loss(masks.float(), logits.float(), targets, counts, lengths=lengths, scores_are_logits=True)
    opt.zero_grad()
    loss.backward()
    clip_gradients(model, 5.0)
    opt.step()


def images_per_second(model, items, batch: int, seconds: float = 40.0, bf16: bool = False) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    done, t0, k = 0, time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        train_step(model, opt, [items[(k + j) % len(items)] for j in range(batch)], bf16=bf16)
        k += batch
        done += batch
    return done / (time.perf_counter() - t0)


def gflop_per_image(model, items, batch: int) -> float:
    """Forward + backward GFLOP per image over the first 8 plants, batched as in training."""
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with FlopCounterMode(display=False) as counter:
        for k in range(0, 8, batch):
            train_step(model, opt, items[k:k + batch])
    return counter.get_total_flops() / 8 / 1e9


def main() -> None:
    data = ris_lite.RosetteDataset("train", length=32)
    items = [data[i] for i in range(len(data))]
    print(f"device cpu, threads {torch.get_num_threads()}, A1 plants at 106x100, L=22")
    paper = images_per_second(make_model(literal=True), items, batch=1)
    ours = images_per_second(make_model(literal=False), items, batch=4)
    print(f"paper-faithful (batch 1, eight-convolution ConvLSTM): {paper:.2f} images/s")
    bf16 = images_per_second(make_model(literal=False), items, batch=4, bf16=True)
    print(f"ris_lite (batch 4, fused ConvLSTM, batched loss):    {ours:.2f} images/s  ({ours / paper:.2f}x)")
    print(f"ris_lite as above + bf16 autocast on the CPU:        {bf16:.2f} images/s  ({bf16 / paper:.2f}x)")
    print("speed-up goal: >= 5x on CPU")
    work_paper = gflop_per_image(make_model(literal=True), items, batch=1)
    work_ours = gflop_per_image(make_model(literal=False), items, batch=4)
    print(f"work per image (forward + backward): paper-faithful {work_paper:.1f} GFLOP, "
          f"ris_lite {work_ours:.1f} GFLOP (padding to the longest plant of a batch)")
    print(f"achieved: paper-faithful {paper * work_paper:.0f} GFLOP/s, ris_lite fp32 {ours * work_ours:.0f} GFLOP/s, "
          f"bf16 {bf16 * work_ours:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
