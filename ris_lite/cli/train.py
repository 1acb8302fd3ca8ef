"""``ris-lite train`` (curriculum training, resumable) and ``ris-lite export`` (ship a run).

Explained in the book chapter ``book/06_training``; real data in ``book/10_your_data``, people
in ``book/11_people``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..data.people_readers import COCOPeople, VOCPeople, coco_image_folder
from ..model.checkpoint import export, load_checkpoint, run_summary
from ..model.fcn import FCN
from ..model.kinds import kind_of
from ..model.people import people_model_config
from ..model.ris import RIS, RISConfig
from ..pretrained import load_model
from ..training.config import TrainConfig
from ..training.curriculum import (
    A1_CURRICULUM,
    PEOPLE_CURRICULUM,
    check_stages,
    people_curriculum,
    real_curriculum,
)
from ..training.distributed import Ranks, close_distributed, init_distributed
from ..training.run_lock import RunFolderBusy, RunLock
from ..training.trainer import Trainer
from .options import (
    CLIError,
    check_data,
    common,
    input_size_of,
    is_people,
    model_zoom,
    open_real,
    precision_option,
)
from .resume import check_resume
from .successors import successor_model_config, successor_options

#: default learning rates of ``train``: a new model, and fine-tuning one (``--init``), where
#: 2e-3 undid part of what the shipped model knew (benchmarks/bench_finetune.py)
SCRATCH_LR, FINE_TUNE_LR = 2e-3, 5e-4


def _new_model_config(a):
    """The model of a new run: the --init checkpoint's, or one built from the flags."""
    if a.model_kind != "ris" or a.queries is not None or a.embed_dim is not None:
        return successor_model_config(a)  # ours: RIS's successor families
    if a.init:
        try:
            init = load_model(a.init)
        except (FileNotFoundError, ValueError) as e:
            raise CLIError(f"--init: {e}") from None
        if kind_of(init) != "ris":
            raise CLIError(f"--init {a.init} holds a {kind_of(init)} model: pass --model-kind {kind_of(init)}")
        flags = [f for f, on in (("--feedback", a.feedback), ("--coords", a.coords), ("--canvas", a.canvas),
                                 ("--canvas-memory", a.canvas_memory), ("--input-size", a.input_size)) if on]
        if flags:
            raise CLIError(f"{flags[0]} does not combine with --init (the model comes from the checkpoint)")
        # zero-initialised options: the new model starts as the --init one
        added = {k: v for k, v in _count_options(a).items() if v}
        if a.skip != "none":
            if init.config.skip not in ("none", a.skip):
                raise CLIError(f"--skip {a.skip}: the --init model already has skip={init.config.skip!r}")
            added["skip"] = a.skip
        if added:
            try:
                return RISConfig.from_dict({**init.config.to_dict(), **added}), init
            except ValueError as e:
                raise CLIError(f"--init with {', '.join(added)}: {e}") from None
        return init.config, init
    if is_people(a.data):  # the paper's people configuration (FCN-8s, 1x1 gates), scaled by --fcn-width
        if any(_count_options(a).values()):
            raise CLIError("--union-input and --score-sees-union are options of the plant model, not of --data people")

        if a.fcn_width <= 0:
            raise CLIError(f"--fcn-width must be positive, got {a.fcn_width}")
        size = input_size_of(a) or ((128, 128) if a.data == "people" else (500, 500))
        # from scratch the FCN needs BatchNorm; ImageNet weights are plain VGG16 unless asked
        batch_norm = (not a.imagenet) if a.fcn_batch_norm is None else a.fcn_batch_norm
        return people_model_config(a.fcn_width, size, batch_norm=batch_norm), None
    if a.imagenet or a.freeze_fcn or a.fcn_batch_norm is not None:
        raise CLIError("--imagenet, --freeze-fcn and --fcn-batch-norm belong to the people configuration "
                       "(--data people)")
    if a.channels < 1:
        raise CLIError(f"--channels must be a positive integer, got {a.channels}")
    if a.fcn_stride < 1:
        raise CLIError(f"--fcn-stride must be >= 1, got {a.fcn_stride}")
    size = {"input_size": input_size_of(a)} if a.input_size else {}
    try:
        dilations = tuple(int(v) for v in a.fcn_dilations.split(","))
        model = RISConfig(feedback=a.feedback, fcn_dilations=dilations, channels=a.channels, coords=a.coords,
                          canvas=a.canvas or a.canvas_memory, canvas_memory=a.canvas_memory,
                          fcn_stride=a.fcn_stride, **size)
        FCN(model.in_channels, model.channels, model.fcn_stride, model.fcn_variant, dilations=dilations)
    except ValueError:
        raise CLIError(f"--fcn-dilations must be four integers >= 1 like '1,2,4,8', got {a.fcn_dilations!r}") from None
    model = RISConfig.from_dict({**model.to_dict(), **_count_options(a)})
    if (a.canvas or a.canvas_memory) and (a.feedback or a.coords):
        raise CLIError("--canvas does not combine with --feedback or --coords")
    if a.skip != "none":
        if a.canvas or a.canvas_memory:
            raise CLIError("--skip does not combine with --canvas")
        model = RISConfig.from_dict({**model.to_dict(), "skip": a.skip})
    try:
        RIS(model)  # the model's own checks of its options (the union options with a canvas, ...)
    except ValueError as e:
        raise CLIError(str(e)) from None
    return model, None


