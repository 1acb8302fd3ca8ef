"""``ris-lite train`` (curriculum training, resumable) and ``ris-lite export`` (ship a run).

Explained in the book chapter ``book/06_training``; real data in ``book/10_your_data``, people
in ``book/11_people``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from ..data.people import PEOPLE_SPLITS
from ..data.people_readers import COCOPeople, VOCPeople, coco_image_folder
from ..data.rosette import SPLITS
from ..model.checkpoint import export, load_checkpoint, replace_atomic, run_summary
from ..pretrained import pretrained_path
from ..training.config import TrainConfig
from ..training.curriculum import (
    A1_CURRICULUM,
    PEOPLE_CURRICULUM,
    check_stages,
    people_curriculum,
    real_curriculum,
)
from ..training.distributed import Ranks, close_distributed, init_distributed
from ..training.divergence import TrainingDiverged
from ..training.run_lock import RunFolderBusy, RunLock
from ..training.trainer import Trainer
from .models import new_model_config
from .onnx import export_onnx_cmd
from .options import (
    CLIError,
    check_data,
    check_out_of_data,
    common,
    kind_option,
    model_zoom,
    open_real,
    precision_option,
)
from .resume import check_resume
from .successors import successor_options

#: default learning rates of ``train``: a new model, and fine-tuning one (``--init``), where
#: 2e-3 undid part of what the shipped model knew (benchmarks/bench_finetune.py)
SCRATCH_LR, FINE_TUNE_LR = 2e-3, 5e-4
#: the closest synthetic view ``train --zoom`` draws: at zoom 100 a plant's image held no leaf at all
SYNTHETIC_MAX_ZOOM = 10


def _new_trainer(a, out: Path):
    """A new run from the flags, every one of them checked before anything is written."""
    if (out / "last.pt").exists():
        raise CLIError(f"{out / 'last.pt'} exists: pass --resume auto to continue it, or a new --out")
    model, init = new_model_config(a)
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
        if a.zoom > SYNTHETIC_MAX_ZOOM:
            raise CLIError(f"--zoom must be in (0, {SYNTHETIC_MAX_ZOOM}] for synthetic plants (1: the whole A1 frame; "
                           f"closer, the view holds a leaf or two), got {a.zoom}")
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
    _check_counts(a, curriculum)
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


def _check_counts(a, curriculum) -> None:
    """The counts that depend on the data or the curriculum: scenes per side of a drawn data set
    (more were quietly cut to the split's size) and the stage the score term counts from."""
    splits = {"synthetic": SPLITS, "people": PEOPLE_SPLITS}.get(a.data)
    for side, n in (("train", a.train_images), ("val", a.val_images)):
        have = splits[side][1] - splits[side][0] if splits else n
        if n > have:
            raise CLIError(f"--{side}-images must be in [1, {have}] (the {a.data} {side} split holds {have} "
                           f"scenes), got {n}")
    if a.score_from_stage > len(curriculum):
        raise CLIError(f"--score-from-stage must be in 0..{len(curriculum)} (the curriculum has {len(curriculum)} "
                       f"stage(s); {len(curriculum)}: the score term never counts), got {a.score_from_stage}")


def cmd_train(a) -> int:
    """``train``: a new run, or ``--resume`` one; a diverging run stops with one line."""
    out = Path(a.out)
    if not a.resume:
        check_out_of_data(out, a)
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
        try:
            trainer.run(budget_minutes=a.budget_minutes, max_steps=a.max_steps, progress=not a.quiet,
                        snapshot_minutes=a.snapshot_minutes)
        except TrainingDiverged as e:
            raise CLIError(_diverged_message(e, out)) from None
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


def _diverged_message(e: TrainingDiverged, out: Path) -> str:
    """The trainer's account of a divergence in the flags' words, and what is left in ``out``."""
    flags = ", ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in e.suspects.items())
    left = f"{out / 'last.pt'} is from before it" if (out / "last.pt").exists() else "no last.pt was written"
    return (f"training diverged at step {e.step}: {e.what}; nothing of it was saved ({left}); likely too large: "
            f"{flags}: rerun with a smaller value")


def _resumed_trainer(a, out: Path) -> Trainer:
    """``--resume``: the run of a training checkpoint, refused for a model-only file, for flags
    that differ from its config (``resume.check_resume``), for an ``--out`` that holds another
    run, and when there is nothing left to train."""
    ckpt = out / "last.pt" if Path(a.resume).is_dir() or a.resume == "auto" else Path(a.resume)
    other = [p for p in (out / "last.pt", out / "log.csv") if p.is_file()]
    if other and out.resolve() != ckpt.parent.resolve():  # its last.pt replaced, its log mixed with ours
        raise CLIError(f"--out {out} holds another run ({other[0]}): resuming {ckpt} there would replace it; "
                       f"resume into {ckpt.parent} or into a new folder")
    try:
        check_resume(a, getattr(a, "given", set()), load_checkpoint(ckpt), ckpt)
        trainer = Trainer.resume(ckpt, out, a.device)
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None
    limit = trainer.config.max_steps if a.max_steps is None else a.max_steps
    if trainer.step >= limit:
        whose = "" if a.max_steps is not None else " (the run's own)"
        raise CLIError(f"--max-steps {limit}{whose}: the run is already at step {trainer.step}, nothing to train; "
                       "give a larger --max-steps")
    if a.budget_minutes is not None and trainer.elapsed >= a.budget_minutes * 60:
        raise CLIError(f"--budget-minutes {a.budget_minutes:g}: the run has already trained "
                       f"{trainer.elapsed / 60:.1f} minutes, nothing to train; give a larger --budget-minutes")
    return trainer


def cmd_export(a) -> int:
    """``export``: a run's ``last.pt`` slimmed to ``NAME.pt``, with ``NAME_config.json`` and the
    run's log and curve as ``NAME_log.csv`` / ``NAME_curve.csv``, in ``--out``. Nothing is
    overwritten without ``--force``, the package's own ``pretrained/`` is written only with it,
    and never is the run's own checkpoint or log (``_export_targets``)."""
    if a.onnx is not None:
        if a.run is not None:
            raise CLIError("--run exports a training run, --onnx the graphs of shipped models: give one of them")
        return export_onnx_cmd(a)
    if a.run is None:
        raise CLIError("export needs --run RUN (a training run to ship) or --onnx DIR (ONNX graphs for the browser)")
    run = Path(a.run)
    ckpt = run / "last.pt"
    if not ckpt.is_file():
        raise CLIError(f"no training checkpoint at {ckpt}")
    out = Path(a.out)
    copies = {part: run / f"{part}.csv" for part in ("log", "curve")  # curve.csv: test scores per snapshot
              if (run / f"{part}.csv").is_file()}  # (benchmarks/bench_time_to_target.py)
    model, config = _export_targets(a, out, [ckpt, *copies.values()])
    try:
        export(ckpt, model)
    except ValueError as e:
        raise CLIError(str(e)) from None
    state = load_checkpoint(ckpt)
    replace_atomic(config, lambda tmp: tmp.write_text(run_summary(state)))  # links replaced, not written through
    for part, source in copies.items():
        replace_atomic(out / f"{a.name}_{part}.csv", lambda tmp, source=source: shutil.copyfile(source, tmp))
    print(json.dumps({"exported": str(model), "step": state["trainer"]["step"]}))
    return 0


def _export_targets(a, out: Path, inputs) -> tuple:
    """``(NAME.pt, NAME_config.json)`` in ``--out``, made a folder; a CLIError for a ``--name``
    that is not a plain file name, an ``--out`` that cannot be a folder, a file there that is one
    of the run's own (``inputs``), or one that exists, or the package's ``pretrained/``, without
    ``--force``."""
    if not a.name or a.name.startswith(".") or Path(a.name).name != a.name:
        raise CLIError(f"--name must be a plain file name (no folder, no leading dot), got {a.name!r}")
    names = [f"{a.name}{end}" for end in (".pt", "_config.json", "_log.csv", "_curve.csv")]
    own = [n for n in names if any((out / n).resolve() == p.resolve() for p in inputs)]
    if own:  # even with --force: the next resume would find a slim model where its checkpoint was
        raise CLIError(f"--out {out} --name {a.name} would replace {out / own[0]}, which it exports from: "
                       "choose another --name or --out")
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file, not a folder")
    if out.is_dir() and out.resolve() == pretrained_path().parent.resolve() and not a.force:
        raise CLIError(f"--out {out} is the installed package's shipped models ({out.resolve()}): "
                       "pass --force to write there")
    there = [n for n in names if (out / n).exists() or (out / n).is_symlink()]
    if there and not a.force:
        raise CLIError(f"--out {out} already holds {', '.join(there)}: pass --force to replace, or choose another "
                       "--name or --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"--out {out}: cannot make that folder ({e.strerror or e})") from None
    return out / names[0], out / names[1]


def add_parser(sub) -> None:
    """The ``train`` and ``export`` sub-commands."""
    t = sub.add_parser("train", help="curriculum training; writes OUT/last.pt and OUT/log.csv")
    common(t)
    successor_options(t)
    t.add_argument("--out", default="runs/ris", help="output folder")
    kind_option(t)
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
    x.add_argument("--run", default=None, help="a training output folder (holds last.pt, log.csv)")
    x.add_argument("--onnx", default=None, metavar="DIR",
                   help="instead of --run: write the ONNX graphs of the book's in-browser page into DIR (ours): "
                        "the RIS of --model as ris_fcn.onnx + ris_step.onnx, the embedding model, settings.json")
    x.add_argument("--model", default=None,
                   help="--onnx: the RIS to export, a shipped name or a checkpoint (default: the default model, with "
                        "its assembly)")
    x.add_argument("--embedding", default="rosettes_embedding",
                   help="--onnx: the embedding model exported beside it ('none': no embedding graph)")
    x.add_argument("--out", default="exported",
                   help="folder to write (default: ./exported; to ship a model: --out ris_lite/pretrained --force)")
    x.add_argument("--name", default="rosettes", help="file name stem: NAME.pt, NAME_config.json, NAME_log.csv")
    x.add_argument("--force", action="store_true",
                   help="replace files that exist, and allow writing into the installed package's pretrained/")
    x.set_defaults(func=cmd_export)
