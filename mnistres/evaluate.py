"""Measuring a model: loss, accuracy, confusion matrix and per-class metrics.

`measure` is what the trainer calls every epoch; `evaluate_checkpoint` is `mnistres eval`:
it rebuilds the model from the config stored in the checkpoint, so the user never has
to repeat the architecture.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from mnistres import devices
from mnistres.values import clip, echo

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


@dataclass
class Trained:
    """A model rebuilt from a checkpoint, ready on its device, with what is needed to feed it."""

    path: str
    network: nn.Module
    run_config: Any  # the RunConfig stored in the checkpoint
    epoch: Any
    mean: float
    std: float
    device: torch.device
    amp: torch.dtype | None

    def data_root(self, data_dir: str | None = None) -> Path:
        """Where its dataset is: --data-dir, else $MNISTRES_DATA_DIR, else the folder it was trained
        from, else the user cache."""
        from mnistres import data

        return data.resolve_data_dir(data_dir or (None if os.environ.get("MNISTRES_DATA_DIR")
                                                  else self.run_config.data_dir))

    def batches(self, split: Any, batch_size: int | None = None) -> Any:
        from mnistres import data

        return data.Batches(split, batch_size or eval_batch_size(self.device), mean=self.mean, std=self.std,
                            channels_last=self.run_config.channels_last)


def load_trained(path: str | os.PathLike, *, device: str = "auto", threads: int = 0) -> Trained:
    """The checkpoint's model, rebuilt from its stored config (no architecture options needed)."""
    from mnistres import checkpoint, config as config_module, data, model as model_module
    from mnistres.errors import ConfigError, UnknownNameError

    devices.set_threads(threads)
    target = devices.resolve(device)
    document = checkpoint.load(path)
    try:
        run_config = config_module.from_dict(document["config"], origin=f"checkpoint {path}")
    except ConfigError as error:
        raise type(error)(f"{path}: its stored config does not load: {error}") from None
    try:
        network = model_module.build(run_config.activation, run_config.width, run_config.blocks)
    except UnknownNameError:
        supplied = (document.get("plugins") or {}).get("activation", {})
        source = supplied.get("source") if isinstance(supplied, dict) else None
        raise UnknownNameError(
            f"{path} needs activation {echo(run_config.activation)} from "
            f"{clip(source, 200) if isinstance(source, str) else 'an unknown source'}, which is not installed here: "
            f"install it, or load it with --plugin"
        ) from None
    try:
        network.load_state_dict(document["model"])
    except (RuntimeError, ValueError, TypeError, KeyError) as error:
        raise ConfigError(f"{path}: weights do not fit the stored architecture: {str(error).splitlines()[0]}") from None
    # The same memory layout as in training, so eval reproduces the logged accuracy exactly.
    network.to(target, memory_format=torch.channels_last if run_config.channels_last else torch.contiguous_format)
    network.eval()
    mean, std = document.get("normalisation", data.NORMALISATION[run_config.dataset])
    return Trained(str(path), network, run_config, document.get("epoch"), float(mean), float(std), target,
                   devices.amp_dtype(run_config.amp, target))


def _check_batch_size(batch_size: int | None) -> None:
    from mnistres.errors import ConfigError

    if batch_size is not None and not 1 <= batch_size <= 65_536:
        raise ConfigError(f"batch_size={batch_size}: expected 1 to 65,536 images per evaluation batch")


def report(trained: Trained, source: dict[str, Any], images: int, loss: float, accuracy: float,
           confusion: list[list[int]]) -> dict[str, Any]:
    """The result of an evaluation as plain values (JSON-ready), whatever the images were."""
    return {
        "checkpoint": trained.path,
        "epoch": trained.epoch,
        **source,
        "images": images,
        "loss": loss,
        "accuracy": accuracy,
        "per_class": class_metrics(confusion),
        "confusion_matrix": confusion,
        "device": devices.describe(trained.device),
    }


SPLITS = {
    "test": "the dataset's test file",
    "train": "the dataset's whole training file",
    "run-train": "the training images this run trained on (its train_size subset, drawn with its seed)",
    "run-val": "the images this run validated on (its held-out part, or the test file)",
}