def _count_options(a) -> dict:
    """The model options of ``ris_lite.model.counting`` (ours) asked for on the command line."""
    return {"union_input": a.union_input, "score_sees_union": a.score_sees_union}


def _new_trainer(a, out: Path):

    if (out / "last.pt").exists():
        raise CLIError(f"{out / 'last.pt'} exists: pass --resume auto to continue it, or a new --out")
    if not 0 < a.val_fraction < 1:
        raise CLIError(f"--val-fraction must be in (0, 1), got {a.val_fraction}")
    model, init = _new_model_config(a)
    data, real, folder = {}, None, {}
    if a.data == "people":
        data["size"] = list(model.input_size)
        curriculum = [list(s) for s in PEOPLE_CURRICULUM]
    elif a.data.startswith(("voc:", "coco:")):
        path = a.data.partition(":")[2]
        try:
            reader = (VOCPeople(path, "train", cache=False) if a.data.startswith("voc:")
                      else COCOPeople(path, coco_image_folder(path), cache=False))
            counts = reader.instance_counts()
        except (FileNotFoundError, ValueError, ImportError) as e:
            raise CLIError(str(e)) from None
        curriculum = people_curriculum(counts)
    elif a.data != "synthetic":
        check_data(a.data)
        # the scale: as asked, else the --init model's (what it learned), else the whole frame
        zoom = a.zoom if a.zoom is not None else (model_zoom(init) if init is not None else 1.0)
        data["zoom"] = zoom
        if a.frame != "whole":  # the plant box's size differs per image; a batch needs one size
            raise CLIError("--frame plant is for predict, evaluate and score: training reads whole frames "
                           "(one size per folder, so images batch)")
        real = open_real(a, model.input_size, zoom)
        if a.data.startswith("folder:"):
            folder = {"image_pattern": a.image_pattern, "label_pattern": a.label_pattern}
        try:
            counts = real.instance_counts()  # decodes and checks every file before anything is written
        except (FileNotFoundError, ValueError) as e:
            raise CLIError(str(e)) from None
        curriculum = real_curriculum(counts, fine_tune=init is not None)
    elif a.zoom is not None:
        data["zoom"] = a.zoom
        curriculum = [list(s) for s in A1_CURRICULUM]
    else:
        data = dict(getattr(init, "data_options", {}) or {})
        curriculum = [list(s) for s in A1_CURRICULUM]
    if a.style != "a1":
        if a.data != "synthetic":
            raise CLIError("--style draws the synthetic plants' look: it needs --data synthetic")
        data["style"] = a.style
    if a.curriculum:
        try:
            curriculum = [[int(v) for v in s.split(",")] for s in a.curriculum.split(";")]
            check_stages(curriculum)
        except ValueError as e:
            raise CLIError(f"--curriculum must look like '2,2,4;4,2,6' (length,lo,hi per stage): {e}") from None
    if a.schedule == "cosine" and a.max_steps is None:
        raise CLIError("--schedule cosine needs --max-steps (the cosine spans the whole run)")
    if not 0 <= a.sampling_final <= 1 or not 0 <= a.sampling_start < 1:
        raise CLIError("--sampling-final must be in [0, 1] and --sampling-start in [0, 1)")
    if min(a.lr_hold_steps, a.overlap_weight, a.monotonic_weight, a.score_from_stage, a.fcn_frozen_stages) < 0:
        raise CLIError("--lr-hold-steps, --overlap-weight, --monotonic-weight, --score-from-stage and "
                       "--fcn-frozen-stages must be >= 0")
    if a.init_fcn and a.init:
        raise CLIError("--init-fcn starts the FCN of a new model; with --init every weight comes from the checkpoint")
    schedule = {"schedule": a.schedule, "warmup_steps": a.warmup_steps, "lr_hold_steps": a.lr_hold_steps,
                "overlap_weight": a.overlap_weight, "monotonic_weight": a.monotonic_weight,
                "score_from_stage": a.score_from_stage, "score_target": a.score_target,
                "fcn_frozen_stages": a.fcn_frozen_stages,
                "sampling_final": a.sampling_final, "sampling_start": a.sampling_start}
    if a.max_steps is not None:
        schedule["max_steps"] = a.max_steps
    lr = a.lr if a.lr is not None else (FINE_TUNE_LR if init is not None else SCRATCH_LR)
    try:
        cfg = TrainConfig(**schedule, model=model.to_dict(), data=data, lr=lr, batch_size=a.batch_size, seed=a.seed,
                          curriculum=curriculum, eval_every=a.eval_every, stage_max_steps=a.stage_max_steps,
                          train_images=a.train_images, val_images=a.val_images, patience=a.patience,
                          precision=a.precision, cpu_bf16=a.cpu_bf16, source=a.data, folder=folder,
                          val_fraction=a.val_fraction, freeze_fcn=a.freeze_fcn, model_kind=a.model_kind)
        trainer = Trainer(cfg, out, a.device, data=real)
        if init is not None:
            trainer.load_weights(a.init)
        if a.init_fcn:
            trainer.load_fcn_weights(a.init_fcn)
        if a.imagenet:
            trainer.model.fcn.load_imagenet()
    except ImportError as e:
        raise CLIError(str(e)) from None
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None
    return trainer


