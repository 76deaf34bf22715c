"""`mnistres eval`: a checkpoint measured on a dataset split, or on the user's own images.

The model comes from `trained.load_trained`, the numbers from `metrics.measure` (the same
function the trainer uses every epoch).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnistres.train import devices
from mnistres.train.metrics import CLASSES, class_metrics, measure
from mnistres.inference.trained import Trained, load_trained
from mnistres.core.values import echo


def _check_batch_size(batch_size: int | None) -> None:
    from mnistres.errors import ConfigError

    if batch_size is not None and not 1 <= batch_size <= 65_536:
        raise ConfigError(f"batch_size={batch_size}: expected 1 to 65,536 images per evaluation batch")


MISTAKES_MAX = 400  # --mistakes: beyond this the grid is no longer a picture one can look at


def check_mistakes(count: int, figure: Path | None, draw: bool = True) -> Path | None:
    """The grid's path for `--mistakes count` (default mistakes.png here; none without `draw` and a path:
    `--json` lists the mistakes and draws only where -o says), checked before any work."""
    from mnistres.core import atomic
    from mnistres.errors import ConfigError

    if not count:
        if figure is not None:
            raise ConfigError(f"--output {figure} is where --mistakes draws its grid; add --mistakes N")
        return None
    if not 1 <= count <= MISTAKES_MAX:
        raise ConfigError(f"--mistakes {count}: expected 1 to {MISTAKES_MAX} images in the grid")
    if figure is None and not draw:
        return None
    figure = Path(figure) if figure is not None else Path("mistakes.png")
    if figure.suffix.lower() != ".png":
        raise ConfigError(f"--output {figure}: the grid is a PNG image, give a path ending in .png")
    if figure.is_dir():
        raise ConfigError(f"--output {figure} is a folder; give a file path ending in .png")
    atomic.check_place(figure.parent if str(figure.parent) else Path("."), "folder for the grid")
    return figure


def add_mistakes(result: dict[str, Any], trained: Trained, split: Any, batch_size: int | None, count: int,
                 figure: Path | None, *, source: str, names: list[str] | None = None) -> None:
    """The `count` most confident mistakes on `split`: listed in `result`, and drawn as a grid in `figure`
    (unless None)."""
    from mnistres.reporting import figures
    from mnistres.train import metrics
    from mnistres.runs import mistakes

    probabilities = metrics.probabilities(trained.network, trained.batches(split, batch_size), trained.amp)
    found = mistakes.select(probabilities.numpy(), split.labels.cpu().numpy(), split.images[:, 0].cpu().numpy(),
                            source=source, names=names, keep=count,
                            positions=None if split.positions is None else split.positions.numpy())
    checkpoint = Path(trained.path).name
    if figure is not None:
        figures.plot_mistakes(found, figure, f"{checkpoint} on {source}: {len(found)} most confident of "
                                             f"{found.total:,} mistakes in {found.scored:,} images\n"
                                             "(true → predicted class, the model's confidence, index in the file)")
    result["mistakes"] = {"total": found.total, "source": source, "figure": None if figure is None else str(figure),
                          "shown": found.rows()}


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
                        download: bool = True, threads: int = 0, mistakes: int = 0,
                        figure: Path | None = None, draw: bool = True) -> dict[str, Any]:
    """Evaluate a checkpoint on a dataset split; returns plain values (JSON-ready).

    `run-train` and `run-val` are the run's own images, drawn as training drew them (`data.prepare`);
    `train` is the whole training file, most of which a run with --train-size never saw. With
    `mistakes`, the most confident mistakes are drawn in `figure` (a PNG) and listed, each with its
    index in its file.
    """
    from mnistres.train import data
    from mnistres.errors import ConfigError

    if split not in SPLITS:
        raise ConfigError(f"split={echo(split)}: expected {', '.join(SPLITS)}")
    _check_batch_size(batch_size)
    figure = check_mistakes(mistakes, figure, draw)
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
        source = f"the {own.dataset} {'test' if split == 'run-val' and prepared.val_name == 'test' else 'training'} file"
    else:
        images, labels = data.load_split(name, root, split, download)
        split_data = data.Split(images.to(trained.device), labels.to(trained.device))
        kind = "test" if split == "test" else "training"
        source, scored = f"the {name} {kind} file", f"all {len(split_data):,} images of the {kind} file"
        if split == "train" and name == own.dataset and (own.train_size or own.val_split):
            notes.append("this run trained on only some of them; --split run-train scores those")
    if name != own.dataset:
        notes.append(f"this model was trained on {own.dataset}, not {name}: expect an accuracy near chance")
    loss, accuracy, confusion = measure(trained.network, trained.batches(split_data, batch_size), trained.amp)
    result = report(trained, {"dataset": name, "split": split, "scored": scored, "trained_on": own.dataset},
                    len(split_data), loss, accuracy, confusion)
    if notes:
        result["notes"] = notes
    if mistakes:
        add_mistakes(result, trained, split_data, batch_size, mistakes, figure, source=source)
    return result


def evaluate_images(path: str | os.PathLike, folder: str | os.PathLike, *, preprocess: bool = True,
                    device: str = "auto", batch_size: int | None = None, threads: int = 0, mistakes: int = 0,
                    figure: Path | None = None, draw: bool = True) -> dict[str, Any]:
    """Evaluate a checkpoint on your own images: `folder` holds one subfolder per class, 0 to 9.

    Each image gets the same preprocessing as `predict`; files that cannot be used are listed
    under "skipped" with the reason, and the others are evaluated.
    """
    from mnistres.train import data
    from mnistres.inference import images as images_module
    from mnistres.errors import ConfigError

    _check_batch_size(batch_size)
    figure = check_mistakes(mistakes, figure, draw)
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
    pixels, labels, names, skipped = [], [], [], []
    for subfolder in subfolders:
        files = sorted(p for p in subfolder.iterdir() if p.is_file() and not p.name.startswith("."))  # no .DS_Store
        for file in files:
            for sample in images_module.read(file, preprocess):
                if sample.pixels is None:
                    skipped.append({"file": sample.name, "error": sample.error})
                else:
                    pixels.append(sample.pixels)
                    labels.append(int(subfolder.name))
                    names.append(sample.name)
    if not pixels:
        raise ConfigError(f"--images {root}: no usable image in its class subfolders"
                          + (f" ({len(skipped)} could not be used)" if skipped else ""))
    split = data.Split(torch.from_numpy(np.stack(pixels))[:, None].to(trained.device),
                       torch.tensor(labels, dtype=torch.long, device=trained.device))
    loss, accuracy, confusion = measure(trained.network, trained.batches(split, batch_size), trained.amp)
    source = {"dataset": f"images in {root}", "split": "preprocessed" if preprocess else "as given",
              "scored": f"{len(pixels):,} usable images", "trained_on": trained.run_config.dataset,
              "skipped": skipped}
    result = report(trained, source, len(split), loss, accuracy, confusion)
    if mistakes:
        add_mistakes(result, trained, split, batch_size, mistakes, figure, source=f"the images in {root}", names=names)
    return result
