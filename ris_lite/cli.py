"""``ris-lite train | evaluate | predict | export`` (also ``python -m ris_lite``).

Explained in the book chapters ``book/07_training`` and ``book/08_evaluation``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from .precision import PRECISIONS, resolve_precision, warn_if_emulated

#: default learning rates of ``train``: a new model, and fine-tuning one (``--init``), where
#: 2e-3 undid part of what the shipped model knew (benchmarks/bench_finetune.py)
SCRATCH_LR, FINE_TUNE_LR = 2e-3, 5e-4


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def _check_data(spec: str) -> None:
    if spec in ("synthetic", "people"):
        return
    kind, _, root = spec.partition(":")
    if kind not in ("cvppp", "folder", "voc") or not root:
        raise CLIError(f"--data must be 'synthetic', 'people', 'cvppp:PATH', 'folder:PATH' or 'voc:PATH', got {spec!r}")
    if not Path(root).is_dir():
        raise CLIError(f"--data {spec}: no such folder {root!r}")


def _model_zoom(model) -> float:
    """The scale a model learned: its training data's zoom (synthetic default 1.8)."""
    from .rosette import DEFAULT_ZOOM

    return float((getattr(model, "data_options", None) or {}).get("zoom", DEFAULT_ZOOM))


def _real(a, input_size, zoom: float, require_labels: bool = True):
    """The whole real folder of ``--data``, read at ``input_size`` and ``zoom``."""
    from .folder import open_folder

    patterns = {"image_pattern": a.image_pattern, "label_pattern": a.label_pattern} if a.data.startswith("folder:") else {}
    try:
        return open_folder(a.data, size=input_size and tuple(input_size), zoom=zoom, require_labels=require_labels,
                           **patterns)
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None


def _dataset(a, model, split: Optional[str], require_labels: bool = True):
    """``--data`` as a data set: a synthetic split, or a real folder (all of it, or one side of
    its split by file id)."""
    from .rosette import RosetteDataset

    if _is_people(a.data):
        raise CLIError(f"--data {a.data}: people data is scored by region AP with `ris-lite evaluate`; "
                       "predict and score write and read leaf label files")
    if a.data == "synthetic":
        opts = dict(getattr(model, "data_options", {}) or {})
        try:
            return RosetteDataset(split or "test", length=a.limit, **opts)
        except ValueError as e:
            raise CLIError(str(e)) from None
    _check_data(a.data)
    zoom = a.zoom if a.zoom is not None else _model_zoom(model)
    return _select(a, _real(a, model.config.input_size, zoom, require_labels), split)


def _select(a, ds, split: Optional[str]):
    from .folder import split_ids

    if split == "test":
        raise CLIError("a real folder has no test split: give the test images their own folder, "
                       "or use --split all / train / val")
    names = ds.names if split in (None, "all") else split_ids(ds.names, a.val_fraction)[split]
    return ds.view(names[:a.limit])


def _model(checkpoint: Optional[str], device: Optional[str], name: Optional[str] = None):
    from .pretrained import load_pretrained
    from .train import model_from_checkpoint, pick_device

    if checkpoint is not None and name is not None:
        raise CLIError("pass --checkpoint or --model, not both")
    try:
        dev = pick_device(device)
        if checkpoint is None:
            return load_pretrained(name or "rosettes").to(dev)
        return model_from_checkpoint(checkpoint).to(dev)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        raise CLIError(str(e)) from None


def _new_model_config(a):
    """The model of a new run: the --init checkpoint's, or one built from the flags."""
    from .fcn import FCN
    from .model import RISConfig
    from .train import load_model

    if a.init:
        try:
            init = load_model(a.init)
        except (FileNotFoundError, ValueError) as e:
            raise CLIError(f"--init: {e}") from None
        flags = [f for f, on in (("--feedback", a.feedback), ("--coords", a.coords), ("--canvas", a.canvas),
                                 ("--canvas-memory", a.canvas_memory), ("--input-size", a.input_size)) if on]
        if flags:
            raise CLIError(f"{flags[0]} does not combine with --init (the model comes from the checkpoint)")
        return init.config, init
    if _is_people(a.data):  # the paper's people configuration (FCN-8s, 1x1 gates), scaled by --fcn-width
        from .people import people_model_config

        if a.fcn_width <= 0:
            raise CLIError(f"--fcn-width must be positive, got {a.fcn_width}")
        size = _input_size(a) or ((128, 128) if a.data == "people" else (500, 500))
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
    size = {"input_size": _input_size(a)} if a.input_size else {}
    try:
        dilations = tuple(int(v) for v in a.fcn_dilations.split(","))
        model = RISConfig(feedback=a.feedback, fcn_dilations=dilations, channels=a.channels, coords=a.coords,
                          canvas=a.canvas or a.canvas_memory, canvas_memory=a.canvas_memory,
                          fcn_stride=a.fcn_stride, **size)
        FCN(model.in_channels, model.channels, model.fcn_stride, model.fcn_variant, dilations=dilations)
    except ValueError:
        raise CLIError(f"--fcn-dilations must be four integers >= 1 like '1,2,4,8', got {a.fcn_dilations!r}") from None
    if (a.canvas or a.canvas_memory) and (a.feedback or a.coords):
        raise CLIError("--canvas does not combine with --feedback or --coords")
    return model, None


