"""Run a model over a data set and score it with the CVPPP metrics.

Explained in the book chapter ``book/08_evaluation`` (RIS+CRF in ``book/09_crf``, real
folders scored at their own resolution in ``book/10_your_data``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import torch

from ..data.folder import LabelledFolder, read_label_image
from ..data.rosette import masks_to_labels
from .metrics import consecutive_labels, evaluate_labels


def ground_truth_labels(dataset, i: int) -> torch.Tensor:
    """The ``(H, W)`` label map of item i (datasets that keep raw ids expose ``labels(i)``)."""
    if hasattr(dataset, "labels"):
        return dataset.labels(i)
    return masks_to_labels(dataset[i][1])


RESOLUTIONS = ("original", "input")


def scoring_pair(dataset, i: int, labels: torch.Tensor, resolution: str = "original"):
    """``(prediction, ground truth)`` of item i, ready to score.

    ``"original"``: a real folder's prediction is brought back to the file's own size
    (``dataset.to_original``) and compared with the label file as it is, the official protocol.
    ``"input"``: both at the model's input size (the label map resized by nearest neighbour).
    Synthetic plants are drawn at the input size, so both are the same for them. Ids come back
    consecutive (``metrics.consecutive_labels``), as the official scorer assumes."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
    if resolution == "original" and hasattr(dataset, "to_original"):
        pair = dataset.to_original(labels, i), dataset.original_labels(i)
    else:
        pair = labels, ground_truth_labels(dataset, i)
    return consecutive_labels(pair[0]), consecutive_labels(pair[1])


def same_size_batches(dataset, batch_size: int = 8) -> Iterator[Tuple[List[int], torch.Tensor]]:
    """``(indices, images (B, 3, H, W))`` over the items in order, at most ``batch_size`` a
    batch and all of one size: a new batch starts where the size changes (real folders read
    with ``frame="plant"`` give each item the size of its own plant box)."""
    chunk: List[int] = []
    images: List[torch.Tensor] = []
    for i in range(len(dataset)):
        image = dataset[i][0]
        if images and (len(images) == batch_size or image.shape != images[0].shape):
            yield chunk, torch.stack(images)
            chunk, images = [], []
        chunk.append(i)
        images.append(image)
    if images:
        yield chunk, torch.stack(images)


def predict_dataset(model, dataset, max_steps: int = 30, batch_size: int = 8,
                    progress: bool = False, crf=False,
                    resolution: str = "original", precision: str = "fp32") -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """Predicted and ground-truth label maps for every item, in order (``crf`` and
    ``precision`` as in ``RIS.predict``: RIS+CRF when true; ``resolution`` as in
    :func:`scoring_pair`). Items are batched by size (:func:`same_size_batches`)."""
    from tqdm.auto import tqdm

    preds, gts = [], []
    with tqdm(total=len(dataset), disable=not progress, desc="evaluate", unit="image") as bar:
        for chunk, images in same_size_batches(dataset, batch_size):
            for i, labels in zip(chunk, model.predict(images, max_steps=max_steps, crf=crf, precision=precision)):
                pred, gt = scoring_pair(dataset, i, labels, resolution)
                preds.append(pred)
                gts.append(gt)
            bar.update(len(chunk))
    return preds, gts


def evaluate_model(model, dataset, max_steps: int = 30, progress: bool = False,
                   crf=False, resolution: str = "original", precision: str = "fp32") -> Dict[str, float]:
    """Mean (and std) SBD, FgBgDice, DiC, ``|DiC|`` of ``model.predict`` over ``dataset``
    (RIS+CRF when ``crf`` is true or a ``CRFConfig``). Real folders are scored at their own
    resolution unless ``resolution="input"``."""
    preds, gts = predict_dataset(model, dataset, max_steps, progress=progress, crf=crf, resolution=resolution,
                                 precision=precision)
    return evaluate_labels(preds, gts)


def score_predictions(predictions: str | Path, dataset: LabelledFolder, pattern: str = "{id}_label.png",
                      progress: bool = False) -> dict:
    """CVPPP scores of a folder of predicted label images against ``dataset``'s label files,
    both at the files' own resolution (``ris-lite score``). Every item needs its prediction,
    of the same size as its label file; ids are made consecutive, as the official scorer assumes.
    ``progress``: a bar on stderr."""
    from tqdm.auto import tqdm

    root = Path(predictions)
    if not root.is_dir():
        raise FileNotFoundError(f"no such predictions folder: {root}")
    preds, gts = [], []
    for i, name in enumerate(tqdm(dataset.names, disable=not progress, desc="score", unit="image")):
        path = root / pattern.replace("{id}", name)
        if not path.is_file():
            raise FileNotFoundError(f"no prediction for {name}: {path} is missing")
        pred, gt = torch.from_numpy(read_label_image(path, "predictions")), dataset.original_labels(i)
        if pred.shape != gt.shape:
            raise ValueError(f"{path} is {tuple(pred.shape)} but {dataset.label_path(i)} is {tuple(gt.shape)}: "
                             "predictions must be at the label file's resolution")
        preds.append(consecutive_labels(pred))
        gts.append(consecutive_labels(gt))
    return evaluate_labels(preds, gts)