def cmd_train(a) -> int:

    if a.snapshot_minutes is not None and a.snapshot_minutes <= 0:
        raise CLIError(f"--snapshot-minutes must be > 0, got {a.snapshot_minutes}")
    out = Path(a.out)
    # under torchrun: join the other ranks (NCCL on GPUs, gloo on CPUs), each on its own GPU
    a.device = init_distributed(a.device)
    lock = None
    try:
        if Ranks.current().main:  # the rank that writes holds the folder
            lock = _lock(out)
        trainer = _resumed_trainer(a, out) if a.resume else _new_trainer(a, out)
        ranks, batch = trainer.ranks, trainer.config.batch_size
        if ranks.main:  # rank 0 alone prints and writes
            where = f"{trainer.device}" if ranks.world == 1 else (
                f"{ranks.world} ranks ({trainer.device.type}; {ranks.world} x batch {batch} = "
                f"{ranks.world * batch} images a step)")
            print(f"training on {where}; writing {out}/last.pt and {out}/log.csv", file=sys.stderr)
        trainer.run(budget_minutes=a.budget_minutes, max_steps=a.max_steps, progress=not a.quiet,
                    snapshot_minutes=a.snapshot_minutes)
        if ranks.main:
            print(json.dumps({"step": trainer.step, "stage": trainer.stage,
                              "minutes": round(trainer.elapsed / 60, 2), "checkpoint": str(out / "last.pt")}))
    finally:
        if lock is not None:
            lock.release()
        close_distributed()
    return 0


