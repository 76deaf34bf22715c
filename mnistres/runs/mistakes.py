"""What a model gets wrong: its most confident mistakes, and the pairs of classes it confuses most.

One selection rule for everyone: `eval --mistakes` applies it to a checkpoint's predictions now,
and a run applies it once at its end (written to its run directory as mistakes.npz, which `report`
reads without loading any checkpoint). NumPy only, no torch: reading a run's mistakes stays light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

KEEP = 500  # mistakes a run keeps, the most confident first: enough for any grid, at most ~400 kB of pixels


@dataclass
class Mistakes:
    """Wrongly classified images, the most confident mistake first."""

    position: np.ndarray  # (k,) int64: each image's position among the scored images
    label: np.ndarray  # (k,) int64: its true class
    predicted: np.ndarray  # (k,) int64: the class the model gave it
    confidence: np.ndarray  # (k,) float32: the probability the model gave that (wrong) class
    images: np.ndarray  # (k, H, W) uint8: the images as scored (white digit on black)
    total: int  # mistakes in all; k may be fewer (the most confident `keep` are kept)
    scored: int  # images scored
    source: str  # which images, in words: "the test file", "the held-out part of the training file", ...
    names: Optional[list[str]] = field(default=None)  # file names, when the images came from files

    def __len__(self) -> int:
        return len(self.label)

    def where(self, i: int) -> Any:
        """How to find mistake `i` again: its file name, else its position among the scored images."""
        return self.names[i] if self.names is not None else int(self.position[i])

    def first(self, count: int) -> "Mistakes":
        return self.subset(np.arange(min(count, len(self))))

    def subset(self, chosen: np.ndarray) -> "Mistakes":
        return Mistakes(self.position[chosen], self.label[chosen], self.predicted[chosen], self.confidence[chosen],
                        self.images[chosen], self.total, self.scored, self.source,
                        [self.names[i] for i in chosen] if self.names is not None else None)

    def of_pair(self, true: int, predicted: int) -> "Mistakes":
        """The mistakes that took a `true` image for `predicted`, most confident first."""
        return self.subset(np.flatnonzero((self.label == true) & (self.predicted == predicted)))

    def rows(self) -> list[dict[str, Any]]:
        """One plain dict per mistake (JSON-ready)."""
        key = "file" if self.names is not None else "index"
        return [{key: self.where(i), "label": int(self.label[i]), "predicted": int(self.predicted[i]),
                 "confidence": float(self.confidence[i])} for i in range(len(self))]


def select(probabilities: np.ndarray, labels: np.ndarray, images: np.ndarray, *, source: str,
           positions: Optional[np.ndarray] = None, names: Optional[Sequence[str]] = None,
           keep: Optional[int] = KEEP) -> Mistakes:
    """The wrongly classified images among those scored, the most confident mistake first (ties: the
    earlier image first). `probabilities` (N, classes) are the model's; `positions` say where each
    image sits in its file (default: 0 to N-1); `keep` bounds how many are kept (None: all)."""
    probabilities = np.asarray(probabilities, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    predicted = probabilities.argmax(axis=1) if len(labels) else np.zeros(0, dtype=np.int64)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")]
    if keep is not None:
        order = order[:keep]
    positions = np.arange(len(labels), dtype=np.int64) if positions is None else np.asarray(positions, dtype=np.int64)
    images = np.asarray(images)
    return Mistakes(
        position=positions[order], label=labels[order], predicted=predicted[order].astype(np.int64),
        confidence=probabilities[order, predicted[order]], images=images[order].astype(np.uint8),
        total=len(wrong), scored=len(labels), source=source,
        names=[names[i] for i in order] if names is not None else None,
    )


def confused_pairs(confusion: Sequence[Sequence[int]], count: int) -> list[tuple[int, int, int]]:
    """The `count` most frequent (true, predicted, images) off the diagonal of a confusion matrix,
    most first (ties: by true class, then predicted); pairs with no image are left out."""
    pairs = [(int(n), true, predicted) for true, row in enumerate(confusion)
             for predicted, n in enumerate(row) if true != predicted and n > 0]
    pairs.sort(key=lambda pair: (-pair[0], pair[1], pair[2]))
    return [(true, predicted, n) for n, true, predicted in pairs[:count]]


# --- the file a run keeps --------------------------------------------------------------------------

_ARRAYS = ("position", "label", "predicted", "confidence", "images")


def to_arrays(mistakes: Mistakes) -> dict[str, np.ndarray]:
    """What mistakes.npz holds: the arrays, and the counts and source as 0-d arrays (no pickles)."""
    return {**{name: getattr(mistakes, name) for name in _ARRAYS},
            "total": np.asarray(mistakes.total, dtype=np.int64), "scored": np.asarray(mistakes.scored, dtype=np.int64),
            "source": np.asarray(mistakes.source)}


def from_arrays(arrays: Any) -> tuple[Optional[Mistakes], str]:
    """Mistakes from what `to_arrays` wrote, or None and the problem with them."""
    missing = [name for name in (*_ARRAYS, "total", "scored", "source") if name not in arrays]
    if missing:
        return None, f"no {missing[0]!r} array"
    parts = {name: arrays[name] for name in _ARRAYS}
    count = len(parts["label"])
    if any(parts[name].ndim != 1 or len(parts[name]) != count for name in ("position", "label", "predicted",
                                                                           "confidence")):
        return None, "its arrays differ in length"
    if parts["images"].ndim != 3 or len(parts["images"]) != count or parts["images"].dtype != np.uint8:
        return None, "its images are not (k, H, W) bytes"
    if not all(np.issubdtype(parts[name].dtype, np.integer) for name in ("position", "label", "predicted")):
        return None, "its positions and classes are not whole numbers"
    if not np.issubdtype(parts["confidence"].dtype, np.floating) or not np.all((parts["confidence"] >= 0)
                                                                             & (parts["confidence"] <= 1)):
        return None, "its confidences are not probabilities"
    total, scored = int(arrays["total"]), int(arrays["scored"])
    if not 0 <= count <= total <= scored:
        return None, "its counts do not add up"
    return Mistakes(parts["position"].astype(np.int64), parts["label"].astype(np.int64),
                    parts["predicted"].astype(np.int64), parts["confidence"].astype(np.float32), parts["images"],
                    total, scored, str(arrays["source"])), ""