def _is_people(spec: str) -> bool:
    """The people stand-in or VOC: data for the people configuration, scored by region AP."""
    return spec == "people" or spec.startswith("voc:")


def _input_size(a):
    """``--input-size 'rows,cols'`` as a tuple, or None."""
    if not a.input_size:
        return None
    try:
        size = tuple(int(v) for v in a.input_size.split(","))
        assert len(size) == 2 and min(size) >= 8
    except (ValueError, AssertionError):
        raise CLIError(f"--input-size must look like '106,100' (rows,cols >= 8), got {a.input_size!r}") from None
    return size


def _new_trainer(a, out: Path):
    from .train import (
        A1_CURRICULUM,
        PEOPLE_CURRICULUM,
        TrainConfig,
        Trainer,
        people_curriculum,
        real_curriculum,
    )

    if (out / "last.pt").exists():
        raise CLIError(f"{out / 'last.pt'} exists: pass --resume auto to continue it, or a new --out")
    if not 0 < a.val_fraction < 1:
        raise CLIError(f"--val-fraction must be in (0, 1), got {a.val_fraction}")
    model, init = _new_model_config(a)
    data, real, folder = {}, None, {}
    if a.data == "people":
        data["size"] = list(model.input_size)
        curriculum = [list(s) for s in PEOPLE_CURRICULUM]
    elif a.data.startswith("voc:"):
        from .people_readers import VOCPeople

        try:
            counts = VOCPeople(a.data.partition(":")[2], "train", cache=False).instance_counts()
        except (FileNotFoundError, ValueError) as e:
            raise CLIError(str(e)) from None
        curriculum = people_curriculum(counts)
    elif a.data != "synthetic":
        _check_data(a.data)
        # the scale: as asked, else the --init model's (what it learned), else the whole frame
        zoom = a.zoom if a.zoom is not None else (_model_zoom(init) if init is not None else 1.0)
        data["zoom"] = zoom
        real = _real(a, model.input_size, zoom)
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
    if a.curriculum:
        try:
            curriculum = [[int(v) for v in s.split(",")] for s in a.curriculum.split(";")]
        except ValueError:
            raise CLIError("--curriculum must look like '2,2,4;4,2,6' (length,lo,hi per stage)") from None
    if a.schedule == "cosine" and a.max_steps is None:
        raise CLIError("--schedule cosine needs --max-steps (the cosine spans the whole run)")
    if not 0 <= a.sampling_final <= 1 or not 0 <= a.sampling_start < 1:
        raise CLIError("--sampling-final must be in [0, 1] and --sampling-start in [0, 1)")
    schedule = {"schedule": a.schedule, "warmup_steps": a.warmup_steps,
                "sampling_final": a.sampling_final, "sampling_start": a.sampling_start}
    if a.max_steps is not None:
        schedule["max_steps"] = a.max_steps
    lr = a.lr if a.lr is not None else (FINE_TUNE_LR if init is not None else SCRATCH_LR)
    cfg = TrainConfig(**schedule, model=model.to_dict(), data=data, lr=lr, batch_size=a.batch_size, seed=a.seed,
                      curriculum=curriculum, eval_every=a.eval_every, stage_max_steps=a.stage_max_steps,
                      train_images=a.train_images, val_images=a.val_images, patience=a.patience,
                      precision="bf16" if a.cpu_bf16 else a.precision, source=a.data, folder=folder, val_fraction=a.val_fraction,
                      freeze_fcn=a.freeze_fcn)
    try:
        trainer = Trainer(cfg, out, a.device, data=real)
        if init is not None:
            trainer.load_weights(a.init)
        if a.imagenet:
            trainer.model.fcn.load_imagenet()
    except ImportError as e:
        raise CLIError(str(e)) from None
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None
    return trainer


