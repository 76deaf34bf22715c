"""`serve`'s digits: an upload read as `predict` reads a file, through a checkpoint kept loaded.

A checkpoint is loaded once (with weights only, as everywhere) and kept while its file is unchanged;
the few most recently used stay loaded. One image batch runs at a time: the page asks as one draws,
and the CPU's threads are better spent on one batch than shared between several.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from mnistres.errors import ConfigError

KEPT = 3  # checkpoints kept loaded at once
MAX_IMAGES = 1_000  # images predicted from one upload (an .npz may hold many)


class Unusable(ConfigError):
    """An upload that holds no usable image (HTTP 422)."""


class Predictor:
    """Checkpoints loaded on `device`, predicting uploads."""

    def __init__(self, device: str = "auto", threads: int = 0) -> None:
        self.device = device
        self.threads = threads
        self._loaded: OrderedDict[tuple[str, int, int], Any] = OrderedDict()
        self._lock = threading.Lock()

    def trained(self, path: Path) -> Any:
        """The checkpoint's model, loaded now or kept from before (while the file is unchanged)."""
        from mnistres.inference.trained import load_trained
        from mnistres.train.checkpoint import check_file

        info = os.stat(check_file(path))
        key = (os.path.realpath(path), info.st_mtime_ns, info.st_size)
        if key in self._loaded:
            self._loaded.move_to_end(key)
            return self._loaded[key]
        trained = load_trained(path, device=self.device, threads=self.threads)
        self._loaded[key] = trained
        while len(self._loaded) > KEPT:
            self._loaded.popitem(last=False)
        return trained

    def predict(self, path: Path, content: bytes, *, preprocess: bool = True) -> dict[str, Any]:
        """The digit in each image the upload holds, with the ten probabilities and the 28x28 pixels the
        model saw; the first usable image's answer is also given at the top."""
        from mnistres.inference import images
        from mnistres.inference.predict import probabilities

        samples = images.read_bytes(content, "upload", preprocess)
        if len(samples) > MAX_IMAGES:
            raise Unusable(f"the upload holds {len(samples):,} images; at most {MAX_IMAGES:,} are predicted at once")
        usable = [sample for sample in samples if sample.pixels is not None]
        if not usable:
            raise Unusable(samples[0].error if len(samples) == 1 else f"none of its {len(samples)} images is usable: "
                                                                       f"{samples[0].error}")
        with self._lock:
            trained = self.trained(path)
            found = iter(probabilities(trained, [sample.pixels for sample in usable]))
        rows = []
        for sample in samples:
            if sample.pixels is None:
                rows.append({"name": sample.name, "error": sample.error})
                continue
            chances = next(found)
            digit = max(range(len(chances)), key=chances.__getitem__)
            rows.append({"name": sample.name, "digit": digit, "confidence": chances[digit], "probabilities": chances,
                         "pixels": sample.pixels.tolist()})
        first = next(row for row in rows if "error" not in row)
        return {**{key: first[key] for key in ("digit", "confidence", "probabilities", "pixels")},
                "epoch": trained.epoch, "device": str(trained.device), "preprocess": preprocess, "images": rows}
