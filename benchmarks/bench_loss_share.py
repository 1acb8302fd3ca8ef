"""Share of a training step spent in the loss (eq. 5 with Hungarian matching).

Goal: <= 10 % at the default resolution (106 x 100) and the recipe's batch size.
Prints one line per batch size: step time, loss time (forward + backward of ris_loss alone,
matching included) and their ratio, all measured in this run.

    python benchmarks/bench_loss_share.py
"""

from __future__ import annotations

import time
from functools import partial

import torch

import ris_lite
from ris_lite.data.augment import collate_instances


def timed(fn, reps):
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def train_step(model, images, targets, counts, lengths, steps):
    masks, logits = model(images, steps, score_logits=True)
    loss = ris_lite.ris_loss(masks, logits, targets, counts, lengths=lengths, scores_are_logits=True)
    model.zero_grad()
    loss.backward()


def loss_only(masks, logits, targets, counts, lengths):
    m, s = masks.clone().requires_grad_(), logits.clone().requires_grad_()
    ris_lite.ris_loss(m, s, targets, counts, lengths=lengths, scores_are_logits=True).backward()


def main(steps: int = 22, reps: int = 3) -> None:
    torch.manual_seed(0)
    model = ris_lite.RIS()
    data = ris_lite.RosetteDataset("val", length=8)
    print(f"device cpu, threads {torch.get_num_threads()}, input 106x100, T={steps}")
    for batch in (1, 4, 8):
        images, targets, counts = collate_instances([data[i] for i in range(batch)])
        lengths = torch.clamp(counts + 2, max=steps)
        with torch.no_grad():
            masks, logits = model(images, steps, score_logits=True)
        t_step = timed(partial(train_step, model, images, targets, counts, lengths, steps), reps)
        t_loss = timed(partial(loss_only, masks, logits, targets, counts, lengths), reps * 3)
        print(f"batch {batch}: step {t_step * 1e3:7.1f} ms, loss {t_loss * 1e3:6.1f} ms, "
              f"loss share {t_loss / t_step:.1%} (goal <= 10%)")


if __name__ == "__main__":
    main()
