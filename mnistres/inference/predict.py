"""`mnistres predict`: the digit in each of your images, with its confidence and the runners-up."""

from __future__ import annotations

import os
from typing import Any, Iterable

import numpy as np
import torch

from mnistres.inference import images
from mnistres.inference.trained import Trained, load_trained


def predict(checkpoint: str | os.PathLike, inputs: Iterable[str | os.PathLike], *, preprocess: bool = True,
            device: str = "auto", threads: int = 0, top: int = 3) -> dict[str, Any]:
    """Predictions for every image in `inputs` (files or folders), in order; plain values.

    An image that cannot be read or holds no digit gets an "error" instead of a prediction;
    the others are predicted all the same.
    """
    from mnistres.train import checkpoint as checkpoint_module

    checkpoint_module.check_file(checkpoint)  # the first argument's mistake is reported first
    skipped: list[dict[str, str]] = []  # what a folder holds that is not read, with why
    files = images.image_files(inputs, skipped)  # a path that does not exist fails here, before the model loads
    trained = load_trained(checkpoint, device=device, threads=threads)
    samples = [sample for path in files for sample in images.read(path, preprocess)]
    rows, found = [], iter(probabilities(trained, [sample.pixels for sample in samples if sample.pixels is not None]))
    for sample in samples:
        if sample.pixels is None:
            rows.append({"file": sample.name, "error": sample.error})
            continue
        chances = next(found)
        ranked = sorted(range(len(chances)), key=lambda c: -chances[c])[:top]
        # The words eval's mistakes use too: `predicted` (a class), `confidence` (its probability).
        rows.append({"file": sample.name, "predicted": ranked[0], "confidence": chances[ranked[0]],
                     "top": [{"class": c, "probability": chances[c]} for c in ranked]})
    return {"checkpoint": trained.path, "epoch": trained.epoch, "device": str(trained.device),
            "preprocess": preprocess, "predictions": rows, "skipped": skipped}


def probabilities(trained: Trained, pixels: list[np.ndarray]) -> list[list[float]]:
    """Each image's ten class probabilities; the images are (28, 28) uint8 in MNIST's form."""
    from mnistres.train import data, metrics

    if not pixels:
        return []
    batch = torch.from_numpy(np.stack(pixels))[:, None].to(trained.device)
    split = data.Split(batch, torch.zeros(len(pixels), dtype=torch.long, device=trained.device))
    return metrics.probabilities(trained.network, trained.batches(split), trained.amp).tolist()
