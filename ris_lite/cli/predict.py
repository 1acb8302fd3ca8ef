"""``ris-lite predict`` (label PNGs in the CVPPP format, and overlays) and ``ris-lite score``
(any method's label PNGs against a real folder).

Explained in the book chapters ``book/08_evaluation`` and ``book/10_your_data``.
"""

from __future__ import annotations

import json
from pathlib import Path

from tqdm.auto import tqdm

from ..data.cvppp import write_label_png
from ..evaluation.evaluate import score_predictions
from ..viz import save_overlay
from .options import (
    CLIError,
    check_data,
    check_kind,
    check_not_inputs,
    common,
    crf_of,
    crf_options,
    data_errors,
    dataset_of,
    is_people,
    kind_option,
    load_cli_model,
    open_real,
    precision_of,
    precision_option,
    select_side,
    splits,
)


def cmd_predict(a) -> int:

    check_data(a.data)
    model = load_cli_model(a.checkpoint, a.device, a.model)
    crf = crf_of(a, model)
    ds = dataset_of(a, model, a.split, require_labels=False)
    check_kind(a, model)
    precision = precision_of(a, model)
    out = Path(a.out)
    check_not_inputs(out, ds, "--out", "predictions written there would overwrite its files; choose another --out")
    names = [ds.names[i] if hasattr(ds, "names") else f"synthetic{ds.seeds[i]:06d}" for i in range(len(ds))]
    _check_out_folder(out, ds, names)
    with data_errors():  # a truncated image, an unwritable --out: one line, as in train
        out.mkdir(parents=True, exist_ok=True)
        # one image at a time: real folders read with --frame plant give each its own size
        for i in tqdm(range(len(ds)), disable=a.quiet, desc="predict", unit="image"):
            image = ds.image(i) if hasattr(ds, "image") else ds[i][0]  # a real folder's labels are not read
            labels = model.predict(image, max_steps=a.max_steps, crf=crf, precision=precision)[0]
            full = ds.to_original(labels, i) if hasattr(ds, "to_original") else labels  # the file's own size
            write_label_png(full, out / f"{names[i]}_label.png")  # replaces a link, never writes through it
            overlay = out / f"{names[i]}_overlay.png"
            if overlay.is_symlink():  # the figure is saved in place: the link goes first
                overlay.unlink()
            save_overlay(image, labels, overlay)
    print(json.dumps({"written": len(ds), "out": str(out), "model": model.cli_name}))
    return 0


def _check_out_folder(out: Path, ds, names) -> None:
    """``--out`` must be a folder (or not yet exist), and no file predict writes there may be a
    link into the data set (written through, such links had its label files overwritten); links
    elsewhere are replaced by the new files, never written through."""
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file, not a folder: give the folder to write the label PNGs in")
    data = Path(ds.root).resolve() if hasattr(ds, "root") else None
    for name in names:
        for path in (out / f"{name}_label.png", out / f"{name}_overlay.png"):
            if data is not None and path.is_symlink() and path.resolve().is_relative_to(data):
                raise CLIError(f"--out {out}: {path.name} is a link to {path.resolve()}, inside the data set "
                               f"{ds.root}: remove the link, or choose another --out")


def cmd_score(a) -> int:
    """Score label PNGs written by ``predict`` (or by any method) against a real folder."""
    check_data(a.data)
    if a.data == "synthetic" or is_people(a.data):
        raise CLIError("score reads a real folder's labels: --data cvppp:PATH or folder:PATH")
    if a.pattern.count("{id}") != 1:
        raise CLIError(f"--pattern must hold '{{id}}' once (each image's prediction file), got {a.pattern!r}")
    if Path(a.predictions).is_file():
        raise CLIError(f"--predictions {a.predictions} is a file, not a folder: give the folder predict wrote")
    ds = select_side(a, open_real(a, None, 1.0, frame="whole"), a.split)  # only the label files are read, as they are
    check_not_inputs(a.predictions, ds, "--predictions", "its label files would be scored against themselves; "
                     "give the folder predict wrote")
    try:
        result = score_predictions(a.predictions, ds, a.pattern, progress=not a.quiet)
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None
    print(json.dumps(result))
    return 0


def add_parser(sub) -> None:
    """The ``predict`` and ``score`` sub-commands."""
    r = sub.add_parser("predict", help="write CVPPP-format label PNGs and overlay figures")
    common(r)
    splits(r)
    r.add_argument("--checkpoint", default=None)
    r.add_argument("--model", default=None, help="a shipped model by name (default: the package's default model, see load_pretrained)")
    kind_option(r)
    r.add_argument("--limit", type=int, default=None)
    r.add_argument("--max-steps", type=int, default=30)
    precision_option(r, "fp32")
    r.add_argument("--out", default="predictions")
    crf_options(r)
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_predict)
    c = sub.add_parser("score", help="score a folder of predicted label PNGs against a real folder's labels")
    c.add_argument("--predictions", required=True, help="folder of predicted label images")
    c.add_argument("--pattern", default="{id}_label.png", help="prediction file names (default: predict's)")
    common(c)
    splits(c)
    c.add_argument("--limit", type=int, default=None)
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_score)
