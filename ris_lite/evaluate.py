"""Run a model over a data set and score it with the CVPPP metrics.

Explained in the book chapter ``book/08_evaluation`` (RIS+CRF in ``book/10_crf``).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch

from .metrics import evaluate_labels
from .rosette import masks_to_labels


def ground_truth_labels(dataset, i: int) -> torch.Tensor:
    """The ``(H, W)`` label map of item i (datasets that keep raw ids expose ``labels(i)``)."""
    if hasattr(dataset, "labels"):
        return dataset.labels(i)
    return masks_to_labels(dataset[i][1])


def predict_dataset(model, dataset, max_steps: int = 30, batch_size: int = 8,
                    progress: bool = False, crf=False) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """Predicted and ground-truth label maps for every item, in order (``crf`` as in
    ``RIS.predict``: RIS+CRF when true)."""
    from tqdm.auto import tqdm

    preds, gts = [], []
    idx = list(range(len(dataset)))
    for s in tqdm(range(0, len(idx), batch_size), disable=not progress, desc="evaluate"):
        chunk = idx[s:s + batch_size]
        images = torch.stack([dataset[i][0] for i in chunk])
        preds += model.predict(images, max_steps=max_steps, crf=crf)
        gts += [ground_truth_labels(dataset, i) for i in chunk]
    return preds, gts


def evaluate_model(model, dataset, max_steps: int = 30, progress: bool = False,
                   crf=False) -> Dict[str, float]:
    """Mean (and std) SBD, FgBgDice, DiC, ``|DiC|`` of ``model.predict`` over ``dataset``
    (RIS+CRF when ``crf`` is true or a ``CRFConfig``)."""
    preds, gts = predict_dataset(model, dataset, max_steps, progress=progress, crf=crf)
    return evaluate_labels(preds, gts)