def cmd_train(a) -> int:
    from .train import Trainer

    if a.snapshot_minutes is not None and a.snapshot_minutes <= 0:
        raise CLIError(f"--snapshot-minutes must be > 0, got {a.snapshot_minutes}")
    out = Path(a.out)
    if a.resume:
        ckpt = out / "last.pt" if Path(a.resume).is_dir() or a.resume == "auto" else Path(a.resume)
        try:
            trainer = Trainer.resume(ckpt, out, a.device)
        except (FileNotFoundError, ValueError) as e:
            raise CLIError(str(e)) from None
    else:
        trainer = _new_trainer(a, out)
    print(f"training on {trainer.device}; writing {out}/last.pt and {out}/log.csv", file=sys.stderr)
    trainer.run(budget_minutes=a.budget_minutes, max_steps=a.max_steps, progress=not a.quiet,
                snapshot_minutes=a.snapshot_minutes)
    print(json.dumps({"step": trainer.step, "stage": trainer.stage, "minutes": round(trainer.elapsed / 60, 2),
                      "checkpoint": str(out / "last.pt")}))
    return 0


def _crf(a, model):
    """``--crf`` / ``--crf-config``: False, or the CRFConfig to refine with."""
    from .crf import CRFConfig

    if a.crf_config is not None:
        if not a.crf:
            raise CLIError("--crf-config needs --crf")
        try:
            return CRFConfig.load(a.crf_config)
        except FileNotFoundError:
            raise CLIError(f"--crf-config: no such file {a.crf_config!r}") from None
        except (ValueError, TypeError) as e:
            raise CLIError(f"--crf-config {a.crf_config}: {e}") from None
    if not a.crf:
        return False
    return model.crf_config or CRFConfig()


def _precision(a, model) -> str:
    """``--precision`` checked on the model's device (fp16 on a CPU is an error)."""
    try:
        used = resolve_precision(a.precision, model.device)
    except ValueError as e:
        raise CLIError(str(e)) from None
    warn_if_emulated(used, model.device.type)
    return used


def _baseline(a, model, ds) -> dict:
    """The watershed pipeline tuned on the data's own validation split, then scored on ``ds``."""
    from .baseline import evaluate_baseline, tune_baseline

    val = _dataset(argparse.Namespace(**{**vars(a), "limit": None}), model, "val")
    params, _ = tune_baseline(val, resolution=a.resolution)
    result = evaluate_baseline(ds, params, a.resolution)
    result["params"] = {"min_distance": params.min_distance, "smooth": params.smooth}
    result["tuned_on"] = f"{len(val)} validation image{'s' * (len(val) != 1)}" + (" (the images scored: not a fair test)"
                                                           if a.data != "synthetic" and a.split == "val" else "")
    return result


def _print_table(rows, resolution_note: str) -> None:
    print(f"{'method':<10} {'DiC':>12} {'|DiC|':>12} {'SBD':>14} {'FgBgDice':>14}  n")
    for name, r in rows:
        print(f"{name:<10} {r['dic']:>5.2f} ({r['dic_std']:.2f}) {r['abs_dic']:>5.2f} ({r['abs_dic_std']:.2f}) "
              f"{100 * r['sbd']:>6.1f} ({100 * r['sbd_std']:.1f}) {100 * r['fgbg_dice']:>6.1f} "
              f"({100 * r['fgbg_dice_std']:.1f})  {r['n_images']}")
        if "params" in r:
            print(f"{'':<10} tuned on {r['tuned_on']}: " + ", ".join(f"{k}={v}" for k, v in r["params"].items()))
    print(resolution_note)


def _resolution_note(a, model) -> str:
    if a.data == "synthetic":
        return "scored at the model's input size (where the synthetic plants are drawn)"
    if a.resolution == "original":
        return "scored at each label file's own resolution (the official protocol)"
    h, w = model.config.input_size
    return f"scored at the model's input size {h}x{w}, NOT the official protocol (labels resized)"