def evaluate_checkpoint(path: str | os.PathLike, *, dataset: str | None = None, data_dir: str | None = None,
                        split: str = "test", device: str = "auto", batch_size: int | None = None,
                        download: bool = True, threads: int = 0) -> dict[str, Any]:
    """Evaluate a checkpoint on a dataset split; returns plain values (JSON-ready).

    `run-train` and `run-val` are the run's own images, drawn as training drew them (`data.prepare`);
    `train` is the whole training file, most of which a run with --train-size never saw.
    """
    from mnistres import data
    from mnistres.errors import ConfigError

    if split not in SPLITS:
        raise ConfigError(f"split={echo(split)}: expected {', '.join(SPLITS)}")
    _check_batch_size(batch_size)
    trained = load_trained(path, device=device, threads=threads)
    own = trained.run_config
    # --dataset is checked like a config value (fashion_mnist, Fashion-MNIST ... are accepted)
    name = own.replace(dataset=dataset).dataset if dataset is not None else own.dataset
    root = trained.data_root(data_dir)
    notes = []
    if split in ("run-train", "run-val"):
        if name != own.dataset:
            raise ConfigError(f"--split {split} scores the run's own {own.dataset} images; leave out --dataset {name}")
        prepared = data.prepare(own.dataset, root, download=download, train_size=own.train_size,
                                val_split=own.val_split, seed=own.seed, device=trained.device)
        split_data = prepared.train if split == "run-train" else prepared.val
        scored = (f"the {len(split_data):,} training images this run trained on" if split == "run-train" else
                  f"the {len(split_data):,} {prepared.val_name} images this run validated on")
    else:
        images, labels = data.load_split(name, root, split, download)
        split_data = data.Split(images.to(trained.device), labels.to(trained.device))
        scored = f"all {len(split_data):,} images of the {'test' if split == 'test' else 'training'} file"
        if split == "train" and name == own.dataset and (own.train_size or own.val_split):
            notes.append("this run trained on only some of them; --split run-train scores those")
    if name != own.dataset:
        notes.append(f"this model was trained on {own.dataset}, not {name}: expect an accuracy near chance")
    loss, accuracy, confusion = measure(trained.network, trained.batches(split_data, batch_size), trained.amp)
    result = report(trained, {"dataset": name, "split": split, "scored": scored, "trained_on": own.dataset},
                    len(split_data), loss, accuracy, confusion)
    if notes:
        result["notes"] = notes
    return result


def evaluate_images(path: str | os.PathLike, folder: str | os.PathLike, *, preprocess: bool = True,
                    device: str = "auto", batch_size: int | None = None, threads: int = 0) -> dict[str, Any]:
    """Evaluate a checkpoint on your own images: `folder` holds one subfolder per class, 0 to 9.

    Each image gets the same preprocessing as `predict`; files that cannot be used are listed
    under "skipped" with the reason, and the others are evaluated.
    """
    from mnistres import data, images as images_module
    from mnistres.errors import ConfigError

    _check_batch_size(batch_size)
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"--images {root}: not a folder (it should hold one subfolder per class, 0 to 9)")
    subfolders = sorted(p for p in root.iterdir() if p.is_dir())
    strangers = [p.name for p in subfolders if p.name not in {str(c) for c in range(CLASSES)}]
    if strangers:
        raise ConfigError(f"--images {root}: subfolders must be named 0 to 9 (the class of their images); "
                          f"found {', '.join(strangers)}")
    if not subfolders:
        raise ConfigError(f"--images {root}: no class subfolders (0 to 9) inside")
    trained = load_trained(path, device=device, threads=threads)
    pixels, labels, skipped = [], [], []
    for subfolder in subfolders:
        files = sorted(p for p in subfolder.iterdir() if p.is_file() and not p.name.startswith("."))  # no .DS_Store
        for file in files:
            for sample in images_module.read(file, preprocess):
                if sample.pixels is None:
                    skipped.append({"file": sample.name, "error": sample.error})
                else:
                    pixels.append(sample.pixels)
                    labels.append(int(subfolder.name))
    if not pixels:
        raise ConfigError(f"--images {root}: no usable image in its class subfolders"
                          + (f" ({len(skipped)} could not be used)" if skipped else ""))
    split = data.Split(torch.from_numpy(np.stack(pixels))[:, None].to(trained.device),
                       torch.tensor(labels, dtype=torch.long, device=trained.device))
    loss, accuracy, confusion = measure(trained.network, trained.batches(split, batch_size), trained.amp)
    source = {"dataset": f"images in {root}", "split": "preprocessed" if preprocess else "as given",
              "scored": f"{len(pixels):,} usable images", "trained_on": trained.run_config.dataset,
              "skipped": skipped}
    return report(trained, source, len(split), loss, accuracy, confusion)
