"""Measuring a model: loss, accuracy, confusion matrix and per-class metrics.

`measure` is what the trainer calls every epoch; `evaluate_checkpoint` is `mnistres eval`:
it rebuilds the model from the config stored in the checkpoint, so the user never has
to repeat the architecture.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

import torch
from torch import nn

from mnistres import devices

CLASSES = 10


def eval_batch_size(device: torch.device) -> int:
    """Images per evaluation batch. On a CPU, batches of 256 measured about a quarter faster than
    batches of 1,000 (the activations stay in cache; benchmarks/README.md); elsewhere larger
    batches keep the device busy."""
    return 256 if device.type == "cpu" else 1024


@torch.inference_mode()
def measure(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
            amp_dtype: torch.dtype | None = None) -> tuple[float, float, list[list[int]]]:
    """Mean loss, accuracy and the confusion matrix (rows: true class, columns: predicted).

    Sums stay on the device; there is one host sync, at the end.
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
    if confusion is None:
        return float("nan"), float("nan"), [[0] * CLASSES for _ in range(CLASSES)]
    matrix = confusion.reshape(CLASSES, CLASSES).cpu()
    total = int(matrix.sum())
    return float(loss_sum) / total, int(matrix.trace()) / total, matrix.tolist()


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


def evaluate_checkpoint(path: str | os.PathLike, *, dataset: str | None = None, data_dir: str | None = None,
                        split: str = "test", device: str = "auto", batch_size: int | None = None,
                        download: bool = True, threads: int = 0) -> dict[str, Any]:
    """Evaluate a checkpoint on a dataset split; returns plain values (JSON-ready)."""
    from mnistres import checkpoint, config as config_module, data, model as model_module
    from mnistres.errors import ConfigError, UnknownNameError

    if split not in ("test", "train"):
        raise ConfigError(f"split={split!r}: expected test or train")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}: expected at least 1")
    devices.set_threads(threads)
    target = devices.resolve(device)
    if batch_size is None:
        batch_size = eval_batch_size(target)
    document = checkpoint.load(path)
    try:
        run_config = config_module.from_dict(document["config"], origin=f"checkpoint {path}")
    except ConfigError as error:
        raise type(error)(f"{path}: its stored config does not load: {error}") from None
    if dataset is not None:
        run_config = run_config.replace(dataset=dataset)
    name = run_config.dataset
    root = data.resolve_data_dir(data_dir or (None if os.environ.get("MNISTRES_DATA_DIR") else run_config.data_dir))

    try:
        network = model_module.build(run_config.activation, run_config.width, run_config.blocks)
    except UnknownNameError:
        supplied = (document.get("plugins") or {}).get("activation", {}).get("source", "an unknown source")
        raise UnknownNameError(
            f"{path} needs activation '{run_config.activation}' from {supplied}, which is not installed here: "
            f"install it, or load it with --plugin"
        ) from None
    try:
        network.load_state_dict(document["model"])
    except RuntimeError as error:
        raise ConfigError(f"{path}: weights do not fit the stored architecture: {str(error).splitlines()[0]}") from None
    # The same memory layout as in training, so eval reproduces the logged accuracy exactly.
    network.to(target, memory_format=torch.channels_last if run_config.channels_last else torch.contiguous_format)
    images, labels = data.load_split(name, root, split, download)
    split_data = data.Split(images.to(target), labels.to(target))
    mean, std = document.get("normalisation", data.NORMALISATION[name])
    batches = data.Batches(split_data, batch_size, mean=mean, std=std, channels_last=run_config.channels_last)
    loss, accuracy, confusion = measure(network, batches, devices.amp_dtype(run_config.amp, target))
    return {
        "checkpoint": str(path),
        "epoch": document.get("epoch"),
        "dataset": name,
        "split": split,
        "images": len(split_data),
        "loss": loss,
        "accuracy": accuracy,
        "per_class": class_metrics(confusion),
        "confusion_matrix": confusion,
        "device": devices.describe(target),
    }