def _evaluate_people(a, model) -> int:
    """Region AP (the paper's Table 1 measure) of a people model on the stand-in or on VOC."""
    from .people import PeopleDataset
    from .people_eval import (
        baseline_detections,
        model_region_ap,
        predictions_region_ap,
        tune_people_baseline,
    )
    from .people_readers import VOCPeople

    if a.crf or a.crf_config:
        raise CLIError("--crf is not wired to region AP yet: score RIS+CRF from Python (book chapter 13)")
    h, w = model.config.input_size
    try:
        if a.data == "people":
            ds = PeopleDataset(a.split or "test", length=a.limit, size=(h, w))
        else:
            root = a.data.partition(":")[2]
            ds = VOCPeople(root, a.split or "val", size=h)
            if a.limit:
                ds = VOCPeople(root, ids=ds.names[:a.limit], size=h)
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None
    result = {"ris": model_region_ap(model, ds, a.max_steps), "n_images": len(ds),
              "protocol": "VOC/SDS region AP, void excluded"}
    if a.baseline:
        if a.data != "people":
            raise CLIError("--baseline for people is tuned on the stand-in's validation scenes: use --data people")
        val = PeopleDataset("val", size=(h, w))
        params = tune_people_baseline([val[i][0] for i in range(len(val))], [val[i][1].numpy() for i in range(len(val))])
        items = [ds[i] for i in range(len(ds))]
        dets = baseline_detections([image for image, _ in items], params["threshold"], params["min_area"])
        result["baseline"] = predictions_region_ap(dets, [masks.numpy() for _, masks in items])
        result["baseline_params"] = params
    if a.json:
        print(json.dumps(result))
        return 0
    print(f"{'method':<10} {'AP^r(0.5)':>10} {'AP^r Ave':>10}  n")
    for name in ("ris", "baseline"):
        if name in result:
            r = result[name]
            print(f"{name:<10} {100 * r['ap50']:>10.1f} {100 * r['ap_mean']:>10.1f}  {len(ds)}")
    print(result["protocol"])
    return 0


def cmd_evaluate(a) -> int:
    from .evaluate import evaluate_model

    _check_data(a.data)
    if _is_people(a.data):  # the people model by default
        return _evaluate_people(a, _model(a.checkpoint, a.device, a.model or (None if a.checkpoint else "people")))
    model = _model(a.checkpoint, a.device, a.model)
    crf = _crf(a, model)
    ds = _dataset(a, model, a.split)
    result = evaluate_model(model, ds, max_steps=a.max_steps, progress=not a.json and not a.quiet, crf=crf,
                            resolution=a.resolution, precision=_precision(a, model))
    method = "ris+crf" if crf else "ris"
    if crf:
        result["crf"] = crf.to_dict()
    if a.baseline:
        result = {method: result, "watershed": _baseline(a, model, ds)}
    result["resolution"] = a.resolution if a.data != "synthetic" else "input"
    if a.json:
        print(json.dumps(result))
    else:
        rows = [(k, v) for k, v in result.items() if isinstance(v, dict) and "sbd" in v] if a.baseline else [(method, result)]
        _print_table(rows, _resolution_note(a, model))
    return 0


def cmd_predict(a) -> int:
    from .cvppp import write_label_png
    from .viz import save_overlay

    _check_data(a.data)
    model = _model(a.checkpoint, a.device, a.model)
    crf = _crf(a, model)
    ds = _dataset(a, model, a.split, require_labels=False)
    precision = _precision(a, model)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(len(ds)):
        image, _ = ds[i]
        labels = model.predict(image, max_steps=a.max_steps, crf=crf, precision=precision)[0]
        name = ds.names[i] if hasattr(ds, "names") else f"synthetic{ds.seeds[i]:06d}"
        full = ds.to_original(labels, i) if hasattr(ds, "to_original") else labels  # the file's own size
        write_label_png(full, out / f"{name}_label.png")
        save_overlay(image, labels, out / f"{name}_overlay.png")
    print(json.dumps({"written": len(ds), "out": str(out)}))
    return 0


def cmd_score(a) -> int:
    """Score label PNGs written by ``predict`` (or by any method) against a real folder."""
    from .folder import score_predictions

    _check_data(a.data)
    if a.data == "synthetic" or _is_people(a.data):
        raise CLIError("score reads a real folder's labels: --data cvppp:PATH or folder:PATH")
    ds = _select(a, _real(a, None, 1.0), a.split)  # only the label files are read, as they are
    try:
        result = score_predictions(a.predictions, ds, a.pattern)
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None
    print(json.dumps(result))
    return 0


