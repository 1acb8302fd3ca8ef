"""The shipped checkpoints (each made by one ``ris-lite train`` command; commands, logs and
scores in ``ris_lite/pretrained/README.md``).

* ``"rosettes"``: the paper-faithful RIS (book chapters ``06_training``, ``08_evaluation``);
* ``"rosettes_canvas"``: ours, RIS with a canvas input and teacher forcing (``12_beyond``);
* ``"rosettes_styles"``: ours, ``rosettes`` fine-tuned on randomised looks (``10_your_data``);
* ``"people"``: the people configuration (FCN-8s at 1/8 width, 1 x 1 gates) trained on the
  people stand-in (``11_people``);
* ``"rosettes_set"`` and ``"rosettes_embedding"``: ours, RIS's successor families, the set
  model and the pixel-embedding model (``13_where_ris_stands``).

``default.json`` names the model ``load_pretrained()`` and the CLI use when none is named.
Next to a model, ``NAME_crf.json`` holds the RIS+CRF parameters tuned on the validation split
(``09_crf``) and ``NAME_assembly.json`` the label assembly chosen there (``07_inference``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from ..device import pick_device
from ..model.checkpoint import model_from_checkpoint
from ..model.crf import CRFConfig
from ..model.ris import RIS

PRETRAINED = {"rosettes": "rosettes.pt", "rosettes_canvas": "rosettes_canvas.pt", "rosettes_styles": "rosettes_styles.pt",
              "people": "people.pt",
              # ours (book chapter 13): the two successor families at the shipped RIS's image budget
              "rosettes_set": "rosettes_set.pt", "rosettes_embedding": "rosettes_embedding.pt"}


#: what ``load_pretrained()`` and every CLI command use when no model is named: ``default.json``
#: holds its name (issue #47: the best shipped RIS by the count report); a shipped model's label
#: assembly chosen on the validation plants (``ris_lite.model.assembly``) lies beside it as
#: ``NAME_assembly.json`` and is its ``predict`` default (none: the paper's rule)
DEFAULT_FILE = Path(__file__).parent / "default.json"


def default_name() -> str:
    """The name of the model a user gets when none is named."""
    return json.loads(DEFAULT_FILE.read_text())["name"]


def assembly_path(name: str) -> Path:
    """``NAME_assembly.json``: the assembly and minimum segment size chosen for a shipped model
    on the validation plants (``benchmarks/tune_assembly.py``), its ``predict`` default."""
    return Path(__file__).parent / f"{name}_assembly.json"


def stored_assembly(name: str) -> dict:
    """``{"assembly": ..., "min_size": ...}`` of a shipped model: its stored choice, else the
    paper's rule (``"first"``, 0)."""
    path = assembly_path(name)
    rule = json.loads(path.read_text()) if path.is_file() else {}
    return {"assembly": rule.get("assembly", "first"), "min_size": int(rule.get("min_size", 0))}


#: the default model's name and its assembly, as the package holds them (the in-browser page
#: of the book exports this model with this rule)
DEFAULT_MODEL = {"name": default_name(), **stored_assembly(default_name())}


def pretrained_path(name: str = "rosettes") -> Path:
    """Where the named checkpoint file lies (inside the installed package)."""
    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained model {name!r}; choose from {sorted(PRETRAINED)}")
    path = Path(__file__).parent / PRETRAINED[name]
    if not path.is_file():
        raise FileNotFoundError(f"pretrained checkpoint {path} is missing from this installation")
    return path


def crf_config_path(name: str = "rosettes") -> Path:
    """The JSON file of the CRF parameters tuned for the named model on its validation split
    (``benchmarks/tune_crf.py``)."""
    return pretrained_path(name).with_name(f"{name}_crf.json")


def load_pretrained(name: Optional[str] = None) -> RIS:
    """The shipped RIS, in eval mode, on the CPU (``.to('cuda')`` it yourself); no name: the
    default model (:func:`default_name`), ``"rosettes"``: always the paper's recipe.

    ``model.assembly_rule`` holds the label assembly chosen for it on validation
    (``NAME_assembly.json``), which ``predict`` uses when not told otherwise (none stored: the
    paper's first claim, no size filter).

    ``model.data_options`` holds the rosette options it was trained on, so
    ``RosetteDataset('test', **model.data_options)`` is its benchmark; ``model.crf_config``
    holds its tuned RIS+CRF parameters (used by ``model.predict(images, crf=True)``).
    """
    name = default_name() if name is None else name
    model = model_from_checkpoint(pretrained_path(name))
    if assembly_path(name).is_file():
        model.assembly_rule = stored_assembly(name)
    if crf_config_path(name).is_file():
        model.crf_config = CRFConfig.load(crf_config_path(name))
    return model


def load_model(source: str | os.PathLike, device: Optional[str] = None) -> RIS:
    """A checkpoint path, or the name of a shipped model (``load_pretrained``)."""
    if not Path(source).exists():
        if str(source) not in PRETRAINED:
            raise FileNotFoundError(f"{source}: no such checkpoint file, nor a shipped model name "
                                    f"({', '.join(sorted(PRETRAINED))})")
        model = load_pretrained(str(source))
        return model.to(pick_device(device)) if device else model
    return model_from_checkpoint(source, device)
