"""ris_lite: Recurrent Instance Segmentation (Romera-Paredes & Torr, ECCV 2016), small.

Every module names the book chapter that explains it. The public names below are the
stable interface (see the book's introduction for the map).
"""

from . import canvas, crf, folder, metrics, people, people_eval, precision
from .augment import RotateFlip, collate_instances
from .baseline import WatershedParams, tune_baseline, watershed_leaves
from .convlstm import ConvLSTM, ConvLSTMCell, ConvLSTMCellEq1
from .crf import CRFConfig, refine
from .cvppp import CVPPP, read_label_png, write_label_png
from .evaluate import evaluate_model, predict_dataset
from .fcn import FCN, bilinear_kernel
from .fcn8s import FCN8s
from .folder import LabelledFolder
from .inhibition import ConfidenceHead, SpatialInhibition, inhibition_bias_init
from .loss import fixed_order_loss, match, pairwise_soft_iou, ris_loss, soft_iou
from .model import RIS, RISConfig
from .people import PeopleDataset, make_people, make_people_scene, people_model_config
from .people_readers import COCOPeople, VOCPeople
from .pretrained import load_pretrained
from .rosette import (
    A1_STATS,
    SPLITS,
    RosetteDataset,
    labels_to_masks,
    make_rosette,
    masks_to_labels,
)
from .train import A1_CURRICULUM, PEOPLE_CURRICULUM, TrainConfig, Trainer, pick_device

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
    "people_eval", "people_model_config", "precision",
]
