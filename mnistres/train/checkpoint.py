"""Checkpoints: only tensors and plain values, saved atomically, loaded with weights_only=True.

Loading never unpickles arbitrary objects, so a checkpoint from a stranger cannot run
code. Everything needed to rebuild the model (the RunConfig) travels inside the file.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from mnistres.core import atomic
from mnistres.runs import rundir
from mnistres.errors import CheckpointError
from mnistres.core.values import echo

FORMAT = "mnistres-checkpoint"
FORMAT_VERSION = 1


def save(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Save `payload` plus the format tag; the old file survives any failure midway.

    The checkpoint is serialised in memory (a few MB) and written by `atomic`, so a full disk is
    an OSError with its reason, turned into one line naming the file, not an error from deep in
    torch's writer.
    """
    saved = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    atomic.write_bytes(path, buffer.getbuffer())


def check_file(path: str | os.PathLike) -> Path:
    """The cheap checks of a checkpoint's path (it exists, and is a file), before anything slower is read."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        hint = (f" (did you mean {rundir.BEST} or {rundir.LAST} inside it?)"
                if (path / rundir.BEST).exists() else "")
        raise CheckpointError(f"{path} is a folder, not a checkpoint file{hint}")
    return path


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint; every way it can be wrong becomes one CheckpointError line."""
    path = check_file(path)
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty")
    if not zipfile.is_zipfile(path) and not _starts_like_pickle(path):
        raise CheckpointError(f"{path} is not a readable checkpoint (not a torch file, or truncated)")
    try:
        saved = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        refused = [line.strip() for line in str(error).splitlines() if "Unsupported" in line or "global" in line.lower()]
        if not refused:
            raise CheckpointError(f"{path} is not a readable checkpoint (damaged pickle data)") from None
        raise CheckpointError(
            f"{path} holds objects that a safe load refuses (only tensors and plain values are allowed), "
            f"so it is not an mnistres checkpoint and was not loaded: {refused[0]}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or not a torch file): {first}") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a torch file but not an mnistres checkpoint")
    version = saved.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} uses checkpoint format {version}, newer than this mnistres reads "
            f"({FORMAT_VERSION}); upgrade mnistres"
        )
    for key in ("config", "model"):
        if key not in saved:
            raise CheckpointError(f"{path} lacks '{key}'; it is damaged")
    problem = _field_problem(saved)
    if problem:
        raise CheckpointError(f"{path}: {problem}; it is damaged or was not written by mnistres")
    return saved


def _field_problem(saved: dict[str, Any]) -> str:
    """What in a loaded checkpoint does not have the shape mnistres writes ("" if nothing).

    A safe load guarantees only tensors and plain values; a crafted file can still put text where
    a number belongs, or a zero standard deviation that would divide every pixel by zero.
    """
    if not isinstance(saved["config"], dict) or not all(isinstance(k, str) for k in saved["config"]):
        return "its config is not a mapping of settings"
    model = saved["model"]
    if not isinstance(model, dict) or not model or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()):
        return "its weights are not a mapping of names to tensors"
    epoch = saved.get("epoch", 0)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        return f"epoch {echo(epoch)} is not an epoch number"
    if "normalisation" in saved:
        pair = saved["normalisation"]
        numbers = isinstance(pair, (list, tuple)) and len(pair) == 2 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in pair)
        if not numbers or not 0 < pair[1] < 1e6 or not -1e6 < pair[0] < 1e6:
            return f"normalisation {echo(pair)} is not a (mean, standard deviation > 0) pair"
    for key in ("metrics", "plugins", "rng"):
        if key in saved and not isinstance(saved[key], dict):
            return f"{key} is not a mapping"
    return ""


def _starts_like_pickle(path: Path) -> bool:
    """Torch files from before the zip format are a bare pickle (protocol marker 0x80)."""
    with open(path, "rb") as handle:
        return handle.read(1) == b"\x80"
