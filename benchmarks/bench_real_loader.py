"""Training throughput on a real-format folder vs on the synthetic rosettes, same input size.

Two trainers, identical but for the data: synthetic A1-like plants, and a CVPPP-format folder
(530 x 500 RGBA PNGs, palette labels) of A1-like plants read at the model's 106 x 100. Both
unroll the same 8 steps on every image (plants of 11-20 leaves), so the only difference is
where the batches come from. The arms alternate in chunks of steps within one run; the
training images/s of each is printed with their ratio (goal: the folder within 10 % of the
synthetic rate), and so is the decode cost that the folder's in-memory cache removes.

    python benchmarks/bench_real_loader.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import ris_lite
from ris_lite.data.cvppp import write_plant
from ris_lite.training.config import TrainConfig
from ris_lite.training.trainer import Trainer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plants", type=int, default=16)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--chunk", type=int, default=10, help="steps per arm per round")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/bench_loader")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    folder = Path(a.out) / "A1_like"
    for k in range(a.plants):
        if not (folder / f"plant{k:03d}_rgb.png").is_file():
            write_plant(folder, f"plant{k:03d}", *ris_lite.make_rosette(500_000 + k, size=(530, 500), zoom=1.0))

    uncached = ris_lite.CVPPP(folder, size=(106, 100), zoom=1.8, cache=False)
    t = time.perf_counter()
    for i in range(len(uncached)):
        uncached[i]
    decode = (time.perf_counter() - t) / len(uncached)
    t = time.perf_counter()
    for k in range(a.plants):
        ris_lite.make_rosette(k)
    render = (time.perf_counter() - t) / a.plants
    print(f"per image: decode + crop + resize of a 530x500 A1 file {1000 * decode:.1f} ms; "
          f"rendering a synthetic plant {1000 * render:.1f} ms (both cached in memory by the trainer)")

    common = dict(batch_size=4, eval_every=10 ** 9, train_images=a.plants, curriculum=[[8, 11, 20], [22, 11, 20]])  # stays at stage 0
    trainers = {
        "synthetic": Trainer(TrainConfig(**common), Path(a.out) / "synthetic"),
        "folder": Trainer(TrainConfig(**common, source=f"cvppp:{folder}", data={"zoom": 1.8}, val_fraction=0.2),
                          Path(a.out) / "folder"),
    }
    for t in trainers.values():  # warm-up: fill the caches, settle the allocator
        for _ in range(len(t._dataset("train", 0))):
            t.train_step()
    seconds = {k: 0.0 for k in trainers}
    images = {k: 0 for k in trainers}
    for _ in range(a.rounds):
        for name, t in trainers.items():
            start = time.perf_counter()
            for _ in range(a.chunk):
                t.train_step()
            seconds[name] += time.perf_counter() - start
            images[name] += a.chunk * t.config.batch_size
    rate = {k: images[k] / seconds[k] for k in trainers}
    for k, r in rate.items():
        print(f"{k:>9}: {r:.2f} training images/s ({images[k]} images)")
    print(f"folder / synthetic = {rate['folder'] / rate['synthetic']:.3f} (goal >= 0.90)")


if __name__ == "__main__":
    main()