def _lock(out: Path) -> RunLock:
    """Hold ``out`` for this run: two runs writing one folder would mix their logs and lose a
    checkpoint (``training.run_lock``)."""
    lock = RunLock(out)
    try:
        lock.acquire()
    except RunFolderBusy as e:
        raise CLIError(str(e)) from None
    except OSError as e:
        raise CLIError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    return lock


def _resumed_trainer(a, out: Path) -> Trainer:
    """``--resume``: the run of a training checkpoint, refused for a model-only file or for flags
    that differ from its config (``resume.check_resume``)."""
    ckpt = out / "last.pt" if Path(a.resume).is_dir() or a.resume == "auto" else Path(a.resume)
    try:
        check_resume(a, getattr(a, "given", set()), load_checkpoint(ckpt), ckpt)
        return Trainer.resume(ckpt, out, a.device)
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None


def cmd_export(a) -> int:
    import shutil


    run = Path(a.run)
    ckpt = run / "last.pt"
    if not ckpt.is_file():
        raise CLIError(f"no training checkpoint at {ckpt}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        export(ckpt, out / f"{a.name}.pt")
    except ValueError as e:
        raise CLIError(str(e)) from None
    state = load_checkpoint(ckpt)
    (out / f"{a.name}_config.json").write_text(run_summary(state))
    for part in ("log", "curve"):  # curve.csv: test scores per snapshot (benchmarks/bench_time_to_target.py)
        if (run / f"{part}.csv").is_file():
            shutil.copyfile(run / f"{part}.csv", out / f"{a.name}_{part}.csv")
    print(json.dumps({"exported": str(out / f"{a.name}.pt"), "step": state["trainer"]["step"]}))
    return 0


def add_parser(sub) -> None:
    """The ``train`` and ``export`` sub-commands."""
    t = sub.add_parser("train", help="curriculum training; writes OUT/last.pt and OUT/log.csv")
    common(t)
    successor_options(t)
    t.add_argument("--out", default="runs/ris", help="output folder")
    t.add_argument("--budget-minutes", type=float, default=None, help="stop (and save) after this long")
    t.add_argument("--max-steps", type=int, default=None)
    t.add_argument("--resume", default=None, help="'auto' (OUT/last.pt) or a checkpoint path")
    t.add_argument("--init", default=None,
                   help="fine-tune: start from this checkpoint's weights (or a shipped model name, e.g. rosettes)")
    t.add_argument("--input-size", default=None, help="new model's input 'rows,cols' (default 106,100)")
    t.add_argument("--lr", type=float, default=None,
                   help="learning rate (default 2e-3; 5e-4 with --init, measured in benchmarks/bench_finetune.py)")
    t.add_argument("--batch-size", type=int, default=1)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--eval-every", type=int, default=200)
    t.add_argument("--stage-max-steps", type=int, default=1000)
    t.add_argument("--train-images", type=int, default=2000)
    t.add_argument("--val-images", type=int, default=64, help="validation plants for the plateau rule (<= 64)")
    t.add_argument("--patience", type=int, default=3, help="evaluations without a 1%% gain before moving on")
    t.add_argument("--feedback", action="store_true",
                   help="feed earlier masks back into the ConvLSTM (ours, not in the paper)")
    t.add_argument("--coords", action="store_true",
                   help="add each pixel's (y, x) as two input channels (CoordConv; ours, not in the paper)")
    t.add_argument("--fcn-dilations", default="1,1,1,1",
                   help="dilations of the FCN's four 3x3 convolutions ('1,2,4,8' widens its view; ours)")
    t.add_argument("--canvas", action="store_true",
                   help="ours: canvas input, one teacher-forced step per sample (book chapter 12)")
    t.add_argument("--canvas-memory", action="store_true",
                   help="ours: canvas input AND the ConvLSTM memory; whole sequences, teacher-forced canvas")
    t.add_argument("--fcn-stride", type=int, default=2, help="FCN (and mask grid) stride (default 2)")
    t.add_argument("--schedule", default="plateau", choices=["plateau", "cosine"],
                   help="lr schedule: the paper's plateau cuts, or ours: cosine over --max-steps")
    t.add_argument("--lr-hold-steps", type=int, default=0,
                   help="plateau schedule: keep every lr of the last stage at least this many steps (0: cut on "
                        "the first plateau, as before)")
    t.add_argument("--skip", default="none", choices=["none", "input", "mask", "both"],
                   help="ours: a zero-initialised skip of the image's detail into the ConvLSTM input / mask head")
    t.add_argument("--overlap-weight", type=float, default=0.0,
                   help="ours: weight of a penalty on a step's mass where earlier steps painted (0: the paper's loss)")
    t.add_argument("--union-input", action="store_true",
                   help="ours: the detached union of the masks already emitted enters the ConvLSTM (zero-initialised)")
    t.add_argument("--score-sees-union", action="store_true",
                   help="ours: the stop score also sees where the current mask lies against that union")
    t.add_argument("--monotonic-weight", type=float, default=0.0,
                   help="ours: weight of a penalty on a step's score above the previous step's (0: the paper's loss)")
    t.add_argument("--score-from-stage", type=int, default=0,
                   help="ours: the score term of the loss counts from this curriculum stage on (0: the paper)")
    t.add_argument("--score-target", default="count", choices=["count", "painted"],
                   help="ours: the stop score's target, 'count' (the paper: 1 for the first n steps) or 'painted' "
                        "(1 for a step whose mask covers a leaf no earlier step covered, IoU >= 0.5)")
    t.add_argument("--init-fcn", default=None,
                   help="ours: start the plant FCN from this checkpoint's FCN (or a shipped name, e.g. "
                        "rosettes_embedding); the rest of the new model starts fresh")
    t.add_argument("--fcn-frozen-stages", type=int, default=0,
                   help="ours: leave the FCN untrained for the first this many curriculum stages")
    t.add_argument("--warmup-steps", type=int, default=0, help="linear lr warm-up (cosine schedule)")
    t.add_argument("--sampling-final", type=float, default=0.0,
                   help="canvas models: final chance of training on the model's own canvas")
    t.add_argument("--sampling-start", type=float, default=0.3,
                   help="canvas models: fraction of --max-steps where scheduled sampling starts")
    t.add_argument("--style", default="a1", choices=["a1", "random"],
                   help="synthetic plants' look: the benchmark's, or ours: half of them with a random scene and "
                        "camera (the held-out style of `evaluate --style heldout` is never trained on)")
    t.add_argument("--channels", type=int, default=30, help="width d of the FCN and ConvLSTM (default 30)")
    t.add_argument("--snapshot-minutes", type=float, default=None,
                   help="also keep OUT/snapshots/min_MMMM.mm.pt every this many training minutes (for learning curves)")
    precision_option(t, "auto")
    t.add_argument("--cpu-bf16", action="store_true",
                   help="old spelling of --precision bf16 (warns where the CPU emulates bf16)")
    t.add_argument("--curriculum", default=None, help="stages 'L,lo,hi;L,lo,hi;...' (default: A1 curriculum)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--fcn-width", type=float, default=0.125,
                   help="--data people: VGG16 width multiplier of the FCN-8s (1 = VGG16; default 1/8)")
    t.add_argument("--imagenet", action="store_true",
                   help="--data people: start the VGG16 part from ImageNet weights (needs torchvision, width 1)")
    t.add_argument("--fcn-batch-norm", action=argparse.BooleanOptionalAction, default=None,
                   help="--data people: VGG16-BN (default: on from scratch, off with --imagenet)")
    t.add_argument("--freeze-fcn", action="store_true",
                   help="the paper's first people phase: train only the FCN's last layer, ConvLSTM and heads")
    t.set_defaults(func=cmd_train)

    x = sub.add_parser("export", help="slim model + config + log (+ curve) of a run, for shipping (load_pretrained)")
    x.add_argument("--run", required=True, help="a training output folder (holds last.pt, log.csv)")
    x.add_argument("--out", default="ris_lite/pretrained")
    x.add_argument("--name", default="rosettes")
    x.set_defaults(func=cmd_export)
