"""Several ranks (``ris_lite.training.distributed``), on CPU processes with gloo: two ranks of
batch 2 train as one process of batch 4 on the same images, resume from rank 0's checkpoint,
survive a parameter unused at some step, and only rank 0 writes; each rank trains on its own
share of the data. Run with ``OMP_NUM_THREADS=1`` (the workers also keep to one thread)."""

import json
import os
import shutil
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_train import tiny_config

from ris_lite import Trainer
from ris_lite.data.augment import collate_instances
from ris_lite.model.checkpoint import load_checkpoint
from ris_lite.training import distributed
from ris_lite.training.config import TrainConfig
from ris_lite.training.distributed import Ranks

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "fixtures"
STEPS = 4  # two validations (eval_every 2): the curriculum and plateau rule run on reduced losses


def _config(batch_size: int) -> TrainConfig:
    # val_images 3: the ranks hold 2 and 1 of them, so the reduction must weight by count
    return tiny_config(batch_size=batch_size, precision="fp32", val_images=3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _recording(t: Trainer) -> dict:
    """Keep what ``t`` draws (``(images, targets, counts)``) and the gradients its optimiser
    steps on (after DDP's averaging and clipping), step by step."""
    seen, draw, step = {"batches": [], "grads": []}, t._batch, t.optimizer.step

    def batch():
        seen["batches"].append(draw())
        return seen["batches"][-1]

    def optimizer_step(*args, **kwargs):
        seen["grads"].append({n: p.grad.clone() for n, p in t.model.named_parameters()})
        return step(*args, **kwargs)

    t._batch, t.optimizer.step = batch, optimizer_step
    return seen


def _skip_score_head_once(t: Trainer, rank: int) -> None:
    """On rank 1, step 1 scores from the ConvLSTM state without the score head: its weights
    get no gradient there (as a head left out of a loss would), on one rank only."""
    head, real = t.model.confidence, t.model.confidence.forward

    def forward(h, logits=False):
        return h.amax(dim=(1, 2, 3)) if rank == 1 and t.step == 1 else real(h, logits)

    head.forward = forward


def _worker(rank: int, port: int, tmp: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=120))
    try:
        out = {}
        # each rank its own folder: only rank 0's may come to exist
        t = Trainer(_config(2), tmp / f"out{rank}", device="cpu")
        seen = _recording(t)
        t.run(max_steps=STEPS, progress=False)
        out.update(**seen, weights=t.model.state_dict(), val=t.validate(), images_seen=t.images_seen, gen=t.gen.get_state(),
                   stage=t.stage, best_val=t.best_val, events=t.events)
        # a shared folder, as under torchrun: half the steps, then resumed from rank 0's checkpoint
        Trainer(_config(2), tmp / "shared", device="cpu").run(max_steps=STEPS // 2, progress=False)
        dist.barrier()  # rank 0 has written last.pt
        resumed = Trainer.resume(tmp / "shared" / "last.pt", device="cpu").run(max_steps=STEPS, progress=False)
        out.update(resumed=resumed.model.state_dict(), resumed_step=resumed.step)
        u = Trainer(_config(2), tmp / f"unused{rank}", device="cpu")
        _skip_score_head_once(u, rank)
        u.run(max_steps=2, progress=False)
        out["unused"] = u.model.state_dict()
        torch.save(out, tmp / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """One spawn of two gloo ranks on 127.0.0.1 for the tests below; their results by rank."""
    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), tmp), nprocs=2)
    return tmp, [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(2)]


def _merged(batches_0: list, batches_1: list) -> list:
    """Each step's two rank batches as one batch of 4 (rank 0's images first)."""
    merged = []
    for (im0, tg0, n0), (im1, tg1, n1) in zip(batches_0, batches_1):
        items = [(im, tg[:n]) for im, tg, n in zip(torch.cat([im0, im1]), [*tg0, *tg1], torch.cat([n0, n1]).tolist())]
        merged.append(collate_instances(items))
    return merged