def cmd_export(a) -> int:
    import shutil

    from .train import export, load_checkpoint, run_summary

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ris-lite", description="Recurrent Instance Segmentation, small.")
    sub = p.add_subparsers(dest="command", required=True)

    def crf_options(s):
        s.add_argument("--crf", action="store_true",
                       help="RIS+CRF: refine the masks with the paper's dense CRF (the shipped model's "
                            "tuned parameters; defaults for a training checkpoint)")
        s.add_argument("--crf-config", default=None, help="a CRF parameter JSON (CRFConfig.save) for --crf")

    def precision_option(s, default):
        s.add_argument("--precision", default=default, choices=list(PRECISIONS),
                       help="auto: bf16 autocast on CUDA (fp16 where the GPU lacks bf16) and on CPUs with native "
                            "bf16 (AVX512-BF16/AMX), else fp32; fp16 is CUDA only (default: %(default)s)")

    def common(s):
        s.add_argument("--data", default="synthetic",
                       help="'synthetic', 'people' (the people stand-in), 'cvppp:PATH' (a CVPPP A1 folder), "
                            "'folder:PATH' (images + label images) or 'voc:PATH' (VOC 2012's people)")
        s.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
        real_options(s)

    def real_options(s):
        s.add_argument("--image-pattern", default="images/{id}.*",
                       help="folder: data: image paths with an {id} ('.*' = any image extension)")
        s.add_argument("--label-pattern", default="labels/{id}.*",
                       help="folder: data: label-image paths with the same {id}")
        s.add_argument("--zoom", type=float, default=None,
                       help="real data: read the central 1/ZOOM of each frame (default: the model's "
                            "training scale; new runs: the --init model's, else 1 = the whole frame)")
        s.add_argument("--val-fraction", type=float, default=0.2,
                       help="real data: fraction of file ids in the validation split (by hash of the id)")

    def splits(s):
        s.add_argument("--split", default=None, choices=["train", "val", "test", "all"],
                       help="synthetic: a named split (default test); real data: all (default), or the "
                            "train / val side of the split by file id")

    t = sub.add_parser("train", help="curriculum training; writes OUT/last.pt and OUT/log.csv")
    common(t)
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
                   help="ours: canvas input, one teacher-forced step per sample (book chapter 9)")
    t.add_argument("--canvas-memory", action="store_true",
                   help="ours: canvas input AND the ConvLSTM memory; whole sequences, teacher-forced canvas")
    t.add_argument("--fcn-stride", type=int, default=2, help="FCN (and mask grid) stride (default 2)")
    t.add_argument("--schedule", default="plateau", choices=["plateau", "cosine"],
                   help="lr schedule: the paper's plateau cuts, or ours: cosine over --max-steps")
    t.add_argument("--warmup-steps", type=int, default=0, help="linear lr warm-up (cosine schedule)")
    t.add_argument("--sampling-final", type=float, default=0.0,
                   help="canvas models: final chance of training on the model's own canvas")
    t.add_argument("--sampling-start", type=float, default=0.3,
                   help="canvas models: fraction of --max-steps where scheduled sampling starts")
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

    e = sub.add_parser("evaluate", help="SBD, FgBgDice, DiC, |DiC| over a split or a CVPPP folder")
    common(e)
    splits(e)
    e.add_argument("--resolution", default="original", choices=["original", "input"],
                   help="real data: score at each label file's own size (official) or at the model's input")
    e.add_argument("--checkpoint", default=None, help="a training checkpoint (default: the shipped model)")
    e.add_argument("--model", default=None, help="a shipped model by name (default rosettes; see load_pretrained)")
    e.add_argument("--limit", type=int, default=None, help="only the first N images")
    e.add_argument("--max-steps", type=int, default=30)
    precision_option(e, "fp32")
    e.add_argument("--baseline", action="store_true", help="also score the watershed baseline")
    crf_options(e)
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("predict", help="write CVPPP-format label PNGs and overlay figures")
    common(r)
    splits(r)
    r.add_argument("--checkpoint", default=None)
    r.add_argument("--model", default=None, help="a shipped model by name (default rosettes)")
    r.add_argument("--limit", type=int, default=None)
    r.add_argument("--max-steps", type=int, default=30)
    precision_option(r, "fp32")
    r.add_argument("--out", default="predictions")
    crf_options(r)
    r.set_defaults(func=cmd_predict)
    c = sub.add_parser("score", help="score a folder of predicted label PNGs against a real folder's labels")
    c.add_argument("--predictions", required=True, help="folder of predicted label images")
    c.add_argument("--pattern", default="{id}_label.png", help="prediction file names (default: predict's)")
    common(c)
    splits(c)
    c.add_argument("--limit", type=int, default=None)
    c.set_defaults(func=cmd_score)
    x = sub.add_parser("export", help="slim model + config + log (+ curve) of a run, for shipping (load_pretrained)")
    x.add_argument("--run", required=True, help="a training output folder (holds last.pt, log.csv)")
    x.add_argument("--out", default="ris_lite/pretrained")
    x.add_argument("--name", default="rosettes")
    x.set_defaults(func=cmd_export)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CLIError as e:
        print(f"ris-lite {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ris-lite {args.command}: interrupted (the last checkpoint is kept)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
