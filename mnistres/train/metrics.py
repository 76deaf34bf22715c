"""Measuring a model on batches: loss, accuracy, confusion matrix and per-class metrics.

What the trainer computes every epoch and `mnistres eval` computes once, in one place, so the
two cannot measure differently.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from mnistres.train import devices
from mnistres.train.distributed import World, all_sum

CLASSES = 10


def eval_batch_size(device: torch.device) -> int:
    """Images per evaluation batch. On a CPU, batches of 256 measured about a quarter faster than
    batches of 1,000 (the activations stay in cache; docs/benchmarks/speed.md); elsewhere larger
    batches keep the device busy."""
    return 256 if device.type == "cpu" else 1024


@torch.inference_mode()
def measure(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
            amp_dtype: torch.dtype | None = None, world: World | None = None) -> tuple[float, float, list[list[int]]]:
    """Mean loss, accuracy and the confusion matrix (rows: true class, columns: predicted).

    Sums stay on the device; there is one host sync, at the end. With a `world` of several
    processes, each measures its share of the images and the sums are added up across them.
    """
    was_training = model.training
    model.eval()
    loss_sum = confusion = None
    try:
        for x, y in batches:
            with devices.autocast(y.device, amp_dtype):
                logits = model(x)
            batch_loss = nn.functional.cross_entropy(logits.float(), y, reduction="sum")
            counts = torch.bincount(y * CLASSES + logits.argmax(1), minlength=CLASSES * CLASSES)
            loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
            confusion = counts if confusion is None else confusion + counts
    finally:
        model.train(was_training)
    if world is not None and world.several:
        device = next(model.parameters()).device
        sums = torch.zeros(1 + CLASSES * CLASSES, dtype=torch.float64, device=device)
        if confusion is not None:
            sums[0], sums[1:] = loss_sum, confusion
        all_sum(sums, world)
        loss_sum, confusion = sums[0], sums[1:].round().long()
        if int(confusion.sum()) == 0:
            confusion = None
    if confusion is None:
        return float("nan"), float("nan"), [[0] * CLASSES for _ in range(CLASSES)]
    matrix = confusion.reshape(CLASSES, CLASSES).cpu()
    total = int(matrix.sum())
    return float(loss_sum) / total, int(matrix.trace()) / total, matrix.tolist()


@torch.inference_mode()
def probabilities(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                  amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """The model's class probabilities for every image of `batches`, in their order: (N, classes),
    float32, on the CPU (for choosing and showing mistakes; `measure` keeps its sums on the device)."""
    was_training = model.training
    model.eval()
    parts = []
    try:
        for x, _ in batches:
            with devices.autocast(x.device, amp_dtype):
                logits = model(x)
            parts.append(torch.softmax(logits.float(), dim=1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(parts) if parts else torch.zeros(0, CLASSES)


def class_metrics(confusion: list[list[int]]) -> list[dict[str, Any]]:
    """Per class: support, accuracy (share of its images classified right, i.e. recall),
    precision, recall and F1. Undefined ratios (no images, no predictions) are NaN."""
    rows = []
    for label in range(len(confusion)):
        true_positive = confusion[label][label]
        support = sum(confusion[label])
        predicted = sum(row[label] for row in confusion)
        recall = true_positive / support if support else float("nan")
        precision = true_positive / predicted if predicted else float("nan")
        if support and predicted and (precision + recall) > 0:
            f1 = 2 * precision * recall / (precision + recall)
        else:
            f1 = float("nan") if not (support and predicted) else 0.0
        rows.append({"class": label, "support": support, "accuracy": recall,
                     "precision": precision, "recall": recall, "f1": f1})
    return rows
