"""ris_lite: Recurrent Instance Segmentation (Romera-Paredes & Torr, ECCV 2016), small.

The folders follow the book's parts (``ris_lite/README.md`` has the map and the import rules):

* ``ris_lite.data``: the data, synthetic and real (chapters 1, 10, 11);
* ``ris_lite.model``: FCN, ConvLSTM, spatial inhibition, RIS, RIS+CRF (chapters 2-4, 7, 9, 11);
* ``ris_lite.training``: the loss, the curriculum, the loop (chapters 5, 6, 12);
* ``ris_lite.evaluation``: the CVPPP metrics, region AP, the baseline, the diagnosis (chapters 8, 10, 11, 12);
* ``ris_lite.pretrained``: the shipped checkpoints; ``ris_lite.cli``: ``ris-lite``;
* ``ris_lite.precision`` and ``ris_lite.device``: where and in which precision code runs.

Every module names the chapter that explains it. The names below are the stable interface.
"""

import sys as _sys

from . import precision
from .data import folder, people
from .data.augment import RotateFlip, collate_instances
from .data.cvppp import CVPPP, read_label_png, write_label_png
from .data.folder import LabelledFolder
from .data.people import PeopleDataset, make_people, make_people_scene
from .data.people_readers import COCOPeople, VOCPeople
from .data.rosette import (
    A1_STATS,
    SPLITS,
    RosetteDataset,
    labels_to_masks,
    make_rosette,
    masks_to_labels,
)
from .device import pick_device
from .evaluation import metrics, people_eval
from .evaluation.baseline import WatershedParams, tune_baseline, watershed_leaves
from .evaluation.diagnose import diagnose
from .evaluation.evaluate import evaluate_model, predict_dataset
from .model import crf
from .model.convlstm import ConvLSTM, ConvLSTMCell, ConvLSTMCellEq1
from .model.crf import CRFConfig, refine
from .model.embedding import EmbeddingConfig, EmbeddingModel
from .model.fcn import FCN, bilinear_kernel
from .model.fcn8s import FCN8s
from .model.inhibition import ConfidenceHead, SpatialInhibition, inhibition_bias_init
from .model.people import people_model_config
from .model.ris import RIS, RISConfig
from .model.set_prediction import SetConfig, SetPredictor
from .model.skip import BoundarySkip
from .pretrained import load_pretrained
from .training import canvas
from .training.config import TrainConfig
from .training.curriculum import A1_CURRICULUM, PEOPLE_CURRICULUM
from .training.loss import (
    fixed_order_loss,
    match,
    overlap_penalty,
    pairwise_soft_iou,
    ris_loss,
    soft_iou,
)
from .training.trainer import Trainer

# The modules the earlier flat layout exported stay importable by their old dotted names
# (``from ris_lite.metrics import best_dice``, as ../shared/API.md writes them).
for _name, _module in {"metrics": metrics, "crf": crf, "canvas": canvas, "folder": folder, "people": people,
                       "people_eval": people_eval}.items():
    _sys.modules.setdefault(f"{__name__}.{_name}", _module)

__version__ = "0.1.0"

__all__ = [
    "A1_CURRICULUM", "A1_STATS", "PEOPLE_CURRICULUM", "canvas", "crf", "CRFConfig", "CVPPP", "ConfidenceHead", "ConvLSTM", "ConvLSTMCell",
    "ConvLSTMCellEq1", "FCN", "LabelledFolder", "RIS", "RISConfig", "RosetteDataset", "RotateFlip", "SPLITS",
    "SpatialInhibition", "TrainConfig", "Trainer", "WatershedParams", "bilinear_kernel",
    "collate_instances", "evaluate_model", "fixed_order_loss", "folder", "inhibition_bias_init",
    "labels_to_masks", "load_pretrained", "make_rosette", "masks_to_labels", "match", "metrics",
    "pairwise_soft_iou", "pick_device", "predict_dataset", "read_label_png", "refine", "ris_loss",
    "soft_iou", "tune_baseline", "watershed_leaves", "write_label_png",
    "COCOPeople", "FCN8s", "PeopleDataset", "VOCPeople", "make_people", "make_people_scene", "people",
    "people_eval", "people_model_config", "precision", "BoundarySkip", "diagnose", "overlap_penalty",
    "EmbeddingConfig", "EmbeddingModel", "SetConfig", "SetPredictor",
]
