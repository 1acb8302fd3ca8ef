"""The shipped checkpoints (each made by one ``ris-lite train`` command; commands, logs and
scores in ``ris_lite/pretrained/README.md``).

* ``"rosettes"``: the paper-faithful RIS (book chapters ``06_training``, ``08_evaluation``);
* ``"rosettes_canvas"``: ours, RIS with a canvas input and teacher forcing (``12_beyond``).
* ``"rosettes_styles"``: ours, ``rosettes`` fine-tuned on randomised looks (``10_your_data``).
* ``"people"``: the people configuration (FCN-8s at 1/8 width, 1 x 1 gates) trained on the
  people stand-in (``11_people``).

Next to each, ``NAME_crf.json`` holds the RIS+CRF parameters tuned on the validation split
(``09_crf``).
"""

from __future__ import annotations

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


#: the model a user gets when none is named (the book's in-browser page; issue #47 makes it the
#: default of ``load_pretrained()`` and the CLI) and the label assembly chosen for it on the
#: validation plants (``ris_lite.model.assembly``; ``("first", 0)`` is the paper's rule)
DEFAULT_MODEL = {"name": "rosettes", "assembly": "first", "min_size": 0}


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


def load_pretrained(name: str = "rosettes") -> RIS:
    """The shipped RIS, in eval mode, on the CPU (``.to('cuda')`` it yourself).

    ``model.data_options`` holds the rosette options it was trained on, so
    ``RosetteDataset('test', **model.data_options)`` is its benchmark; ``model.crf_config``
    holds its tuned RIS+CRF parameters (used by ``model.predict(images, crf=True)``).
    """
    model = model_from_checkpoint(pretrained_path(name))
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
