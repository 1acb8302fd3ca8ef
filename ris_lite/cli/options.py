"""What every ``ris-lite`` command shares: user errors, ``--data`` as a data set, the model to
run, and the option groups of the parsers.

Explained in the book chapters ``book/06_training`` and ``book/08_evaluation``; real folders in
``book/10_your_data``.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Optional

from ..data.folder import check_zoom, split_ids
from ..data.real import open_folder
from ..data.rosette import DEFAULT_ZOOM, RosetteDataset
from ..device import pick_device
from ..model.checkpoint import model_from_checkpoint
from ..model.crf import AUTO_EXACT_MAX_PIXELS, BACKENDS, CRFConfig
from ..model.crf_lattice import LATTICE_INSTALL, require_pydensecrf
from ..model.kinds import kind_of
from ..precision import PRECISIONS, resolve_precision, warn_if_emulated
from ..pretrained import default_name, load_pretrained


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def check_data(spec: str) -> None:
    if spec in ("synthetic", "people"):
        return
    kind, _, root = spec.partition(":")
    if kind not in ("cvppp", "folder", "voc") or not root:
        raise CLIError(f"--data must be 'synthetic', 'people', 'cvppp:PATH', 'folder:PATH' or 'voc:PATH', got {spec!r}")
    if Path(root).is_file():
        raise CLIError(f"--data {spec}: {root!r} is a file, not a folder: give the folder that holds the data set")
    if not Path(root).is_dir():
        raise CLIError(f"--data {spec}: no such folder {root!r}")


#: numeric options and the least value each takes (``True``: the bound itself excluded); every
#: command's are checked, finite, before anything is read or written (the sizes that depend on
#: the model or the curriculum are checked where those are known: ``models``, ``open_real``)
AT_LEAST = {"limit": (1, False), "max_steps": (1, False), "budget_minutes": (0, True), "batch_size": (1, False),
            "eval_every": (1, False), "stage_max_steps": (1, False), "train_images": (1, False),
            "val_images": (1, False), "patience": (0, False), "warmup_steps": (0, False), "lr": (0, True),
            "lr_hold_steps": (0, False), "overlap_weight": (0, False), "monotonic_weight": (0, False),
            "score_from_stage": (0, False), "fcn_frozen_stages": (0, False), "snapshot_minutes": (0, True),
            "zoom": (0, True)}
#: options that are fractions: whether 0 and 1 themselves are allowed
FRACTIONS = {"val_fraction": (False, False), "sampling_final": (True, True), "sampling_start": (True, False)}


def check_numbers(a) -> None:
    """The numeric options of a parsed command line (``AT_LEAST``, ``FRACTIONS``) finite and in range."""
    for dest, (low, strict) in AT_LEAST.items():
        v = getattr(a, dest, None)
        if v is not None and (not math.isfinite(v) or v < low or (strict and v == low)):
            need = f"{'>' if strict else '>='} {low}"
            raise CLIError(f"--{dest.replace('_', '-')} must be {need if math.isfinite(v) else 'finite and ' + need}, "
                           f"got {v}")
    for dest, (zero, one) in FRACTIONS.items():
        v = getattr(a, dest, None)
        if v is not None and not ((0 < v or (zero and v == 0)) and (v < 1 or (one and v == 1))):
            raise CLIError(f"--{dest.replace('_', '-')} must be in {'[' if zero else '('}0, 1{']' if one else ')'}, "
                           f"got {v}")


def check_out_of_data(out: Path, a) -> None:
    """A run folder that is a real ``--data`` folder (its root, or the folder of its images or
    labels) is refused before anything is written there, as ``predict --out`` is."""
    kind, _, root = a.data.partition(":")
    if kind not in ("cvppp", "folder") or not root:
        return
    folders = {Path(root).resolve()}
    if kind == "folder":
        folders |= {(Path(root) / p.rpartition("/")[0]).resolve() for p in (a.image_pattern, a.label_pattern)}
    if out.resolve() in folders:
        raise CLIError(f"--out {out} is a folder of the data set {a.data}: a run writes last.pt, log.csv and "
                       "split.json there; choose another --out")


@contextmanager
def data_errors():
    """A data file that cannot be used (missing, truncated, of the wrong size) as one line, as
    everywhere else, not a traceback half-way through a command."""
    try:
        yield
    except (OSError, ValueError) as e:
        raise CLIError(str(e)) from None


def check_not_inputs(folder: str, ds, flag: str, consequence: str) -> None:
    """Refuse an output (or predictions) folder that is a real data set's own: its root, or a
    folder holding its images or label files."""
    if not hasattr(ds, "root"):
        return
    inputs = {Path(ds.root).resolve()}
    for i in range(len(ds)):
        inputs |= {p.resolve().parent for p in (ds.image_path(i), ds.label_path(i)) if p is not None}
    if Path(folder).resolve() in inputs:
        raise CLIError(f"{flag} {folder} is a folder of the data set {ds.root} (it holds its images or label "
                       f"files): {consequence}")


def data_kind(spec: str) -> str:
    """``"people"`` or ``"plants"``: what a ``--data`` (or a run's ``source``) holds."""
    return "people" if is_people(spec) else "plants"


def learned_kind(model) -> str:
    """What a model learned: its training data's kind, else (old files) its FCN's (FCN-8s: people)."""
    source = getattr(model, "source", None)
    if source:
        return data_kind(source)
    return "people" if model.config.fcn_variant == "fcn8s" else "plants"


def check_kind(a, model) -> None:
    """A model run on the other kind of data than it learned needs ``--allow-other-kind``."""
    have, want = learned_kind(model), data_kind(a.data)
    if have != want and not a.allow_other_kind:
        raise CLIError(f"the model learned {have} but --data {a.data} holds {want}: its results there mean "
                       "little; pass --allow-other-kind to run it anyway")


def model_zoom(model) -> float:
    """The scale a model learned: its training data's zoom (synthetic default 1.8)."""
    return float((getattr(model, "data_options", None) or {}).get("zoom", DEFAULT_ZOOM))


def open_real(a, input_size, zoom: float, require_labels: bool = True, frame: Optional[str] = None):
    """The whole real folder of ``--data``, read at the scale of a model of ``input_size``
    trained at ``zoom``, its frames whole or (``--frame plant``) cropped around the plant."""
    patterns = {"image_pattern": a.image_pattern, "label_pattern": a.label_pattern} if a.data.startswith("folder:") else {}
    try:
        check_zoom(zoom, input_size and tuple(input_size))
    except ValueError as e:  # before a resize of inf or 1000 times the input, not after it failed
        raise CLIError(f"--{e}" if a.zoom is not None else str(e)) from None
    try:
        return open_folder(a.data, size=input_size and tuple(input_size), zoom=zoom, require_labels=require_labels,
                           frame=frame or getattr(a, "frame", "whole"), **patterns)
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None


def dataset_of(a, model, split: Optional[str], require_labels: bool = True):
    """``--data`` as a data set: a synthetic split, or a real folder (all of it, or one side of
    its split by file id)."""
    if is_people(a.data):
        raise CLIError(f"--data {a.data}: people data is scored by region AP with `ris-lite evaluate`; "
                       "predict and score write and read leaf label files")
    if a.data == "synthetic":
        opts = dict(getattr(model, "data_options", {}) or {})
        if getattr(a, "style", None) is not None:
            opts["style"] = a.style
        try:
            return RosetteDataset(split or "test", length=a.limit, **opts)
        except ValueError as e:
            raise CLIError(str(e)) from None
    check_data(a.data)
    if getattr(a, "style", None) is not None:
        raise CLIError(f"--style draws the synthetic plants' look: it needs --data synthetic, not {a.data}")
    zoom = a.zoom if a.zoom is not None else model_zoom(model)
    return select_side(a, open_real(a, model.config.input_size, zoom, require_labels), split)


def select_side(a, ds, split: Optional[str]):

    if split == "test":
        raise CLIError("a real folder has no test split: give the test images their own folder, "
                       "or use --split all / train / val")
    names = ds.names if split in (None, "all") else split_ids(ds.names, a.val_fraction)[split]
    return ds.view(names[:a.limit])


def load_cli_model(checkpoint: Optional[str], device: Optional[str], name: Optional[str] = None):

    if checkpoint is not None and name is not None:
        raise CLIError("pass --checkpoint or --model, not both")
    try:
        dev = pick_device(device)
        # ``cli_name``: what the command's JSON line names as the model (the package's default when
        # no model is named: ``ris_lite/pretrained/default.json``)
        if checkpoint is None:
            name = default_name() if name is None else name
            model = load_pretrained(name).to(dev)
        else:
            model = model_from_checkpoint(checkpoint).to(dev)
        model.cli_name = name if checkpoint is None else str(checkpoint)
        return model
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        raise CLIError(str(e)) from None


def is_people(spec: str) -> bool:
    """The people stand-in, VOC or COCO: data for the people configuration (COCO: training only)."""
    return spec == "people" or spec.startswith(("voc:", "coco:"))


def input_size_of(a):
    """``--input-size 'rows,cols'`` as a tuple, or None."""
    if not a.input_size:
        return None
    try:
        size = tuple(int(v) for v in a.input_size.split(","))
        assert len(size) == 2 and min(size) >= 8
    except (ValueError, AssertionError):
        raise CLIError(f"--input-size must look like '106,100' (rows,cols >= 8), got {a.input_size!r}") from None
    return size


def crf_of(a, model):
    """``--crf`` / ``--crf-config`` / ``--crf-backend``: False, or the CRFConfig to refine with,
    its backend ``--crf-backend`` (default auto, whatever a config file says)."""
    if a.crf_backend is not None and not a.crf:
        raise CLIError("--crf-backend needs --crf")
    if (a.crf or a.crf_config is not None) and kind_of(model) != "ris":
        raise CLIError(f"--crf refines RIS's soft masks: a {kind_of(model)} model predicts without it")
    if a.crf_config is not None:
        if not a.crf:
            raise CLIError("--crf-config needs --crf")
        try:
            config = CRFConfig.load(a.crf_config)
        except FileNotFoundError:
            raise CLIError(f"--crf-config: no such file {a.crf_config!r}") from None
        except IsADirectoryError:
            raise CLIError(f"--crf-config {a.crf_config} is a folder: give a CRF config JSON file "
                           "(CRFConfig.save writes one)") from None
        except OSError as e:
            raise CLIError(f"--crf-config {a.crf_config}: cannot read it ({e.strerror or e})") from None
        except (ValueError, TypeError) as e:
            raise CLIError(f"--crf-config {a.crf_config}: {e}") from None
    elif not a.crf:
        return False
    else:
        config = model.crf_config or CRFConfig()
    if a.crf_backend == "lattice":
        try:
            require_pydensecrf()
        except ImportError as e:
            raise CLIError(f"--crf-backend lattice: {e}") from None
    return replace(config, backend=a.crf_backend or "auto")


def precision_of(a, model) -> str:
    """``--precision`` checked on the model's device (fp16 on a CPU is an error)."""
    try:
        used = resolve_precision(a.precision, model.device)
    except ValueError as e:
        raise CLIError(str(e)) from None
    warn_if_emulated(used, model.device.type)
    return used


# ----- option groups ------------------------------------------------------------------------
def crf_options(s):
    s.add_argument("--crf", action="store_true",
                   help="RIS+CRF: refine the masks with the paper's dense CRF (the shipped model's "
                        "tuned parameters; defaults for a training checkpoint)")
    s.add_argument("--crf-config", default=None, help="a CRF parameter JSON (CRFConfig.save) for --crf")
    s.add_argument("--crf-backend", default=None, choices=list(BACKENDS),
                   help="how --crf computes mean field: exact (every pixel pair: quadratic in pixels), lattice "
                        f"(Krähenbühl's permutohedral lattice: linear; needs pydensecrf2, {LATTICE_INSTALL}) or "
                        f"auto (exact up to {AUTO_EXACT_MAX_PIXELS} pixels, the lattice above; the default)")

def precision_option(s, default):
    s.add_argument("--precision", default=default, choices=list(PRECISIONS),
                   help="auto: bf16 autocast on GPUs that compute it natively (compute capability 8+; fp16 on "
                        "older ones such as a T4) and on CPUs with native "
                        "bf16 (AVX512-BF16/AMX), else fp32; fp16 is CUDA only (default: %(default)s)")

def common(s):
    s.add_argument("--data", default="synthetic",
                   help="'synthetic', 'people' (the people stand-in), 'cvppp:PATH' (a CVPPP A1 folder), "
                        "'folder:PATH' (images + label images), 'voc:PATH' (VOC 2012's people) or, to train, "
                        "'coco:PATH' (the people of a COCO instances .json)")
    s.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    real_options(s)

def kind_option(s):
    s.add_argument("--allow-other-kind", action="store_true",
                   help="run a people model on plants, or a plant model on people (refused otherwise)")

def real_options(s):
    s.add_argument("--image-pattern", default="images/{id}.*",
                   help="folder: data: image paths with an {id} ('.*' = any image extension)")
    s.add_argument("--label-pattern", default="labels/{id}.*",
                   help="folder: data: label-image paths with the same {id}")
    s.add_argument("--zoom", type=float, default=None,
                   help="real data: the scale to read at: the whole frame at ZOOM times the model's input "
                        "size (default: the model's training zoom; new runs: the --init model's, else 1)")
    s.add_argument("--frame", default="whole", choices=["whole", "plant"],
                   help="real data: read the whole frame (default) or a padded box around the plant "
                        "(found by colour; prediction and scoring only)")
    s.add_argument("--val-fraction", type=float, default=0.2,
                   help="real data: fraction of file ids in the validation split (by hash of the id)")

def splits(s):
    s.add_argument("--split", default=None, choices=["train", "val", "test", "all"],
                   help="synthetic: a named split (default test); real data: all (default), or the "
                        "train / val side of the split by file id")
    s.add_argument("--style", default=None, choices=["a1", "random", "heldout"],
                   help="synthetic: the plants' look (default: the model's training data's); 'heldout' is "
                        "the scene and camera no training run draws")