#: the bias of the mask head's 1x1 convolution shifts every logit of the log-softmax of eq.
#: (4.1) alike, which the softmax cancels: the loss does not depend on it at all
SHIFT_INVARIANT = {"inhibition.conv.bias"}


def test_two_ranks_of_batch_2_train_as_one_process_of_batch_4(two_ranks, tmp_path):
    tmp, (r0, r1) = two_ranks
    images_0 = torch.cat([b[0] for b in r0["batches"]])
    images_1 = torch.cat([b[0] for b in r1["batches"]])
    assert not any(torch.equal(a, b) for a in images_0 for b in images_1)  # the ranks drew different plants
    assert not torch.equal(r0["gen"], r1["gen"])  # from streams of their own (not the same picks and angles)
    ref = Trainer(_config(4), tmp_path, device="cpu")
    seen = _recording(ref)
    feed = iter(_merged(r0["batches"], r1["batches"]))
    ref._batch = lambda: next(feed)
    ref.run(max_steps=STEPS, progress=False)
    # the first step, from the same weights: the gradient of the mean loss over all 4 images
    for k, g in seen["grads"][0].items():
        torch.testing.assert_close(r0["grads"][0][k], g, rtol=1e-4, atol=1e-7, msg=k)
        assert torch.equal(r0["grads"][0][k], r1["grads"][0][k]), k
    # after every step: the same weights on both ranks, and the one process's up to float noise;
    # Adam's normalised step turns noise in a near-zero gradient into up to lr per step, so the
    # tolerance is a tenth of one step
    for k, v in ref.model.state_dict().items():
        assert torch.equal(r0["weights"][k], r1["weights"][k]), k
        if k in SHIFT_INVARIANT:  # its exact gradient is 0: Adam turns pure float noise into steps
            assert seen["grads"][0][k].abs().max() < 1e-6, k
            continue
        torch.testing.assert_close(r0["weights"][k], v, rtol=0, atol=0.1 * ref.config.lr, msg=k)
    # validation: each rank scored its share (2 and 1 images); the reduced loss is the whole set's
    assert r0["val"] == r1["val"]
    assert r0["val"] == pytest.approx(ref.validate(), rel=1e-5)
    assert r0["best_val"] == pytest.approx(ref.best_val, rel=1e-5)
    assert (r0["stage"], [e["event"] for e in r0["events"]]) == (ref.stage, [e["event"] for e in ref.events])
    assert r0["images_seen"] == ref.images_seen == 4 * STEPS
    # the log of rank 0 shows the mean loss over ranks: the loss of the batch of 4
    rows, ref_rows = (list(csvlines(p / "log.csv")) for p in (tmp / "out0", tmp_path))
    assert [r["step"] for r in rows] == [r["step"] for r in ref_rows] and rows
    for row, ref_row in zip(rows, ref_rows):
        assert float(row["loss"]) == pytest.approx(float(ref_row["loss"]), abs=2e-4)


def csvlines(path: Path):
    import csv

    with open(path, newline="") as f:
        yield from csv.DictReader(f)


def test_rank_0_alone_writes(two_ranks):
    tmp, _ = two_ranks
    assert {"last.pt", "last.json", "log.csv"} <= {p.name for p in (tmp / "out0").iterdir()}
    assert not (tmp / "out1").exists() and not (tmp / "unused1").exists()
    state = load_checkpoint(tmp / "out0" / "last.pt")
    assert state["world_size"] == 2 and state["trainer"]["step"] == STEPS


def test_a_two_rank_run_resumes_from_its_checkpoint(two_ranks):
    """Stopped halfway and resumed from rank 0's checkpoint, both ranks draw and train as
    in the uninterrupted run."""
    _, (r0, r1) = two_ranks
    assert r0["resumed_step"] == r1["resumed_step"] == STEPS
    for k, v in r0["weights"].items():
        assert torch.equal(r0["resumed"][k], v) and torch.equal(r1["resumed"][k], v), k


