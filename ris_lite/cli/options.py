"""What every ``ris-lite`` command shares: user errors, ``--data`` as a data set, the model to
run, and the option groups of the parsers.

Explained in the book chapters ``book/06_training`` and ``book/08_evaluation``; real folders in
``book/10_your_data``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..data.folder import split_ids
from ..data.real import open_folder
from ..data.rosette import DEFAULT_ZOOM, RosetteDataset
from ..device import pick_device
from ..model.checkpoint import model_from_checkpoint
from ..model.crf import CRFConfig
from ..precision import PRECISIONS, resolve_precision, warn_if_emulated
from ..pretrained import load_pretrained


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def check_data(spec: str) -> None:
    if spec in ("synthetic", "people"):
        return
    kind, _, root = spec.partition(":")
    if kind not in ("cvppp", "folder", "voc") or not root:
        raise CLIError(f"--data must be 'synthetic', 'people', 'cvppp:PATH', 'folder:PATH' or 'voc:PATH', got {spec!r}")
    if not Path(root).is_dir():
        raise CLIError(f"--data {spec}: no such folder {root!r}")


def model_zoom(model) -> float:
    """The scale a model learned: its training data's zoom (synthetic default 1.8)."""
    return float((getattr(model, "data_options", None) or {}).get("zoom", DEFAULT_ZOOM))


def open_real(a, input_size, zoom: float, require_labels: bool = True, frame: Optional[str] = None):
    """The whole real folder of ``--data``, read at the scale of a model of ``input_size``
    trained at ``zoom``, its frames whole or (``--frame plant``) cropped around the plant."""
    patterns = {"image_pattern": a.image_pattern, "label_pattern": a.label_pattern} if a.data.startswith("folder:") else {}
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
        if checkpoint is None:
            return load_pretrained(name or "rosettes").to(dev)
        return model_from_checkpoint(checkpoint).to(dev)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        raise CLIError(str(e)) from None


def is_people(spec: str) -> bool:
    """The people stand-in or VOC: data for the people configuration, scored by region AP."""
    return spec == "people" or spec.startswith("voc:")


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
    """``--crf`` / ``--crf-config``: False, or the CRFConfig to refine with."""
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