def test_a_parameter_unused_on_one_rank_neither_hangs_nor_desyncs(two_ranks, tmp_path):
    _, (r0, r1) = two_ranks
    for k, v in r0["unused"].items():
        assert torch.equal(r1["unused"][k], v), k
    start = Trainer(_config(2), tmp_path, device="cpu").model.state_dict()["confidence.linear.weight"]
    assert not torch.equal(r0["unused"]["confidence.linear.weight"], start)  # rank 0's gradient still counted


# ----- each rank its own data (no process group needed to look at the shares) ----------------
@pytest.fixture
def as_rank(monkeypatch):
    """Build trainers as rank ``r`` of ``world``: the data they would train on."""
    def make(rank, world, config, out):
        monkeypatch.setattr(distributed.Ranks, "current", classmethod(lambda cls: Ranks(rank, world)))
        return Trainer(config, out, device="cpu")
    return make


def test_a_folder_is_split_across_ranks_without_overlap(as_rank, tmp_path):
    model = {**TrainConfig().model, "input_size": [40, 38]}
    cfg = TrainConfig(source=f"cvppp:{FIXTURES / 'cvppp_a1'}", model=model, data={"zoom": 1.0}, batch_size=3,
                      curriculum=[[30, 0, 40]], val_fraction=0.4, augment=False)
    trainers = [as_rank(r, 2, cfg, tmp_path / f"r{r}") for r in range(2)]
    split = trainers[0].split
    for side in ("train", "val"):
        shares = [t._dataset(side, 0).names for t in trainers]
        assert not set(shares[0]) & set(shares[1]) and sorted(shares[0] + shares[1]) == sorted(split[side])
        assert all(shares)
    # what a rank draws comes from its share only
    for t, other in (trainers, trainers[::-1]):
        mine, theirs = (x._dataset("train", 0) for x in (t, other))
        for image in t._batch()[0]:
            assert any(torch.equal(image, mine[i][0]) for i in range(len(mine)))
            assert not any(torch.equal(image, theirs[i][0]) for i in range(len(theirs)))


def test_procedural_plants_are_shared_out_without_overlap(as_rank, tmp_path):
    cfg = tiny_config(train_images=7, augment=False)
    shares = [as_rank(r, 3, cfg, tmp_path / f"r{r}")._dataset("train", 0) for r in range(3)]
    plants = [[ds[i][0] for i in range(len(ds))] for ds in shares]
    assert [len(p) for p in plants] == [3, 2, 2]
    every = [p for share in plants for p in share]
    assert all(not torch.equal(every[i], every[j]) for i in range(7) for j in range(i))
    one = as_rank(0, 1, cfg, tmp_path / "one")._dataset("train", 0)
    assert all(any(torch.equal(p, one[i][0]) for i in range(7)) for p in every)  # together: the one process's


def test_too_few_training_images_for_the_ranks_is_a_clear_error(as_rank, tmp_path):
    t = as_rank(2, 3, tiny_config(train_images=2), tmp_path)
    with pytest.raises(ValueError, match="2 training image.* cannot be shared by 3 ranks"):
        t._batch()


# ----- the command line under torchrun ---------------------------------------------------------
def test_torchrun_resumes_a_two_rank_run_from_the_command_line(two_ranks, tmp_path):
    """``torchrun --nproc_per_node=2 -m ris_lite train --resume auto``: on with the fixture's
    two-rank checkpoint (step 4) to step 6; rank 0 alone prints and writes."""
    tmp, _ = two_ranks
    out = shutil.copytree(tmp / "shared", tmp_path / "run")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "ris_lite", "train", "--out", str(out), "--device", "cpu",
           "--quiet", "--resume", "auto", "--max-steps", "6"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()  # rank 0's: the curriculum event at step 6, the summary
    assert lines[0].startswith("step 6: advance to stage 1") and len(lines) == 2
    assert json.loads(lines[1])["step"] == 6
    assert done.stderr.count("training on 2 ranks (cpu; 2 x batch 2 = 4 images a step)") == 1
    state = load_checkpoint(out / "last.pt")
    assert state["world_size"] == 2 and state["trainer"]["images_seen"] == 6 * 4
    assert [row["step"] for row in csvlines(out / "log.csv")] == ["2", "4", "6"]
